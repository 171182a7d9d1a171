"""errands: the Python SDK against an errands server (ERRANDS_URL)."""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

import common
import errands

app = errands.App()


@app.on_startup
async def connect(state: errands.State) -> None:
    state.redis = aioredis.from_url(common.REDIS_URL)


@app.on_shutdown
async def disconnect(state: errands.State) -> None:
    await state.redis.aclose()


@app.task(queue="bench")
async def noop(ctx: errands.Context, i: float) -> None:
    await common.job_done(ctx.state.redis, i)


def workers(jobs_at_once: int, procs: int) -> list[list[str]]:
    slots = str(common.per_process(jobs_at_once, procs))
    cmd = [sys.executable, "-m", "errands", "worker", "sys_errands:app",
           "--concurrency", slots, "--log-level", "warning"]  # fmt: skip
    return [cmd] * procs


async def batch(jobs: int) -> None:
    await app.enqueue_many([noop.spec(i) for i in range(jobs)])


async def main() -> None:
    a = common.args()
    await common.reset_redis()
    async with app:
        if a.phase == "enqueue-batch":
            common.report({"seconds": await common.timed(lambda: batch(a.jobs))})
        elif a.phase == "producers":
            common.report(await common.producers(noop.enqueue, a.jobs))
        elif a.phase == "latency":
            load = lambda: common.offer_at_rate(noop.enqueue, a.jobs)  # noqa: E731
            cmds = workers(a.concurrency, a.procs)
            common.report(await common.run_worker_until_done(cmds, a.jobs, {}, load))
        else:
            if a.fill == "one":
                fill = await common.one_by_one(noop.enqueue, a.jobs)
            else:
                fill = {"seconds": await common.timed(lambda: batch(a.jobs))}
            cmds = workers(a.concurrency, a.procs)
            drain = await common.run_worker_until_done(cmds, a.jobs, {})
            common.report({"fill": fill, **drain})


if __name__ == "__main__":
    asyncio.run(main())
