"""Shared by the per-system scripts: the job's work, timing, argument parsing, JSON output.

Each job of every system does the same work, chosen by ``BENCH_TASK``:

- ``print`` (the default): python_queue_benchmark's job, print the current time. The worker's
  stdout is read here, and the last completion is the largest time printed.
- ``incr``: one Redis INCR of a completion counter, which is polled here every 5 ms. Heavier per
  job (a redis-py round trip), so it narrows the differences between systems.
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
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
COUNTER = "bench:done"
TASK = os.environ.get("BENCH_TASK", "print")
DONE = "done "
HERE = os.path.dirname(os.path.abspath(__file__))


def args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["enqueue-one", "enqueue-batch", "process"])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
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


async def job_done(redis: aioredis.Redis) -> None:
    """The work of one job, the same for every system."""
    if TASK == "incr":
        await redis.incr(COUNTER)
    else:
        print(f"{DONE}{time.time()}", flush=True)


async def run_worker_until_done(cmd: list[str], jobs: int, env: dict[str, str]) -> float:
    """Start the worker process and wait until ``jobs`` jobs are done; seconds from the start
    to the last completion."""
    if TASK == "incr":
        return await _until_counted(cmd, jobs, env)
    return await _until_printed(cmd, jobs, env)


async def _until_printed(cmd: list[str], jobs: int, env: dict[str, str]) -> float:
    """Read the ``done <time>`` lines the jobs print; the last completion is the latest time."""
    start = time.time()
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=HERE, env={**os.environ, **env}, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    done, last, tail = 0, start, b""
    try:
        while done < jobs:
            chunk = await asyncio.wait_for(proc.stdout.read(1 << 16), timeout=600)
            if not chunk:
                raise SystemExit(f"worker exited after {done} jobs: {cmd}")
            *lines, tail = (tail + chunk).split(b"\n")
            for line in lines:
                if line.startswith(DONE.encode()):
                    done += 1
                    last = max(last, float(line[len(DONE) :]))
        return last - start
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def _until_counted(cmd: list[str], jobs: int, env: dict[str, str]) -> float:
    """Poll the Redis counter the jobs INCR until it reaches ``jobs``."""
    r = aioredis.from_url(REDIS_URL)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=HERE, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = start + 600
        while int(await r.get(COUNTER) or 0) < jobs:
            if proc.returncode is not None:
                raise SystemExit(f"worker exited early with {proc.returncode}: {cmd}")
            if time.perf_counter() > deadline:
                raise SystemExit("timed out waiting for the jobs")
            await asyncio.sleep(0.005)
        return time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        await r.aclose()


def report(result: dict[str, Any]) -> None:
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
