"""Graceful drain: a job the server leased before it saw ``capacity 0`` still runs.

The race needs a job on the wire while the worker drains. A relay between the worker and the
real server holds everything the server sends for a moment (in order), so the job the server
pushes is still travelling when the worker, told to stop, finds nothing running. The worker
must wait for it (docs: Worker._quiesce), run it, and only then close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import errands
from errands.testing import ServerHandle

from .conftest import wait_state


@contextlib.asynccontextmanager
async def delayed_relay(url: str, delay: float) -> AsyncIterator[str]:
    """A TCP relay to ``url``: requests pass at once, replies arrive ``delay`` seconds late."""
    target = urlsplit(url)
    loop = asyncio.get_running_loop()
    pumps: set[asyncio.Task[None]] = set()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def forward_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    queue.put_nowait((loop.time() + delay, data))
            queue.put_nowait((loop.time() + delay, b""))

        reading = loop.create_task(read())
        try:
            with contextlib.suppress(OSError):
                while True:
                    due, data = await queue.get()
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
        finally:
            reading.cancel()
            writer.close()

    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(target.hostname, target.port)
        for pump in (forward(client_r, server_w), forward_late(server_r, client_w)):
            task = loop.create_task(pump)
            pumps.add(task)
            task.add_done_callback(pumps.discard)

    relay = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = relay.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        relay.close()
        for task in list(pumps):
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await relay.wait_closed()


async def test_drain_runs_a_job_pushed_before_capacity_0(
    app: errands.App, errands_server: ServerHandle
) -> None:
    first_started = asyncio.Event()
    release_first = asyncio.Event()
    second_ran: list[int] = []

    async with delayed_relay(errands_server.url, delay=0.3) as relay_url:
        worker_app = errands.App(relay_url)  # the worker talks through the relay

        @worker_app.task
        async def first(ctx: errands.Context) -> str:
            first_started.set()
            await release_first.wait()
            return "first"

        @worker_app.task
        async def second(ctx: errands.Context) -> str:
            second_ran.append(ctx.attempt)
            return "second"

        worker = errands.Worker(worker_app, concurrency=2, grace=30)
        running = asyncio.get_running_loop().create_task(worker.run())
        try:
            await asyncio.wait_for(worker.wait_connected(), 10)
            a = await app.enqueue("first")  # the test's own requests go straight to the server
            await asyncio.wait_for(first_started.wait(), 10)
            b = await app.enqueue("second")
            # Leased to the worker (it had a free slot); its `job` message is in the relay.
            await wait_state(app, b.id, "running")
            worker.stop()  # as on SIGTERM: capacity 0, then drain
            release_first.set()  # the worker now has nothing running, but `second` is coming
            await asyncio.wait_for(running, 30)
        finally:
            if not running.done():
                worker.stop(graceful=False)
                await running
            await worker_app.close()

    assert second_ran == [1]
    for job, result in ((a, "first"), (b, "second")):
        info = await job.status()
        assert info.state is errands.JobState.COMPLETED, info.errors
        assert info.result == result
        assert info.errors == []  # in particular no WorkerLost: the socket closed after it ran
