"""pgqueuer: jobs in a PostgreSQL table, picked with SKIP LOCKED, woken by LISTEN/NOTIFY.

The harness creates an empty database per phase and passes its DSN in ``BENCH_PG_DSN``; the
schema is installed here. Run as ``sys_pgqueuer.py worker <slots>`` it is one worker process.
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Job, QueueManager
from pgqueuer.queries import Queries

import common

DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/errands_bench_pgq")
BATCH = 10_000


async def worker(slots: int) -> None:
    redis = aioredis.from_url(common.REDIS_URL)
    qm = QueueManager(Queries(AsyncpgDriver(await asyncpg.connect(DSN))))

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        await common.job_done(redis, float((job.payload or b"0").decode()))

    # pgqueuer requires max_concurrent_tasks >= 2 x batch_size: the largest batch within the
    # process's share of the slots.
    await qm.run(batch_size=max(1, slots // 2), max_concurrent_tasks=slots)


async def batch(queries: Queries, jobs: int) -> None:
    """pgqueuer has a true batch enqueue: one INSERT of many rows."""
    for start in range(0, jobs, BATCH):
        n = min(BATCH, jobs - start)
        payloads: list[bytes | None] = [str(i).encode() for i in range(start, start + n)]
        await queries.enqueue(["noop"] * n, payloads, [0] * n)


async def main() -> None:
    a = common.args()
    await common.reset_redis()
    await Queries(AsyncpgDriver(conn := await asyncpg.connect(DSN))).install()
    await conn.close()
    # A pool, so that the producers phase has connections to run its enqueues concurrently.
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=10)
    queries = Queries(AsyncpgPoolDriver(pool))

    async def enqueue(i: float) -> None:
        await queries.enqueue("noop", str(i).encode())

    try:
        if a.phase == "enqueue-batch":
            common.report({"seconds": await common.timed(lambda: batch(queries, a.jobs))})
            return
        if a.phase == "producers":
            common.report(await common.producers(enqueue, a.jobs))
            return
        if a.phase == "latency":
            raise SystemExit("the latency phase is run for errands only")
        if a.fill == "one":
            fill = await common.one_by_one(enqueue, a.jobs)
        else:
            fill = {"seconds": await common.timed(lambda: batch(queries, a.jobs))}
        slots = str(common.per_process(a.concurrency, a.procs))
        cmd = [sys.executable, "sys_pgqueuer.py", "worker", slots]
        drain = await common.run_worker_until_done([cmd] * a.procs, a.jobs, {"BENCH_PG_DSN": DSN})
        common.report({"fill": fill, **drain})
    finally:
        await pool.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(worker(int(sys.argv[2])))
    else:
        asyncio.run(main())
