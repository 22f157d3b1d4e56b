"""dieselengine: a WebSocket application server for small JavaScript and Python handler scripts."""

__version__ = "0.1.0"

from .server_handle import server

__all__ = ["server"]
