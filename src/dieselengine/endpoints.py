"""The handshake router: WebSocket routes, `/healthz`, `/metrics` and static files on one port.

picows hands us each parsed request before the upgrade; we answer with a listener for a
WebSocket route, a plain HTTP response for the endpoints, or 404. Nothing is upgraded that does
not match a route.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from .dispatch import Dispatcher
from .metrics import registry_for, render
from .request import Request
from .routing import Router
from .settings import Settings
from .transport import WebSocketConnection

Responder = Callable[[WSUpgradeRequest], "WebSocketConnection | WSUpgradeResponseWithListener"]


def _plain(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> WSUpgradeResponseWithListener:
    if status == 200:
        response = WSUpgradeResponse.create_ok_response(body, {"Content-Type": content_type})
    else:
        response = WSUpgradeResponse.create_error_response(status, body, {"Content-Type": content_type})
    return WSUpgradeResponseWithListener(response, None)


class Endpoints:
    """Builds the picows listener factory for one server."""

    def __init__(self, settings: Settings, router: Router, dispatcher: Dispatcher) -> None:
        self._settings = settings
        self._router = router
        self._dispatcher = dispatcher
        self._registry = registry_for(dispatcher.hub)
        self._static = settings.static_dir.resolve() if settings.static_dir else None
        #: False once shutdown began: /healthz answers 503 and new upgrades are refused.
        self.serving = True

    def __call__(self, request: WSUpgradeRequest) -> WebSocketConnection | WSUpgradeResponseWithListener:
        target = request.path.decode("latin-1")
        path, _, query = target.partition("?")
        route = self._router.match(path)
        if route is not None:
            if not self.serving:
                return _plain(503, b"shutting down\n")
            return WebSocketConnection(self._dispatcher, self._settings, route,
                                       Request(path, query, request.headers, ""))
        if path == "/healthz":
            return self._health()
        if path == "/metrics":
            return _plain(200, render(self._registry), "text/plain; version=0.0.4; charset=utf-8")
        if self._static is not None:
            found = self._static_file(path)
            if found is not None:
                content_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
                return _plain(200, found.read_bytes(), content_type)
        return _plain(404, b"not found\n")

    def _health(self) -> WSUpgradeResponseWithListener:
        if not self.serving:
            return _plain(503, b'{"status": "shutting down"}\n', "application/json")
        bus = self._dispatcher.hub.bus
        if bus is not None and not bus.healthy:
            return _plain(503, b'{"status": "degraded", "cluster": "disconnected"}\n', "application/json")
        return _plain(200, b'{"status": "ok"}\n', "application/json")

    def _static_file(self, path: str) -> Path | None:
        assert self._static is not None
        relative = unquote(path).lstrip("/") or "index.html"
        candidate = (self._static / relative).resolve()
        if candidate.is_dir():
            candidate = candidate / "index.html"
        if not candidate.is_relative_to(self._static) or not candidate.is_file():
            return None
        return candidate
