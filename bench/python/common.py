"""Shared by the per-system scripts: Redis counter, timing, argument parsing, JSON output.

Each job of every system does the same work: one Redis INCR of a completion counter, which
the benchmark polls to see when the last job has finished (taskiq and arq have no other way to
tell without a result backend, so errands counts the same way to keep the comparison fair).
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


async def run_worker_until_done(cmd: list[str], jobs: int, env: dict[str, str]) -> float:
    """Start the worker process, wait until the counter reaches ``jobs``; seconds taken."""
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
