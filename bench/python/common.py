"""Shared by the per-system scripts: the job's work, timing, argument parsing, JSON output.

Each job of every system does the same work, chosen by ``BENCH_TASK``:

- ``print`` (the default): python_queue_benchmark's job, print the current time. The workers'
  stdout is read here, and the last completion is the largest time printed.
- ``incr``: one Redis INCR of a completion counter, which is polled here every 5 ms. Heavier per
  job (a redis-py round trip), so it narrows the differences between systems.

A job's argument is a number: its index, or (in the ``latency`` phase) the wall-clock time taken
just before its enqueue request, so that the job can print how long it waited to start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
COUNTER = "bench:done"
TASK = os.environ.get("BENCH_TASK", "print")
DONE = "done "
HERE = os.path.dirname(os.path.abspath(__file__))
# Wall-clock times above this are enqueue timestamps (latency phase), below it job indexes.
_EPOCH_2020 = 1.58e9
PRODUCERS = 100
LATENCY_RATE = 500.0


def args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["enqueue-batch", "process", "producers", "latency"])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--procs", type=int, default=1, help="worker processes")
    parser.add_argument("--fill", choices=["one", "batch"], default="one")
    return parser.parse_args()


async def reset_redis() -> None:
    """Empty the benchmark's Redis database (a dedicated db number, 9 by default)."""
    r = aioredis.from_url(REDIS_URL)
    await r.flushdb()
    await r.aclose()


async def timed(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50_ms": at(0.50) * 1e3, "p99_ms": at(0.99) * 1e3, "max_ms": ordered[-1] * 1e3}


async def one_by_one(enqueue: Callable[[int], Awaitable[object]], jobs: int) -> dict[str, float]:
    """``jobs`` enqueues, each awaited before the next: the total and per-enqueue percentiles."""
    each: list[float] = []
    start = time.perf_counter()
    for i in range(jobs):
        t = time.perf_counter()
        await enqueue(i)
        each.append(time.perf_counter() - t)
    return {"seconds": time.perf_counter() - start, **_percentiles(each)}


def one_by_one_sync(enqueue: Callable[[int], object], jobs: int) -> dict[str, float]:
    """The same for a system whose enqueue is a blocking call (Huey)."""
    each: list[float] = []
    start = time.perf_counter()
    for i in range(jobs):
        t = time.perf_counter()
        enqueue(i)
        each.append(time.perf_counter() - t)
    return {"seconds": time.perf_counter() - start, **_percentiles(each)}


async def producers(enqueue: Callable[[int], Awaitable[object]], jobs: int) -> dict[str, float]:
    """``PRODUCERS`` asyncio tasks enqueue at once (request handlers of one web process), each
    awaiting its own enqueues one by one; acknowledged jobs per second."""

    async def producer(first: int) -> None:
        for i in range(first, jobs, PRODUCERS):
            await enqueue(i)

    seconds = await timed(lambda: _gather(producer(p) for p in range(PRODUCERS)))
    return {"seconds": seconds, "jobs_per_s": jobs / seconds}


async def _gather(coros: Any) -> None:
    await asyncio.gather(*coros)


async def offer_at_rate(enqueue: Callable[[float], Awaitable[object]], jobs: int) -> None:
    """Offer ``jobs`` jobs at ``LATENCY_RATE`` per second, open loop: each enqueue is its own
    task started on schedule, so a slow acknowledgement does not delay the next offer. The job's
    argument is the wall-clock time taken just before its request."""
    start = time.perf_counter()
    pending: list[asyncio.Task[object]] = []
    for k in range(jobs):
        delay = start + k / LATENCY_RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(enqueue(time.time())))
    await asyncio.gather(*pending)


def job_done_sync(arg: float) -> None:
    """The work of one job for a system whose tasks are plain functions (Huey)."""
    now = time.time()
    if TASK == "incr":
        import redis

        redis.Redis.from_url(REDIS_URL).incr(COUNTER)
    if TASK == "print" or arg > _EPOCH_2020:
        _write_line(now, arg)


async def job_done(redis: aioredis.Redis, arg: float = 0) -> None:
    """The work of one job, the same for every system."""
    now = time.time()
    if TASK == "incr":
        await redis.incr(COUNTER)
    if TASK == "print" or arg > _EPOCH_2020:
        _write_line(now, arg)


