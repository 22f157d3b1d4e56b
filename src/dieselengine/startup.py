"""Start-up failures a user can fix (a port in use, a host that does not resolve, nothing to serve),
each explained in one line that names the option to change; `diesel` prints it and exits 1."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from .transport import listen_socket


class StartupError(Exception):
    """The server cannot start; the message is one line saying why and what to change."""


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """`listen_socket`, with its failures explained in terms of --host and --port."""
    try:
        return listen_socket(host, port, reuse_port)
    except socket.gaierror as exc:
        raise StartupError(f"--host {host}: the name does not resolve ({exc.strerror}); "
                           "use an address such as 127.0.0.1 or 0.0.0.0") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use (is another server running?); "
                               "stop it or choose another port with --port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(f"--host {host}: no network interface of this machine has that address; "
                               "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"port {port}: permission denied (ports below 1024 need privileges); "
                               "choose another port with --port") from None
        raise StartupError(f"cannot listen on {host}:{port} (--host, --port): {exc.strerror}") from None


def no_scripts(path: Path) -> str:
    return f"{path}: no handler scripts (.js or .py) to serve; add one, or start a project with `diesel init DIR`"
