"""TLS: wss:// and https:// on one port, with certificates from a throwaway CA (trustme)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import os

import trustme
import websockets
from conftest import ROOT, free_port, write_scripts

from dieselengine import wire

# The portable wire always has TLS (Python's ssl); `auto` falls back to it where the C wire has none.
pytestmark = pytest.mark.skipif(os.environ.get("DIESEL_WIRE") == "c" and wire.why_not_c(tls=True) is not None,
                                reason="the C wire was built without OpenSSL")


class Certificates:
    """A CA and a server certificate for 127.0.0.1 written to cert.pem / key.pem in a folder."""

    def __init__(self, folder: Path) -> None:
        self.certfile = folder / "cert.pem"
        self.keyfile = folder / "key.pem"
        self.issue()

    def issue(self) -> None:
        """A new CA and a certificate from it, written over the files."""
        self.ca = trustme.CA()
        issued = self.ca.issue_cert("127.0.0.1", "localhost")
        issued.cert_chain_pems[0].write_to_path(str(self.certfile))
        issued.private_key_pem.write_to_path(str(self.keyfile))

    def flags(self) -> tuple[str, ...]:
        return "--certfile", str(self.certfile), "--keyfile", str(self.keyfile)

    def client(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return Certificates(tmp_path)


def wss(server, path: str) -> str:
    return f"wss://127.0.0.1:{server.port}{path}"


def https(server, path: str, context: ssl.SSLContext) -> tuple[int, str]:
    with urllib.request.urlopen(f"https://127.0.0.1:{server.port}{path}", context=context, timeout=5) as response:
        return response.status, response.read().decode()


def serve_tls(serve, certs: Certificates, path: Path, *flags: str):
    """Start a TLS server; conftest's readiness probe speaks plain HTTP, so wait on https here."""
    server = serve(path, *certs.flags(), *flags, ready=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, server.log()
        try:
            if https(server, "/healthz", certs.client())[0] == 200:
                return server
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"TLS server never became ready:\n{server.log()}")


def test_wss_echo_and_https_endpoints(serve, certs):
    server = serve_tls(serve, certs, ROOT / "examples")
    assert re.search(r"serving \d+ route\(s\) on https://", server.log())
    assert https(server, "/healthz", certs.client()) == (200, '{"status": "ok"}\n')
    status, metrics = https(server, "/metrics", certs.client())
    assert status == 200 and "diesel" in metrics

    async def main():
        async with websockets.connect(wss(server, "/ws/echo"), ssl=certs.client(), compression=None) as ws:
            # one record, several records (a message past TLS's 16 KiB), binary
            for message in ("hi", "é" * 40_000, bytes(range(256)) * 300):
                await ws.send(message)
                assert await ws.recv() == message

    asyncio.run(asyncio.wait_for(main(), 30))


def test_wss_chat_between_two_clients(serve, certs):
    server = serve_tls(serve, certs, ROOT / "examples")

    async def main():
        context = certs.client()
        async with websockets.connect(wss(server, "/ws/chat?user=alice"), ssl=context) as alice:
            assert json.loads(await alice.recv())["type"] == "welcome"
            async with websockets.connect(wss(server, "/ws/chat?user=bob"), ssl=context) as bob:
                assert json.loads(await bob.recv())["type"] == "welcome"
                assert json.loads(await alice.recv()) == {"type": "join", "user": "bob"}
                for n in range(50):
                    await bob.send(f"hello {n}")
                for n in range(50):
                    message = json.loads(await alice.recv())
                    assert (message["from"], message["text"]) == ("bob", f"hello {n}")

    asyncio.run(asyncio.wait_for(main(), 30))


def test_plain_clients_on_a_tls_port(serve, certs):
    """An HTTP client is told in plain text and closed; a silent one is dropped at the deadline."""
    server = serve_tls(serve, certs, ROOT / "examples", "--handshake-timeout", "0.5")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"this port speaks TLS: use https:// or wss://\n")

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"\x00\x01garbage")
        assert sock.recv(4096) == b""

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01")  # the start of a TLS record, and then nothing
        started = time.monotonic()
        assert sock.recv(4096) == b""
        assert time.monotonic() - started < 8  # the deadline is 0.5 s; swept at least every 1 s
    assert https(server, "/healthz", certs.client())[0] == 200


def test_sighup_reloads_the_certificate_without_dropping_connections(serve, certs, tmp_path):
    folder = write_scripts(tmp_path / "scripts", {"echo.js": """
        export function onMessage(session, message) { session.send(message); }
    """})
    server = serve_tls(serve, certs, folder)
    old = certs.client()

    async def main():
        async with websockets.connect(wss(server, "/ws/echo"), ssl=old) as kept:
            await kept.send("before")
            assert await kept.recv() == "before"

            certs.issue()  # a new CA: clients trusting only the old one refuse the new certificate
            server.proc.send_signal(signal.SIGHUP)
            server.wait_log("SIGHUP: TLS certificate reloaded")
            async with websockets.connect(wss(server, "/ws/echo"), ssl=certs.client()) as fresh:
                await fresh.send("new")
                assert await fresh.recv() == "new"
            with pytest.raises(ssl.SSLCertVerificationError):
                await websockets.connect(wss(server, "/ws/echo"), ssl=old)

            await kept.send("after")  # the connection made with the old certificate is still up
            assert await kept.recv() == "after"

            certs.keyfile.write_text("not a key")
            server.proc.send_signal(signal.SIGHUP)
            server.wait_log("TLS certificate not reloaded, still serving the previous one: cannot load the")
            async with websockets.connect(wss(server, "/ws/echo"), ssl=certs.client()) as again:
                await again.send("still")
                assert await again.recv() == "still"

    asyncio.run(asyncio.wait_for(main(), 30))
    assert server.proc.poll() is None


def _start(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dieselengine", "serve", str(ROOT / "examples"),
                           "--port", str(free_port()), *flags], capture_output=True, text=True, timeout=30)


def test_unusable_tls_files_stop_the_start_with_one_line(certs, tmp_path):
    (tmp_path / "other").mkdir()
    other = Certificates(tmp_path / "other")
    mismatched = _start("--certfile", str(certs.certfile), "--keyfile", str(other.keyfile))
    assert mismatched.returncode == 1
    assert "diesel: error: --certfile/--keyfile: the private key does not match the certificate" in mismatched.stderr
    assert "Traceback" not in mismatched.stderr

    missing = _start("--certfile", str(tmp_path / "nope.pem"), "--keyfile", str(certs.keyfile))
    assert missing.returncode == 2 and "--certfile" in missing.stderr and "no such file" in missing.stderr
    alone = _start("--certfile", str(certs.certfile))
    assert alone.returncode == 2 and "--certfile and --keyfile go together" in alone.stderr


def test_a_client_hello_split_across_reads(serve, certs):
    """Only a connection's first bytes tell a TLS client from another: a ClientHello arriving in
    pieces (large ones span TCP segments) completes its handshake."""
    server = serve_tls(serve, certs, ROOT / "examples")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = certs.client().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        for piece in (hello[:3], hello[3:40], hello[40:]):  # the second piece does not start with 0x16
            sock.sendall(piece)
            time.sleep(0.2)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "the server closed the connection mid-handshake"
                incoming.write(data)
        tls.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.sendall(outgoing.read())
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                answer += tls.read(4096)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
    assert answer.startswith(b"HTTP/1.1 200 ")
