"""How long one acknowledged round trip from Python to an errands server takes, layer by layer.

    bench/python/.venvs/errands/bin/python bench/python/floor.py [--calls 5000]

(the venv bench.py creates for errands; it has the SDK and aiohttp). Against a fresh
``errands serve --memory``, each figure is the mean of N sequential calls, each awaited before
the next, as in the one-by-one enqueue phase of bench.py:

- ``await task.enqueue()``: the SDK;
- aiohttp ``POST /v1/jobs``: the same request without the SDK;
- a hand-written ``POST /v1/jobs`` on an asyncio stream: without aiohttp;
- a hand-written ``GET /healthz``: a round trip to a server that does no work.

The last is the floor for any acknowledged enqueue from asyncio Python on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp

import errands
from bench import Server


async def mean_micros(calls: int, call: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - start) / calls * 1e6


class RawHttp:
    """HTTP/1.1 over one kept-alive asyncio stream, reading exactly one response per request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, request: bytes) -> None:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await self.reader.readexactly(length)


def post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: floor\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def main(url: str, port: int, calls: int) -> None:
    body = b'{"kind":"noop","queue":"floor","args":[1]}'
    app = errands.App(url=url)

    @app.task(queue="floor")
    async def noop(ctx: errands.Context, i: int) -> None:
        return None

    async def enqueue() -> None:
        await noop.enqueue(1)

    async with app:
        sdk = await mean_micros(calls, enqueue)
    async with aiohttp.ClientSession() as session:

        async def aiohttp_post() -> None:
            headers = {"content-type": "application/json"}
            async with session.post(f"{url}/v1/jobs", data=body, headers=headers) as response:
                await response.read()

        via_aiohttp = await mean_micros(calls, aiohttp_post)
    raw = RawHttp(*await asyncio.open_connection("127.0.0.1", port))
    enqueue_request = post("/v1/jobs", body)
    healthz_request = b"GET /healthz HTTP/1.1\r\nHost: floor\r\n\r\n"
    by_hand = await mean_micros(calls, lambda: raw.call(enqueue_request))
    healthz = await mean_micros(calls, lambda: raw.call(healthz_request))
    print(f"{calls:,} sequential calls each, errands serve --memory, mean per call:")
    print(f"  await task.enqueue()                  {sdk:7.1f} µs")
    print(f"  aiohttp POST /v1/jobs                 {via_aiohttp:7.1f} µs")
    print(f"  hand-written POST /v1/jobs (asyncio)  {by_hand:7.1f} µs")
    print(f"  hand-written GET /healthz (asyncio)   {healthz:7.1f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    calls = parser.parse_args().calls
    server = Server(["--memory"])
    try:
        asyncio.run(main(server.url, server.port, calls))
    finally:
        server.stop()
