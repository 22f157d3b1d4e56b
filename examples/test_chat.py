"""The examples' chat, tested with dieselengine's harness: `python -m pytest examples`.

The harness runs the scripts in this process with the real runtimes and rooms, but no sockets:
each call returns once the scripts are done with it. (Files named test_*.py are not routes.)
"""

from pathlib import Path

import pytest

from dieselengine.testing import Harness

HERE = Path(__file__).parent


@pytest.mark.parametrize("script", ["chat.js", "python/chat.py"])
def test_chat(script):
    with Harness(HERE / script) as app:
        alice = app.connect("/ws/chat?user=alice")
        assert alice.receive_json() == {"type": "welcome", "id": alice.id}

        bob = app.connect("/ws/chat", params={"user": "bob"})
        assert bob.receive_json()["type"] == "welcome"
        assert alice.receive_json() == {"type": "join", "user": "bob"}
        assert app.members("chat") == 2

        bob.send("hello alice")
        message = alice.receive_json()
        assert message["type"] == "message" and message["from"] == "bob" and message["text"] == "hello alice"
        assert bob.received() == []  # broadcastExcept: not back to the sender

        bob.close()
        assert alice.receive_json() == {"type": "leave", "user": "bob"}
        assert app.members("chat") == 1


def test_online_counts_the_chat_room():
    with Harness(HERE) as app:  # the whole folder: every route, one set of rooms
        watcher = app.connect("/ws/online?room=chat")
        assert watcher.receive_json() == {"type": "online", "room": "chat", "count": 0}
        app.connect("/ws/chat?user=alice")
        app.connect("/ws/python/chat?user=bob")  # the same room from Python
        watcher.send("?")
        assert watcher.receive_json()["count"] == 2
