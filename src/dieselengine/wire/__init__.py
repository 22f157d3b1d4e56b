"""The wire: sockets, the upgrade and WebSocket frames, around a core that knows none of them."""
