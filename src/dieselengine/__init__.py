"""dieselengine: a WebSocket application server for small JavaScript and Python handler scripts."""

__version__ = "0.1.0"
