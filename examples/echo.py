"""Echo every message back to its sender (`/ws/echo`)."""


def on_message(session, message):
    session.send(message)
