"""The seed's chat room as a Python module (`/ws/python/chat`); it shares the room "chat" with `chat.js`."""

import json
import time


def on_open(session):
    username = session.get_parameter("user") or "anonymous"
    session.set_attribute("username", username)
    session.room("chat").join()

    session.send(json.dumps({"type": "welcome", "id": session.id}))
    session.room("chat").broadcast_except(json.dumps({"type": "join", "user": username}))


def on_message(session, message):
    username = session.get_attribute("username")
    session.room("chat").broadcast_except(json.dumps({
        "type": "message",
        "from": username,
        "text": message,
        "timestamp": int(time.time() * 1000),
    }))


def on_close(session):
    username = session.get_attribute("username")
    session.room("chat").broadcast_except(json.dumps({"type": "leave", "user": username}))
    # leaving the room happens automatically after on_close returns
