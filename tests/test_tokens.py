"""Built-in JWT (--jwt-secret, --jwt-key): tokens made in the test with PyJWT and keys made with
`cryptography`, checked by a real server before the upgrade."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
import websockets
from conftest import write_scripts
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.exceptions import ConnectionClosed, InvalidStatus

SECRET = "s3cret-for-tests-only-" + "0123456789abcdef" * 3  # 64 bytes: long enough for HS512

WHO = '''
import json

def on_upgrade(request):
    request.set_attribute("seen_in_hook", request.get_attribute("claims")["sub"])

def on_open(session):
    session.send(json.dumps({"claims": session.get_attribute("claims"),
                             "hook": session.get_attribute("seen_in_hook")}))
'''
WHO_JS = '''
export function onOpen(session) {
    const claims = session.getAttribute("claims");
    session.send(JSON.stringify({sub: claims.sub, type: typeof claims, roles: claims.roles}));
}
'''


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def status_of(url: str, **kwargs) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(url, **kwargs):
            pass
    return caught.value.response.status_code, caught.value.response.body.decode()


def token(key, algorithm="HS256", **claims) -> str:
    return jwt.encode({"sub": "alice", "exp": int(time.time()) + 600, **claims}, key, algorithm=algorithm)


@pytest.fixture
def app(tmp_path):
    return write_scripts(tmp_path / "app", {"who.py": WHO, "whojs.js": WHO_JS})


def test_hs256_valid_invalid_expired_wrong_audience_and_issuer(serve, app):
    server = serve(app, "--jwt-secret", SECRET, "--jwt-audience", "chat", "--jwt-issuer", "https://auth.test")
    good = {"aud": "chat", "iss": "https://auth.test"}

    async def main():
        url = server.url("/ws/who?token=" + token(SECRET, **good, roles=["admin"]))
        async with websockets.connect(url) as ws:
            seen = json.loads(await ws.recv())
            assert seen["claims"]["sub"] == "alice" and seen["claims"]["roles"] == ["admin"]
            assert seen["hook"] == "alice"  # the claims are there before onUpgrade runs
        # the Authorization header works too, and HS512
        bearer = {"Authorization": "Bearer " + token(SECRET, "HS512", **good)}
        async with websockets.connect(server.url("/ws/who"), additional_headers=bearer) as ws:
            assert json.loads(await ws.recv())["claims"]["sub"] == "alice"

        cases = [
            ("", "missing token"),
            ("?token=not.a.jwt", "invalid token"),
            ("?token=" + token("another-secret-entirely-0123456789", **good), "invalid token"),
            ("?token=" + token(SECRET, **{**good, "exp": int(time.time()) - 60}), "token expired"),
            ("?token=" + token(SECRET, **{**good, "aud": "billing"}), "wrong audience"),
            ("?token=" + token(SECRET, **{**good, "iss": "https://evil.test"}), "wrong issuer"),
            ("?token=" + jwt.encode({"sub": "x", **good}, "", algorithm="none"), "invalid token"),
        ]
        for query, reason in cases:
            assert await status_of(server.url("/ws/who" + query)) == (401, reason + "\n"), query
    run(main())
    assert 'diesel_upgrades_refused_total{reason="token"} 7.0' in server.http("/metrics")[1]
    assert "seen_in_hook" not in server.log()


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
def test_public_key_tokens(serve, app, tmp_path, kind):
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS256"
               else ec.generate_private_key(ec.SECP256R1()))
    other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RS256"
             else ec.generate_private_key(ec.SECP256R1()))
    pem = tmp_path / "key.pem"
    pem.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    server = serve(app, "--jwt-key", str(pem))

    async def main():
        async with websockets.connect(server.url("/ws/who?token=" + token(private, kind))) as ws:
            assert json.loads(await ws.recv())["claims"]["sub"] == "alice"
        assert await status_of(server.url("/ws/who?token=" + token(other, kind))) == (401, "invalid token\n")
        # an HMAC token signed with the public key's text (algorithm confusion) is refused
        forged = jwt.encode({"sub": "x"}, "x" * 32, algorithm="HS256")
        assert await status_of(server.url("/ws/who?token=" + forged)) == (401, "invalid token\n")
    run(main())


def test_expiry_closes_a_live_session(serve, app):
    server = serve(app, "--jwt-secret", SECRET)

    async def main():
        async with websockets.connect(server.url("/ws/who?token=" + token(SECRET, exp=int(time.time()) + 2))) as ws:
            await ws.recv()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token expired")
    run(main())
    assert 'diesel_limit_closes_total{reason="token_expired"} 1.0' in server.http("/metrics")[1]


def test_jwt_options_checked_at_start(serve, app, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    for args, expected in [
        (("--jwt-key", str(bad)), f"--jwt-key {bad}: not a PEM public key"),
        (("--jwt-key", str(tmp_path / "missing.pem")), "cannot read: No such file or directory"),
        (("--jwt-secret", SECRET, "--jwt-key", str(bad)), "--jwt-secret and --jwt-key: give one of them"),
        (("--jwt-audience", "chat"), "--jwt-audience and --jwt-issuer need --jwt-secret or --jwt-key"),
        (("--jwt-secret", "short"), "--jwt-secret: at least 32 bytes"),
    ]:
        server = serve(app, *args, ready=False)
        assert server.proc.wait(20) == 1
        assert expected in server.log()
        assert "Traceback" not in server.log()


def test_claims_in_javascript_with_and_without_onupgrade(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"whojs.js": WHO_JS, "hookjs.js": '''
export function onUpgrade(request) {
  const claims = request.getAttribute("claims");
  if (!claims.roles.includes("chat")) return request.reject(403, "not a chatter");
  request.setAttribute("upper", claims.sub.toUpperCase());
}
export function onOpen(session) {
  session.send(session.getAttribute("upper") + " " + session.getAttribute("claims").sub);
}
'''})
    server = serve(app, "--jwt-secret", SECRET)

    async def main():
        async with websockets.connect(server.url("/ws/whojs?token=" + token(SECRET, roles=["a"]))) as ws:
            assert json.loads(await ws.recv()) == {"sub": "alice", "type": "object", "roles": ["a"]}
        async with websockets.connect(server.url("/ws/hookjs?token=" + token(SECRET, roles=["chat"]))) as ws:
            assert await ws.recv() == "ALICE alice"
        assert await status_of(server.url("/ws/hookjs?token=" + token(SECRET, roles=["x"]))) == (403, "not a chatter\n")
        assert await status_of(server.url("/ws/hookjs")) == (401, "missing token\n")
    run(main())
