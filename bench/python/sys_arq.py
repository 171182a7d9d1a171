"""arq: jobs in a Redis sorted set, polled by the worker."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any
from urllib.parse import urlparse

from arq import create_pool
from arq.connections import RedisSettings

import common

_url = urlparse(common.REDIS_URL)
REDIS = RedisSettings(
    host=_url.hostname or "127.0.0.1", port=_url.port or 6379, database=int(_url.path[1:] or 0)
)


async def noop(ctx: dict[str, Any], i: int) -> None:
    await common.job_done(ctx["redis"])


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 - arq's own convention
    redis_settings = REDIS
    # The worker process reads the concurrency from the environment the benchmark sets.
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "10"))


async def main() -> None:
    a = common.args()
    await common.reset_redis()
    pool = await create_pool(REDIS)
    try:
        if a.phase == "enqueue-one":

            async def one_by_one() -> None:
                for i in range(a.jobs):
                    await pool.enqueue_job("noop", i)

            common.report({"seconds": await common.timed(one_by_one)})
            return

        # arq has no batch enqueue: the closest is many enqueue_job() calls at once.
        async def concurrent() -> None:
            for start in range(0, a.jobs, 1000):
                chunk = range(start, min(start + 1000, a.jobs))
                await asyncio.gather(*(pool.enqueue_job("noop", i) for i in chunk))

        seconds = await common.timed(concurrent)
        if a.phase == "enqueue-batch":
            common.report({"seconds": seconds})
            return
        cmd = [sys.executable, "-m", "arq", "sys_arq.WorkerSettings"]
        env = {"BENCH_CONCURRENCY": str(a.concurrency)}
        common.report({"seconds": await common.run_worker_until_done(cmd, a.jobs, env)})
    finally:
        await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())
