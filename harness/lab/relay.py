"""Link delay for the virtual lab: a TCP relay that holds every byte for a fixed time each way.

The kernel here has ``tc tbf`` (rate) but no ``netem`` (delay), so a device's latency lives in
user space: the device's supervisor listens on 127.0.0.1, and for every client connection opens
one to the device's server (its adbd, or sshd inside the board's namespace) and copies both ways.
Each chunk read is stamped with the time it may leave (arrival + delay) and written no earlier,
in order, so a request/answer round trip gains twice the delay while a bulk transfer keeps its
throughput (the pipe holds up to ``WINDOW_BYTES`` in flight, as a real link holds its
bandwidth-delay product). A half-close (EOF) travels with the same delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

LOG = logging.getLogger("edgelab.lab.relay")
CHUNK_BYTES = 64 << 10
WINDOW_BYTES = 16 << 20  # in flight per direction: 16 MiB covers 1 Gbit/s x 100 ms


class DelayRelay:
    """Forwards 127.0.0.1:<port> to ``target`` with ``delay_s`` added in each direction."""

    def __init__(self, target_host: str, target_port: int, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError(f"link delay must be >= 0 s, got {delay_s}")
        self.target = (target_host, target_port)
        self.delay_s = delay_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                device_reader, device_writer = await asyncio.open_connection(*self.target)
            except OSError as exc:
                # the device's server is gone: the client sees its connection closed, as it would
                LOG.warning("relay to %s:%d: %s", *self.target, exc)
                client_writer.close()
                return
            try:
                await asyncio.gather(
                    self._pipe(client_reader, device_writer),
                    self._pipe(device_reader, client_writer),
                )
            finally:
                for writer in (client_writer, device_writer):
                    writer.close()
        finally:
            self._connections.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk no earlier than ``delay_s`` after it arrived."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        room = asyncio.Semaphore(max(1, WINDOW_BYTES // CHUNK_BYTES))

        async def receive() -> None:
            while True:
                await room.acquire()
                try:
                    data = await reader.read(CHUNK_BYTES)
                except (ConnectionError, OSError):
                    data = b""  # a reset counts as the end of what this side sends
                await queue.put((loop.time() + self.delay_s, data))
                if not data:
                    return

        async def send() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                room.release()
                if not data:
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()  # the other side finished sending: so does this one
                    return
                try:
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, OSError):
                    return  # the receiving side is gone; its own pipe sees EOF and ends

        receiving = asyncio.ensure_future(receive())
        try:
            await send()
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
