"""Reference, not a peer: echo over a transport in C (c_floor.c), with the handler in C, in Python
or in quickjs-ng, entered once per message.

    python c_floor.py PORT none|python|js

Compiles c_floor.c with the system compiler into bench/.cache when it is newer than the build.
"""

import base64
import hashlib
import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".cache"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def build() -> Path:
    src = HERE / "c_floor.c"
    out = CACHE / ("c_floor" + sysconfig.get_config_var("EXT_SUFFIX"))
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        CACHE.mkdir(exist_ok=True)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-Wall", f"-I{sysconfig.get_paths()['include']}",
                        "-o", str(out), str(src)], check=True)
    return out


def upgrade(head: bytes) -> bytes:
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def handler(kind: str):
    if kind == "none":
        return None
    if kind == "python":
        return lambda message: message
    import quickjs

    return quickjs.Context().eval("(message) => message")


if __name__ == "__main__":
    path = build()
    spec = importlib.util.spec_from_file_location("c_floor", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.serve(int(sys.argv[1]), upgrade, handler(sys.argv[2]))
    except KeyboardInterrupt:
        pass
