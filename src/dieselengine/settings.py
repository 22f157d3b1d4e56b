"""One settings object for the whole server; the command line fills it, nothing else reads the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Every knob of a server, with the defaults SPEC.md names."""

    path: Path
    host: str = "127.0.0.1"
    port: int = 8080
    reload: bool = False
    static_dir: Path | None = None
    cluster: str | None = None
    cluster_prefix: str = "diesel"
    workers: int = 1
    max_message_size: int = 1 << 20
    script_timeout: float = 1.0
    script_memory: int = 256 << 20
    script_stack: int = 1 << 20
    #: Bytes a session may have queued towards a client that does not read before it is closed (1008).
    send_queue_size: int = 1 << 20
    #: Messages a session may have waiting for a busy (async) handler before reading from it pauses.
    inbox_size: int = 256
    ping_interval: float = 20.0
    handshake_timeout: float = 5.0
    #: How long a close handshake the server started may wait for the client's reply.
    close_timeout: float = 5.0
    shutdown_timeout: float = 10.0
    trusted_proxies: frozenset[str] = field(default_factory=frozenset)
    log_level: str = "info"
