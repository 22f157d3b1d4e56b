"""Tests of chat.js, run in this process by dieselengine's harness: `python -m pytest`."""

from pathlib import Path

from dieselengine.testing import Harness

CHAT = Path(__file__).parent / "chat.js"


def test_messages_reach_everyone_in_the_room():
    with Harness(CHAT) as app:
        ann = app.connect("/ws/chat?name=ann")
        assert ann.receive_json() == {"type": "joined", "name": "ann", "online": 1}
        bob = app.connect("/ws/chat", params={"name": "bob"})
        assert ann.receive_json() == {"type": "joined", "name": "bob", "online": 2}
        assert bob.receive_json()["online"] == 2

        bob.send("hello")
        for client in (ann, bob):
            message = client.receive_json()
            assert (message["name"], message["text"]) == ("bob", "hello")

        bob.close()
        assert ann.receive_json() == {"type": "left", "name": "bob", "online": 1}
        assert app.members("chat") == 1
