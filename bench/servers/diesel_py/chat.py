"""Benchmark route /ws/chat: everyone joins one room; each message goes to all the others."""


def on_open(session):
    session.room("chat").join()


def on_message(session, message):
    session.room("chat").broadcast_except(message)
