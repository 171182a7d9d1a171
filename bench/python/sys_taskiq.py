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
async def noop(i: int) -> None:
    global _redis
    if _redis is None:
        _redis = aioredis.from_url(common.REDIS_URL)
    await common.job_done(_redis)


async def main() -> None:
    a = common.args()
    await common.reset_redis()
    await broker.startup()  # creates the consumer group, so jobs sent before a worker count
    try:
        if a.phase == "enqueue-one":

            async def one_by_one() -> None:
                for i in range(a.jobs):
                    await noop.kiq(i)

            common.report({"seconds": await common.timed(one_by_one)})
            return

        # Taskiq has no batch enqueue: the closest is many kiq() calls at once.
        async def concurrent() -> None:
            for start in range(0, a.jobs, 1000):
                await asyncio.gather(
                    *(noop.kiq(i) for i in range(start, min(start + 1000, a.jobs)))
                )

        seconds = await common.timed(concurrent)
        if a.phase == "enqueue-batch":
            common.report({"seconds": seconds})
            return
        cmd = [sys.executable, "-m", "taskiq", "worker", "sys_taskiq:broker", "--workers", "1",
               "--max-async-tasks", str(a.concurrency), "--no-configure-logging"]  # fmt: skip
        common.report({"seconds": await common.run_worker_until_done(cmd, a.jobs, {})})
    finally:
        await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
