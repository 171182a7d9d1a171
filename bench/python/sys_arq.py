"""arq: jobs in a Redis sorted set, polled by the worker."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any
from urllib.parse import urlparse

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

import common

_url = urlparse(common.REDIS_URL)
REDIS = RedisSettings(
    host=_url.hostname or "127.0.0.1", port=_url.port or 6379, database=int(_url.path[1:] or 0)
)


async def noop(ctx: dict[str, Any], i: float) -> None:
    await common.job_done(ctx["redis"], i)


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 - arq's own convention
    redis_settings = REDIS
    # The worker process reads its slots from the environment the benchmark sets.
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "10"))


async def concurrent(pool: ArqRedis, jobs: int) -> None:
    """arq has no batch enqueue: the closest is many enqueue_job() calls at once."""
    for start in range(0, jobs, 1000):
        chunk = range(start, min(start + 1000, jobs))
        await asyncio.gather(*(pool.enqueue_job("noop", i) for i in chunk))


async def main() -> None:
    a = common.args()
    await common.reset_redis()
    pool = await create_pool(REDIS)

    async def enqueue(i: float) -> None:
        await pool.enqueue_job("noop", i)

    try:
        if a.phase == "enqueue-batch":
            common.report({"seconds": await common.timed(lambda: concurrent(pool, a.jobs))})
            return
        if a.phase == "producers":
            common.report(await common.producers(enqueue, a.jobs))
            return
        if a.phase == "latency":
            raise SystemExit("the latency phase is run for errands only")
        if a.fill == "one":
            fill = await common.one_by_one(enqueue, a.jobs)
        else:
            fill = {"seconds": await common.timed(lambda: concurrent(pool, a.jobs))}
        cmd = [sys.executable, "-m", "arq", "sys_arq.WorkerSettings"]
        env = {"BENCH_CONCURRENCY": str(common.per_process(a.concurrency, a.procs))}
        drain = await common.run_worker_until_done([cmd] * a.procs, a.jobs, env)
        common.report({"fill": fill, **drain})
    finally:
        await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())
