"""The web platform's common APIs in every script context (WinterTC's Minimum Common API, the part
that makes sense on a server): `js/web/*.js`, evaluated into each context before user code.

quickjs-ng already has `atob`/`btoa`, `DOMException`, `performance`, `queueMicrotask`; the rest is
JavaScript of ours, except what must come from the server: the operating system's CSPRNG and the
digests and HMACs of `crypto.subtle` (Python's `secrets`, `hashlib`, `hmac`; no crypto is written
here). A script calls those synchronously through one host function: the binding refuses calls into
Python only while its own time limit is set, and the runtime enforces CPU time with its interrupt
handler instead. `fetch` leaves through the outbox like every other host operation (see fetch.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from . import bytecode

_FOLDER = Path(__file__).with_name("web")
#: In dependency order: fetch's Body uses TextEncoder, Request uses URL and AbortSignal.
FILES = ("encoding", "events", "url", "clone", "crypto", "fetch")
_HASHES = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
#: getRandomValues' limit in the spec; generateKey asks for at most a block.
_MAX_RANDOM = 65536

#: One function of (host, post): it installs the globals and returns an accessor of the functions
#: the server calls (`fetchDone`, `fetchFailed`). `define` makes a global as the web platform has
#: them: writable, configurable, not enumerable.
SOURCE = "".join([
    "(function (host, post) {\n\"use strict\";\n",
    "const define = (name, value) => Object.defineProperty(globalThis, name, "
    "{ value, writable: true, configurable: true, enumerable: false });\n",
    "const toBase64 = Uint8Array.prototype.toBase64, fromBase64 = Uint8Array.fromBase64;\n",
    "const internal = Object.create(null);\n",
    *(_FOLDER.joinpath(f"{name}.js").read_text() for name in FILES),
    "return (name) => internal[name];\n})",
])


def host(op: str, *args: Any) -> str | bool:
    """The server's half of `crypto`: byte strings travel as base64."""
    if op == "random":
        return base64.b64encode(secrets.token_bytes(min(int(args[0]), _MAX_RANDOM))).decode("ascii")
    if op == "digest":
        return _b64(hashlib.new(_HASHES[args[0]], _bytes(args[1])).digest())
    if op == "hmac":
        return _b64(hmac.digest(_bytes(args[1]), _bytes(args[2]), _HASHES[args[0]]))
    if op == "verify":
        expected = hmac.digest(_bytes(args[1]), _bytes(args[2]), _HASHES[args[0]])
        return hmac.compare_digest(expected, _bytes(args[3]))
    raise ValueError(f"unknown host operation {op!r}")


def _bytes(text: str) -> bytes:
    return base64.b64decode(text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def install(ctx: Any, post: Any) -> Any:
    """Evaluate the web APIs into a fresh context; returns the accessor of their internal functions.
    `post` appends an operation to the context's outbox."""
    ctx.add_callable("__diesel_host__", host)
    internal = bytecode.evaluate(ctx, SOURCE)(ctx.get("__diesel_host__"), post)
    ctx.eval("delete globalThis.__diesel_host__")
    return internal
