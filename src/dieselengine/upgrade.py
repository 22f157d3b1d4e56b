"""What an upgrade hook (`on_upgrade` / `onUpgrade`) sees and decides before the 101.

Sans I/O: the door (door.py) runs the hook and answers the connection from what it decided.
"""

from __future__ import annotations

from typing import Any

from .request import ReadsRequest, Request


def offered_protocols(header: str | None) -> list[str]:
    """The `Sec-WebSocket-Protocol` values a client offered, in its order of preference."""
    if not header:
        return []
    return [name.strip() for name in header.split(",") if name.strip()]


def with_protocol(answer: bytes, protocol: str) -> bytes:
    """The wire's 101 with the accepted subprotocol added (the 101 ends with its blank line)."""
    return answer[:-2] + b"Sec-WebSocket-Protocol: " + protocol.encode("latin-1") + b"\r\n\r\n"


def check_rejection(status: Any, reason: Any) -> tuple[int, str]:
    """`reject(status, reason)`'s arguments as the refusal they ask for; ValueError (a bug in the
    script) for a status that is not an HTTP error."""
    if isinstance(status, bool) or not isinstance(status, (int, float)) or status != int(status) \
            or not 400 <= status <= 599:
        raise ValueError(f"reject(status): an HTTP error status 400-599, not {status!r}")
    return int(status), "" if reason is None else str(reason)


class UpgradeRequest(ReadsRequest):
    """The request an upgrade hook decides on: the handshake's data (as `Session` reads it), the
    attributes the session will start with, the subprotocol to accept, or the refusal."""

    __slots__ = ("request", "attributes", "protocol", "rejection", "runtime_state", "_protocols")

    def __init__(self, request: Request) -> None:
        self.request = request
        #: The session's attributes to be; None until one is set.
        self.attributes: dict[str, Any] | None = None
        #: The offered subprotocol accepted, if any.
        self.protocol: str | None = None
        #: (status, reason) once the hook refused the upgrade.
        self.rejection: tuple[int, str] | None = None
        #: Whatever the script runtime keeps for this request (the JS runtime: its object's handle).
        self.runtime_state: Any = None
        self._protocols: list[str] | None = None

    def get_protocols(self) -> list[str]:
        if self._protocols is None:
            self._protocols = offered_protocols(self.request.header("sec-websocket-protocol"))
        return list(self._protocols)

    def set_attribute(self, key: str, value: Any) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def get_attribute(self, key: str) -> Any:
        return self.attributes.get(key) if self.attributes else None

    def accept_protocol(self, protocol: str) -> None:
        """Answer with this subprotocol; it must be one the client offered."""
        if protocol not in self.get_protocols():
            raise ValueError(f"accept_protocol({protocol!r}): the client offered {self.get_protocols()!r}")
        self.protocol = protocol

    def reject(self, status: int, reason: str = "") -> None:
        """Refuse the upgrade with this HTTP status (400-599) and the reason as a text/plain body."""
        self.rejection = check_rejection(status, reason)
