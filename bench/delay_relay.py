"""A TCP relay that adds a real network delay, for kernels without `tc netem`.

    python3 delay_relay.py LISTEN_ADDR LISTEN_PORT TARGET_ADDR TARGET_PORT RTT_MS

Runs inside a simulated host's network namespace in front of its sshd. Every byte is delivered
RTT/2 after it arrived, in order, in each direction, and a new connection waits one RTT before
the server side is reached (a TCP handshake's cost), so a client sees its SSH banner about 1.5 RTT
after it connects, as it would across a real link with that round trip.
"""
from __future__ import annotations

import asyncio
import sys
import time


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk is None:
                try:
                    writer.write_eof()
                except (OSError, RuntimeError):
                    pass
                return
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            chunk = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, chunk or None))
            if not chunk:
                break
        await sender
    except (OSError, asyncio.CancelledError):
        sender.cancel()


async def _handle(client_r, client_w, target, rtt: float) -> None:
    try:
        await asyncio.sleep(rtt)
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pump(client_r, server_w, rtt / 2), _pump(server_r, client_w, rtt / 2))
    finally:
        for w in (client_w, server_w):
            try:
                w.close()
            except OSError:
                pass


async def serve(listen, target, rtt: float) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(r, w, target, rtt), *listen, backlog=512)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    listen = (argv[0], int(argv[1]))
    target = (argv[2], int(argv[3]))
    try:
        asyncio.run(serve(listen, target, float(argv[4]) / 1000.0))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
