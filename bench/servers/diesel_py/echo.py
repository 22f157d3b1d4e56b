"""Benchmark route /ws/echo: send each message back."""


def on_open(session):
    """Runs on every connection, as Bun's open() does: the handshake target counts handshakes with on_open run."""


def on_message(session, message):
    session.send(message)
