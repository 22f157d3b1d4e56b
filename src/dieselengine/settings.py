"""One settings object for the whole server, and the declaration of every option it has.

Each `option(...)` field is a server option: `--NAME` on the command line, `DIESEL_NAME` in the
environment, `NAME = ...` in diesel.toml, and a line of docs/options.md (config.py derives them
all; only the cli layer reads the environment or the file). Plain fields are internal knobs.
To add an option, add one `option(...)` field here, then `python -m dieselengine.config`
regenerates docs/options.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .options import count, option, origin as parse_origin, seconds, size, tcp_port

#: A served folder's folder of static files (pages, scripts for the browser), served at /.
PUBLIC_DIR = "public"


class MessageRate(NamedTuple):
    """--message-rate: messages per second, and how many may come at once (the bucket's size)."""

    per_second: float
    burst: float

    @classmethod
    def parse(cls, text: str) -> MessageRate:
        rate, _, burst = text.partition("/")
        value = cls(float(rate), float(burst) if burst else float(rate))
        if not (value.per_second > 0 and value.burst >= 1):
            raise ValueError(f"{text!r}: a rate above 0 and a burst of at least 1")
        return value

    def __str__(self) -> str:
        return f"{self.per_second:g}/{self.burst:g}"


@dataclass(frozen=True)
class Settings:
    """Every knob of a server, with the defaults SPEC.md names."""

    path: Path

    # network
    host: str = option("127.0.0.1", "address to listen on", group="network", metavar="ADDR")
    port: int = option(8080, "port to listen on", group="network", parse=tcp_port, metavar="PORT")
    static_dir: Path | None = option(
        None, "serve the files of DIR over plain HTTP at / (default: public/ in the served folder)",
        group="network", name="static", parse=Path, metavar="DIR")
    trusted_proxies: frozenset[str] = option(
        None, "believe X-Forwarded-For from this proxy address (repeatable)",
        group="network", name="trusted-proxy", metavar="IP", repeat=True)
    wire: str = option(
        "auto", "the WebSocket wire: c (epoll, Linux; built at install), asyncio (portable, any OS), "
        "or auto: c where it is built and the OS has epoll", group="network", choices=("auto", "c", "asyncio"),
        metavar="WIRE")
    #: Turns on the HTTP API under /api/; every request must carry it as a Bearer token.
    api_key: str | None = option(
        None, "serve the HTTP API under /api/ (broadcast to rooms, list them, close sessions); every request "
              "must send Authorization: Bearer KEY (DIESEL_API_KEY keeps it out of the process list)",
        group="network", metavar="KEY")
    inspect: str | None = option(
        None, "serve the inspector at /_diesel/inspect (rooms, sessions, rates, errors; close a session, "
              "broadcast), opened with this token; with --api-key, that key opens it too", group="network",
        metavar="TOKEN")
    compression: str = option(
        "shared", "permessage-deflate for clients that offer it: shared (or on) accepts it with no context "
        "takeover either way (no zlib memory per connection; a broadcast compressed once for all its "
        "recipients), off declines every offer", group="network", choices=("shared", "on", "off"), metavar="MODE")

    # TLS
    certfile: Path | None = option(
        None, "serve wss:// and https:// on the port with this PEM certificate chain (the server's certificate "
        "first, e.g. fullchain.pem); SIGHUP reloads it and --keyfile", group="TLS", parse=Path, metavar="FILE")
    keyfile: Path | None = option(None, "the certificate's private key, PEM, unencrypted", group="TLS", parse=Path,
                                  metavar="FILE")

    # development
    reload: bool = option(False, "swap in changed scripts without dropping connections", group="development")
    log_level: str = option("info", "log records below this level are dropped", group="development",
                            choices=("debug", "info", "warning", "error"), metavar="LEVEL")

    # limits
    max_message_size: int = option(
        1 << 20, "close a session sending a larger message with 1009 (K/M suffixes allowed)",
        group="limits", parse=size, metavar="BYTES")
    #: Bytes a session may have queued towards a client that does not read before it is closed (1008).
    send_queue_size: int = option(
        1 << 20, "close a client that does not read once this much is queued for it (1008)",
        group="limits", parse=size, metavar="BYTES")
    #: What the wire may hold for all clients together while receiving (request heads, unfinished
    #: frames and fragmented messages): the memory budget no number of connections can pass.
    max_buffered: int = option(
        256 << 20, "bytes held for all clients together while receiving (request heads, unfinished frames "
        "and messages); a message past it closes its connection with 1013 (try again later)",
        group="limits", parse=size, metavar="BYTES")
    script_timeout: float = option(1.0, "CPU time one JavaScript handler call may use",
                                   group="limits", parse=seconds, metavar="SECONDS")
    handler_timeout: float = option(
        30.0, "cancel an async Python hook still running after this long: logged with where it waited, "
        "an error for its session", group="limits", parse=seconds, metavar="SECONDS")
    script_memory: int = option(256 << 20, "memory one JavaScript script may use",
                                group="limits", parse=size, metavar="BYTES")
    max_rooms_per_session: int = option(
        128, "rooms one session may be in at once; a join past it raises (a RangeError in JavaScript)",
        group="limits", metavar="N")
    ping_interval: float = option(
        20.0, "ping a client silent this long; close it if still silent one interval later",
        group="limits", parse=seconds, metavar="SECONDS")
    handshake_timeout: float = option(5.0, "drop a connection that has not finished its handshake by then",
                                      group="limits", parse=seconds, metavar="SECONDS")
    shutdown_timeout: float = option(
        10.0, "on SIGTERM/SIGINT, how long to wait for clients to answer the 1001 close",
        group="limits", parse=seconds, metavar="SECONDS")

    # fetch
    allow_fetch: frozenset[str] = option(
        None, "let JavaScript fetch() reach this origin, e.g. https://api.example.com (repeatable)",
        group="fetch", parse=parse_origin, metavar="ORIGIN", repeat=True)
    fetch_timeout: float = option(10.0, "a JavaScript fetch() rejects when its response has not come by then",
                                  group="fetch", metavar="SECONDS")
    fetch_max_size: int = option(8 << 20, "a JavaScript fetch() rejects a larger response body",
                                 group="fetch", parse=size, metavar="BYTES")
    # the door: who may connect
    allowed_origins: frozenset[str] = option(
        None, "accept browser upgrades only from this origin: https://app.example.com or https://*.example.com "
              "(repeatable; a request without Origin is not a browser's and is accepted)",
        group="access", name="allowed-origin", metavar="ORIGIN", repeat=True)
    jwt_secret: str | None = option(
        None, "require a JWT (?token= or Authorization: Bearer) signed with this HS256/384/512 secret",
        group="access", metavar="SECRET")
    jwt_key: Path | None = option(
        None, "require a JWT signed by the private half of this PEM public key (RS*, PS*, ES*, EdDSA)",
        group="access", parse=Path, metavar="FILE")
    jwt_audience: str | None = option(None, "a JWT's aud must name this audience",
                                      group="access", metavar="AUDIENCE")
    jwt_issuer: str | None = option(None, "a JWT's iss must be this issuer", group="access", metavar="ISSUER")
    max_connections: int = option(0, "refuse upgrades past this many connections with 503 (0: no limit)",
                                  group="access", metavar="N")
    max_connections_per_ip: int = option(
        0, "refuse upgrades past this many connections from one address with 429 (0: no limit)",
        group="access", metavar="N")
    message_rate: MessageRate | None = option(
        None, "messages per second a session may send, as a token bucket of N (or BURST): past it, "
              "close with 1008", group="access", parse=MessageRate.parse, metavar="N[/BURST]")

    # logging
    log_format: str = option("text", "log lines as text, or one JSON object per line", group="logging",
                             choices=("text", "json"), metavar="FORMAT")
    access_log: bool = option(True, "log each session's open and end and each refused upgrade",
                              group="logging")

    # scale-out
    cluster: str | None = option(
        None, "join the cluster of servers using this Redis, e.g. redis://127.0.0.1:6379/0",
        group="scale-out", metavar="URL")
    cluster_prefix: str = option("diesel", "Redis key prefix, so several clusters can share one Redis",
                                 group="scale-out", metavar="PREFIX")
    workers: int = option(1, "processes sharing the port (needs --cluster)", group="scale-out", parse=count,
                          metavar="N")

    # internal knobs (no option)
    script_stack: int = 1 << 20
    #: JavaScript fetch() requests in flight at once in a process (each may hold --fetch-max-size).
    fetch_in_flight: int = 64
    #: Messages a session may have waiting for a busy (async) handler before reading from it pauses.
    inbox_size: int = 256
    #: How long a close handshake the server started may wait for the client's reply.
    close_timeout: float = 5.0

    @property
    def public_dir(self) -> Path | None:
        """The folder served over plain HTTP: --static DIR, else `public/` in the served folder if
        there is one (its files are pages, never routes)."""
        if self.static_dir is not None:
            return self.static_dir
        folder = self.path if self.path.is_dir() else self.path.parent
        public = folder / PUBLIC_DIR
        return public if public.is_dir() else None