def _write_line(now: float, arg: float) -> None:
    """One write(2) per job, as print(flush=True) does for one thread; a single syscall also
    keeps the lines of threads and processes sharing one pipe whole (Huey's consumers)."""
    # In the latency phase the argument is the enqueue time: add the wait to start.
    line = f"{DONE}{now} {now - arg}\n" if arg > _EPOCH_2020 else f"{DONE}{now}\n"
    os.write(1, line.encode())


async def run_worker_until_done(
    cmds: Sequence[list[str]],
    jobs: int,
    env: dict[str, str],
    load: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, float]:
    """Start the worker processes and wait until ``jobs`` jobs are done; seconds from the start
    to the last completion. With ``load``, the workers are left idle for a second first, then
    ``load`` offers the jobs and the waits to start are reported (the latency phase)."""
    if TASK == "incr" and load is None:
        return {"seconds": await _until_counted(cmds, jobs, env)}
    return await _until_printed(cmds, jobs, env, load)


async def _spawn(cmds: Sequence[list[str]], env: dict[str, str], out: int) -> list[Any]:
    # Each in its own session, so that killing its group also ends the processes it forks.
    procs = []
    for cmd in cmds:
        procs.append(
            await asyncio.create_subprocess_exec(
                *cmd,
                cwd=HERE,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    return procs


async def _stop(procs: list[Any]) -> None:
    for proc in procs:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


class _Lines:
    """Counts the ``done <time> [<wait>]`` lines of every worker's stdout."""

    def __init__(self, jobs: int, start: float) -> None:
        self.jobs, self.done, self.last = jobs, 0, start
        self.waits: list[float] = []
        self.finished = asyncio.Event()

    async def read(self, stream: asyncio.StreamReader) -> None:
        tail = b""
        while not self.finished.is_set():
            chunk = await stream.read(1 << 16)
            if not chunk:
                raise SystemExit(f"a worker exited after {self.done} jobs")
            *lines, tail = (tail + chunk).split(b"\n")
            for line in lines:
                if line.startswith(DONE.encode()):
                    self._count(line[len(DONE) :].split())

    def _count(self, fields: list[bytes]) -> None:
        self.done += 1
        self.last = max(self.last, float(fields[0]))
        if len(fields) > 1:
            self.waits.append(float(fields[1]))
        if self.done >= self.jobs:
            self.finished.set()


async def _until_printed(
    cmds: Sequence[list[str]],
    jobs: int,
    env: dict[str, str],
    load: Callable[[], Awaitable[None]] | None,
) -> dict[str, float]:
    start = time.time()
    procs = await _spawn(cmds, env, subprocess.PIPE)
    lines = _Lines(jobs, start)
    readers = [asyncio.ensure_future(lines.read(p.stdout)) for p in procs]
    try:
        if load is not None:
            await asyncio.sleep(1.0)  # the pool is connected and idle before the first offer
            await load()
        done = asyncio.ensure_future(lines.finished.wait())
        await asyncio.wait_for(asyncio.wait([done, *readers], return_when="FIRST_COMPLETED"), 600)
        for reader in readers:
            if reader.done() and reader.exception():
                raise reader.exception()  # type: ignore[misc]
        if not lines.finished.is_set():
            raise SystemExit("timed out waiting for the jobs")
        if load is not None:
            return {"jobs": float(len(lines.waits)), **_percentiles(lines.waits)}
        return {"seconds": lines.last - start}
    finally:
        for reader in readers:
            reader.cancel()
        await _stop(procs)


async def _until_counted(cmds: Sequence[list[str]], jobs: int, env: dict[str, str]) -> float:
    """Poll the Redis counter the jobs INCR until it reaches ``jobs``."""
    r = aioredis.from_url(REDIS_URL)
    start = time.perf_counter()
    procs = await _spawn(cmds, env, subprocess.DEVNULL)
    try:
        deadline = start + 600
        while int(await r.get(COUNTER) or 0) < jobs:
            if any(p.returncode is not None for p in procs):
                raise SystemExit(f"a worker exited early: {cmds}")
            if time.perf_counter() > deadline:
                raise SystemExit("timed out waiting for the jobs")
            await asyncio.sleep(0.005)
        return time.perf_counter() - start
    finally:
        await _stop(procs)
        await r.aclose()


def per_process(concurrency: int, procs: int) -> int:
    """Slots of each worker process, so that the total stays ``concurrency``."""
    if concurrency % procs:
        raise SystemExit(f"--concurrency {concurrency} does not split into {procs} processes")
    return concurrency // procs


def report(result: dict[str, Any]) -> None:
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
