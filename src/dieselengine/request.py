"""What a handler may read of the handshake request: path, query parameters, headers, peer address."""

from __future__ import annotations

from urllib.parse import parse_qs

from .handshake import parse_headers


class Request:
    """The upgrade request of one session, parsed lazily: most handlers read one parameter or
    header or none, and an idle connection should cost as little memory as possible."""

    __slots__ = ("path", "query", "remote_addr", "_raw_headers", "_headers", "_params")

    def __init__(self, path: str, query: str, raw_headers: bytes, remote_addr: str) -> None:
        self.path = path
        self.query = query
        self.remote_addr = remote_addr
        self._raw_headers = raw_headers
        self._headers: dict[str, str] | None = None
        self._params: dict[str, list[str]] | None = None

    def parameter(self, name: str) -> str | None:
        """First value of a query parameter, form-decoded (`%20` and `+` are spaces)."""
        if self._params is None:
            self._params = parse_qs(self.query, keep_blank_values=True)
        values = self._params.get(name)
        return values[0] if values else None

    @property
    def headers(self) -> dict[str, str]:
        """Every request header, names lower-cased."""
        if self._headers is None:
            self._headers = parse_headers(self._raw_headers)
        return self._headers

    def header(self, name: str) -> str | None:
        """A request header, case-insensitive."""
        return self.headers.get(name.lower())


def client_address(peer: str, forwarded_for: str | None, trusted_proxies: frozenset[str]) -> str:
    """The client's IP: the peer's, unless the peer is a trusted proxy that sent X-Forwarded-For;
    then the right-most address in it that is not a trusted proxy itself."""
    if not forwarded_for or peer not in trusted_proxies:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    untrusted = [hop for hop in hops if hop not in trusted_proxies]
    return untrusted[-1] if untrusted else peer


class ReadsRequest:
    """The handshake request's accessors, shared by a session and an upgrade hook's request:
    both hold the `Request` as `request`, and handlers read it through the same four names."""

    __slots__ = ()
    request: Request

    def get_parameter(self, name: str) -> str | None:
        return self.request.parameter(name)

    def get_header(self, name: str) -> str | None:
        return self.request.header(name)

    def get_request_path(self) -> str:
        return self.request.path

    def get_remote_addr(self) -> str:
        return self.request.remote_addr
