"""`fetch()` for scripts: HTTP requests to the origins the operator allowed (`--allow-fetch`).

A script's fetch leaves its context through the outbox; the request runs here on the event loop
with aiohttp (no session waits on it; an async hook awaiting it keeps its session's order, as for
any awaited promise), and its response or error goes back into the context. Every request is
bounded: only allowed origins, every redirect hop checked against them (at most 20), the
`--fetch-timeout` for the whole exchange, the `--fetch-max-size` for the response body, and the
number in flight per process (`Settings.fetch_in_flight`).
`/metrics` counts requests by origin and outcome.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import aiohttp

if TYPE_CHECKING:
    from ..hub import Hub

_MAX_REDIRECTS = 20
#: Request headers a script may not set (the client owns them).
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding",
                                "upgrade", "te", "trailer", "expect"})
#: The `origin` label of refused requests: scripts choose URLs, so the label must stay bounded.
NOT_ALLOWED = "(not allowed)"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(Exception):
    """A fetch that failed; the message becomes the script's TypeError."""

    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, the port only when not the default; None if the
    URL has no such origin."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


@dataclass
class Response:
    status: int
    reason: str
    headers: list[str]  # name, value, name, value...
    body: bytes
    url: str
    redirected: bool


class Fetcher:
    """The fetches of one server process: one connection pool, the allow list, the limits."""

    def __init__(self, allowed: Iterable[str], timeout: float, max_size: int,
                 counts: dict[tuple[str, str], int], max_in_flight: int) -> None:
        self.allowed = frozenset(allowed)
        self.timeout = timeout
        self.max_size = max_size
        #: (origin, outcome) -> requests; outcome is the status class ("2xx") or what failed.
        self.counts = counts
        self.in_flight = 0
        self.max_in_flight = max_in_flight
        self._session: aiohttp.ClientSession | None = None

    def _count(self, origin: str, outcome: str) -> None:
        key = (origin, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    def check(self, url: str) -> str:
        """The URL's origin if it is allowed; FetchError otherwise."""
        origin = origin_of(url)
        if origin is None or origin not in self.allowed:
            self._count(NOT_ALLOWED, "refused")
            shown = origin or url
            raise FetchError(f"fetch failed: the origin {shown} is not allowed (the server allows "
                             f"{', '.join(sorted(self.allowed)) or 'none'}: --allow-fetch)", "refused")
        return origin

    async def fetch(self, url: str, method: str, headers: list[str], body: bytes | None,
                    redirect: str) -> Response:
        origin = self.check(url)
        if self.in_flight >= self.max_in_flight:
            # Responses are held whole until the script reads them: their number is bounded too.
            self._count(origin, "busy")
            raise FetchError(f"fetch failed: {self.max_in_flight} fetches are already in flight in this server",
                             "busy")
        self.in_flight += 1
        try:
            return await asyncio.wait_for(self._exchange(url, origin, method, headers, body, redirect), self.timeout)
        except asyncio.TimeoutError:
            self._count(origin, "timeout")
            raise FetchError(f"fetch failed: {url} did not answer within {self.timeout:g} s (--fetch-timeout)",
                             "timeout") from None
        except FetchError as exc:
            if exc.outcome != "refused":
                self._count(origin, exc.outcome)
            raise
        except aiohttp.ClientError as exc:
            self._count(origin, "error")
            raise FetchError(f"fetch failed: {url}: {exc or type(exc).__name__}", "error") from None
        except OSError as exc:
            self._count(origin, "error")
            raise FetchError(f"fetch failed: {url}: {exc.strerror or exc}", "error") from None
        finally:
            self.in_flight -= 1

    async def _exchange(self, url: str, origin: str, method: str, header_list: list[str], body: bytes | None,
                        redirect: str) -> Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar())
        headers = [(header_list[i], header_list[i + 1]) for i in range(0, len(header_list) - 1, 2)
                   if header_list[i].lower() not in _FORBIDDEN_HEADERS]
        redirected = False
        for _ in range(_MAX_REDIRECTS + 1):
            async with self._session.request(method, url, headers=headers, data=body, allow_redirects=False) as reply:
                location = reply.headers.get("location")
                if reply.status in (301, 302, 303, 307, 308) and location is not None and redirect != "manual":
                    if redirect == "error":
                        raise FetchError(f"fetch failed: {url} redirected and the request's redirect is \"error\"",
                                         "redirect")
                    url = urljoin(url, location)
                    if origin_of(url) not in self.allowed:
                        raise FetchError(f"fetch failed: redirected to {url}, whose origin is not allowed "
                                         "(--allow-fetch)", "redirect refused")
                    if reply.status == 303 or (reply.status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                        headers = [(k, v) for k, v in headers if k.lower() not in ("content-type",)]
                    redirected = True
                    continue
                data = await self._read(reply, url)
                pairs: list[str] = []
                for name, value in reply.headers.items():
                    pairs += (name.lower(), value)
                self._count(origin, f"{reply.status // 100}xx")
                return Response(reply.status, reply.reason or "", pairs, data, url, redirected)
        raise FetchError(f"fetch failed: more than {_MAX_REDIRECTS} redirects from {url}", "redirect")

    async def _read(self, reply: aiohttp.ClientResponse, url: str) -> bytes:
        length = reply.content_length
        if length is not None and length > self.max_size:
            raise FetchError(self._too_large(url), "too large")
        chunks = []
        total = 0
        async for chunk in reply.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > self.max_size:
                raise FetchError(self._too_large(url), "too large")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, url: str) -> str:
        return f"fetch failed: the response of {url} is larger than {self.max_size} bytes (--fetch-max-size)"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


_fetchers: weakref.WeakKeyDictionary[Hub, Fetcher] = weakref.WeakKeyDictionary()


def fetcher_for(hub: Hub) -> Fetcher:
    """The server's fetcher, made on the first fetch (its counts are the hub's, for /metrics)."""
    fetcher = _fetchers.get(hub)
    if fetcher is None:
        settings = hub.settings
        fetcher = _fetchers[hub] = Fetcher(settings.allow_fetch, settings.fetch_timeout, settings.fetch_max_size,
                                           hub.stats.fetches, settings.fetch_in_flight)
    return fetcher


async def close(hub: Hub) -> None:
    """Close the server's connection pool, if it made one."""
    fetcher = _fetchers.pop(hub, None)
    if fetcher is not None:
        await fetcher.close()
