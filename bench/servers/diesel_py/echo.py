"""Benchmark route /ws/echo: send each message back."""


def on_message(session, message):
    session.send(message)
