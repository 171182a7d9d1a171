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
async def noop(ctx: errands.Context, i: int) -> None:
    await common.job_done(ctx.state.redis)


async def main() -> None:
    a = common.args()
    await common.reset_redis()
    async with app:
        if a.phase == "enqueue-one":

            async def one_by_one() -> None:
                for i in range(a.jobs):
                    await noop.enqueue(i)

            common.report({"seconds": await common.timed(one_by_one)})
            return

        async def batch() -> None:
            await app.enqueue_many([noop.spec(i) for i in range(a.jobs)])

        seconds = await common.timed(batch)
        if a.phase == "enqueue-batch":
            common.report({"seconds": seconds})
            return
        cmd = [sys.executable, "-m", "errands", "worker", "sys_errands:app",
               "--concurrency", str(a.concurrency), "--log-level", "warning"]  # fmt: skip
        common.report({"seconds": await common.run_worker_until_done(cmd, a.jobs, {})})


if __name__ == "__main__":
    asyncio.run(main())
