"""--allowed-origin: which web pages may open a WebSocket to this server (cross-site hijacking).

A browser always sends `Origin` with a WebSocket upgrade and a page cannot forge it, so checking
it is what keeps a foreign page from using a visitor's cookies on this server. A request without
`Origin` is not a browser's (a native client, a server) and is let through, as Phoenix's
`check_origin` and Centrifugo's `allowed_origins` do.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class OriginError(ValueError):
    """An --allowed-origin value that is not an origin; the message names it."""


def _parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, lower-cased with the scheme's default port; None if malformed."""
    try:
        split = urlsplit(origin.strip())
        port = split.port
    except ValueError:
        return None
    scheme, host = split.scheme.lower(), (split.hostname or "").lower()
    if not scheme or not host or split.path not in ("", "/") or split.query or split.fragment or split.username:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


class OriginPolicy:
    """Exact origins (`https://app.example.com`, `http://localhost:3000`) and origins with one
    leading wildcard label (`https://*.example.com`: any subdomain of example.com, not itself)."""

    def __init__(self, allowed: frozenset[str] | tuple[str, ...]) -> None:
        self._exact: set[tuple[str, str, int]] = set()
        self._suffixes: list[tuple[str, str, int]] = []
        for pattern in allowed:
            wildcard = "://*." in pattern
            parts = _parts(pattern.replace("://*.", "://", 1) if wildcard else pattern)
            if parts is None or "*" in parts[1]:
                raise OriginError(f"--allowed-origin {pattern!r}: not an origin like https://app.example.com "
                                  "or https://*.example.com")
            if wildcard:
                scheme, host, port = parts
                self._suffixes.append((scheme, "." + host, port))
            else:
                self._exact.add(parts)

    def allows(self, origin: str) -> bool:
        parts = _parts(origin)
        if parts is None:
            return False  # "null" (sandboxed pages, file:) and anything unparsable
        if parts in self._exact:
            return True
        scheme, host, port = parts
        return any(scheme == s and port == p and host.endswith(suffix) for s, suffix, p in self._suffixes)
