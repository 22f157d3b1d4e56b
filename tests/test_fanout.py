"""Fan-out through one room under load, and a slow consumer that must not cost the others."""

from __future__ import annotations

import asyncio

import websockets
from conftest import write_scripts
from rawws import RawClient

ROOM = '''
def on_open(session):
    session.room("busy").join()

def on_message(session, message):
    session.room("busy").broadcast(message)
'''


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_fifty_clients_each_broadcasting_forty(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"room.py": ROOM}))
    clients, per_client = 50, 40

    async def main():
        sockets = [await websockets.connect(server.url("/ws/room"), max_queue=None) for _ in range(clients)]
        await asyncio.sleep(0.2)  # every client has joined before anyone sends

        async def receive(ws):
            return [await ws.recv() for _ in range(clients * per_client)]

        async def send(index, ws):
            for n in range(per_client):
                await ws.send(f"{index}:{n}")

        receivers = [asyncio.create_task(receive(ws)) for ws in sockets]
        await asyncio.gather(*(send(i, ws) for i, ws in enumerate(sockets)))
        received = await asyncio.gather(*receivers)
        for ws in sockets:
            await ws.close()
        return received

    for messages in run(main()):
        assert len(messages) == clients * per_client
        by_sender: dict[str, list[int]] = {}
        for message in messages:
            sender, n = message.split(":")
            by_sender.setdefault(sender, []).append(int(n))
        assert by_sender == {str(i): list(range(per_client)) for i in range(clients)}


def test_slow_consumer_is_closed_with_1008_and_others_keep_receiving(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"room.py": ROOM}), "--send-queue-size", "256K")
    payload = "x" * 8000
    total = 5_000  # 40 MB through the room, more than the kernel's socket buffers hold

    async def main():
        readers = [await websockets.connect(server.url("/ws/room"), max_queue=None) for _ in range(3)]
        slow = RawClient(server.port, "/ws/room")  # joins, then stops reading
        await asyncio.sleep(0.2)
        rss_before = server.rss_kib()
        counts = [0] * len(readers)
        progress = asyncio.Event()

        async def drain(index, ws):
            while counts[index] < total:
                await ws.recv()
                counts[index] += 1
                progress.set()

        tasks = [asyncio.create_task(drain(i, ws)) for i, ws in enumerate(readers)]
        closing = None
        for n in range(total):
            await readers[0].send(payload)
            while n - min(counts) > 50:  # the readers keep up; only the slow one falls behind
                progress.clear()
                await progress.wait()
            if closing is None and n % 100 == 0 and "closing with 1008" in server.log():
                # the slow client starts reading again: it gets what was queued, then the close
                slow.sock.settimeout(10)
                closing = asyncio.create_task(asyncio.to_thread(slow.read_until_close))
        await asyncio.gather(*tasks)
        rss_after = server.rss_kib()
        for ws in readers:
            await ws.close()
        assert closing is not None, server.log()
        code, _ = await closing
        return code, counts, rss_before, rss_after

    code, counts, rss_before, rss_after = run(main())
    assert counts == [total] * 3
    assert code == 1008
    assert "not reading: send queue over 262144 bytes, closing with 1008" in server.log()
    # memory stays bounded: far less than the 40 MB that went through the room
    assert rss_after - rss_before < 12_000, (rss_before, rss_after)
    assert "diesel_slow_consumer_closes_total 1.0" in server.http("/metrics")[1]
