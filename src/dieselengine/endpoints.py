"""What a request path leads to: a WebSocket route, `/healthz`, `/metrics`, the API, the client, a static
file or 404.

Everything is served on one port; nothing is upgraded that does not match a route.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import unquote

from .api import PREFIX as API_PREFIX
from .api import Api
from .handshake import http_response
from .inspector import PREFIX as INSPECT_PREFIX
from .inspector import Inspector
from .hub import Hub
from .metrics import registry_for, render
from .routing import Route, Router
from .settings import Settings


_CLIENT = Path(__file__).parent / "client"
#: dieselengine's browser client, served by every server (read once: it is part of the package).
_CLIENT_FILES = {
    "/_diesel/client.js": http_response(200, (_CLIENT / "client.js").read_bytes(), "text/javascript; charset=utf-8",
                                        "Cache-Control: no-cache\r\n"),
    "/_diesel/client.d.ts": http_response(200, (_CLIENT / "client.d.ts").read_bytes(), "text/plain; charset=utf-8",
                                          "Cache-Control: no-cache\r\n"),
}


class Endpoints:
    def __init__(self, settings: Settings, router: Router, hub: Hub) -> None:
        self._router = router
        #: The routes by path (the router's own dict, which reload changes in place): an upgrade's
        #: common case, which the transport looks up before anything else.
        self.routes = router.routes
        self._hub = hub
        self._registry = registry_for(hub)
        #: The HTTP API under /api/, with --api-key only.
        self.api = Api(settings, hub, settings.api_key) if settings.api_key else None
        if self.api is not None:
            self._registry.register(self.api.collector())
        #: The inspector page and its data, with --inspect or --api-key only.
        self.inspector = Inspector(settings, hub, router) if settings.inspect or settings.api_key else None
        public = settings.public_dir
        self._static = public.resolve() if public is not None else None
        #: False once shutdown began: /healthz answers 503 and new upgrades are refused.
        self.serving = True

    def resolve(self, method: bytes, path: str) -> Route | Api | Inspector | bytes:
        """The route to upgrade to, the API or inspector to hand the request to, or a complete
        HTTP response to send before closing."""
        route = self._router.match(path)
        if route is not None:
            return route if self.serving else http_response(503, b"shutting down\n")
        if self.api is not None and path.startswith(API_PREFIX):
            return self.api
        if self.inspector is not None and (path == INSPECT_PREFIX or path.startswith(INSPECT_PREFIX + "/")):
            return self.inspector
        if method not in (b"GET", b"HEAD"):
            return http_response(405, b"method not allowed\n", extra="Allow: GET\r\n")
        if path == "/healthz":
            return self._health()
        if path == "/metrics":
            return http_response(200, render(self._registry), "text/plain; version=0.0.4; charset=utf-8")
        if path in _CLIENT_FILES:
            return _CLIENT_FILES[path]
        if self._static is not None:
            found = self._static_file(path)
            if found is not None:
                content_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
                return http_response(200, found.read_bytes(), content_type)
        return http_response(404, b"not found\n")

    def _health(self) -> bytes:
        if not self.serving:
            return http_response(503, b'{"status": "shutting down"}\n', "application/json")
        bus = self._hub.bus
        if bus is not None and not bus.healthy:
            return http_response(503, b'{"status": "degraded", "cluster": "disconnected"}\n', "application/json")
        return http_response(200, b'{"status": "ok"}\n', "application/json")

    def _static_file(self, path: str) -> Path | None:
        assert self._static is not None
        relative = unquote(path).lstrip("/") or "index.html"
        try:
            candidate = (self._static / relative).resolve()
            if candidate.is_dir():
                candidate = candidate / "index.html"
            if not candidate.is_relative_to(self._static) or not candidate.is_file():
                return None
        except (OSError, ValueError):  # a NUL byte, a name too long for the file system
            return None
        return candidate
