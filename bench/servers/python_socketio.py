"""python-socketio peer: AsyncServer as an ASGI app under uvicorn (uvloop, httptools, websockets-sansio).

Why this deployment: it is python-socketio's documented asyncio deployment without aiohttp, and
uvicorn with uvloop + httptools is the fastest standard ASGI stack. Websocket transport only; the
route is a query parameter (?route=chat|echo) so both scenarios share the default namespace.
Usage: python python_socketio.py PORT
"""

import sys
from urllib.parse import parse_qs

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", transports=["websocket"], cors_allowed_origins="*")
routes: dict[str, str] = {}


@sio.event
async def connect(sid: str, environ: dict, auth: object = None) -> None:
    route = parse_qs(environ.get("QUERY_STRING", "")).get("route", ["chat"])[0]
    routes[sid] = route
    if route == "chat":
        await sio.enter_room(sid, "chat")


@sio.event
async def disconnect(sid: str, *args: object) -> None:
    routes.pop(sid, None)


@sio.on("msg")
async def msg(sid: str, data: object) -> None:
    if routes.get(sid) == "echo":
        await sio.emit("msg", data, to=sid)
    else:
        await sio.emit("msg", data, room="chat", skip_sid=sid)


async def healthz(scope: dict, receive: object, send: object) -> None:
    """Plain-HTTP fallback: 200 on /healthz, 404 elsewhere."""
    ok = scope.get("path") == "/healthz"
    await send({"type": "http.response.start", "status": 200 if ok else 404, "headers": []})
    await send({"type": "http.response.body", "body": b"ok" if ok else b""})


app = socketio.ASGIApp(sio, other_asgi_app=healthz)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                ws="websockets-sansio", log_level="warning", access_log=False)
