"""Taskiq with taskiq-redis's RedisStreamBroker (Redis Streams, consumer groups, acks)."""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis
from taskiq_redis import RedisStreamBroker

import common

broker = RedisStreamBroker(common.REDIS_URL)
_redis: aioredis.Redis | None = None


@broker.task
async def noop(i: float) -> None:
    global _redis
    if _redis is None:
        _redis = aioredis.from_url(common.REDIS_URL)
    await common.job_done(_redis, i)


async def enqueue(i: float) -> None:
    await noop.kiq(i)


async def concurrent(jobs: int) -> None:
    """Taskiq has no batch enqueue: the closest is many kiq() calls at once."""
    for start in range(0, jobs, 1000):
        await asyncio.gather(*(noop.kiq(i) for i in range(start, min(start + 1000, jobs))))


async def main() -> None:
    a = common.args()
    await common.reset_redis()
    await broker.startup()  # creates the consumer group, so jobs sent before a worker count
    try:
        if a.phase == "enqueue-batch":
            common.report({"seconds": await common.timed(lambda: concurrent(a.jobs))})
            return
        if a.phase == "producers":
            common.report(await common.producers(enqueue, a.jobs))
            return
        if a.phase == "latency":
            raise SystemExit("the latency phase is run for errands only")
        if a.fill == "one":
            fill = await common.one_by_one(enqueue, a.jobs)
        else:
            fill = {"seconds": await common.timed(lambda: concurrent(a.jobs))}
        # taskiq's own --workers forks the processes; each runs its share of the slots.
        slots = str(common.per_process(a.concurrency, a.procs))
        cmd = [sys.executable, "-m", "taskiq", "worker", "sys_taskiq:broker",
               "--workers", str(a.procs), "--max-async-tasks", slots,
               "--no-configure-logging"]  # fmt: skip
        drain = await common.run_worker_until_done([cmd], a.jobs, {})
        common.report({"fill": fill, **drain})
    finally:
        await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
