"""Huey with its Redis storage (RedisHuey: a Redis list, BRPOP), run by ``huey_consumer``.

Huey's client is blocking (no asyncio), so its enqueues are plain calls; it has no batch
enqueue either. Its worker is ``huey_consumer``: with one worker process (``--procs 1``) it
runs 10 workers as processes (``-k process``), with two it runs 2 consumers x 5 threads.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from huey import RedisHuey  # type: ignore[import-untyped]

import common

huey = RedisHuey("bench", url=common.REDIS_URL)


@huey.task()  # type: ignore[untyped-decorator]
def noop(i: float) -> None:
    common.job_done_sync(i)


def task() -> object:
    """The task as the consumer knows it: named after module sys_huey, not __main__."""
    import sys_huey

    return sys_huey.noop


def enqueue(i: float) -> object:
    return task()(i)  # type: ignore[operator]


def sequential(jobs: int) -> None:
    for i in range(jobs):
        enqueue(i)


def threaded_producers(jobs: int) -> dict[str, float]:
    """The producers phase with threads, Huey's client being blocking: 100 threads each
    enqueueing its share one by one."""

    def producer(first: int) -> None:
        for i in range(first, jobs, common.PRODUCERS):
            enqueue(i)

    with ThreadPoolExecutor(common.PRODUCERS) as pool:
        start = time.perf_counter()
        list(pool.map(producer, range(common.PRODUCERS)))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "jobs_per_s": jobs / seconds}


def consumers(jobs_at_once: int, procs: int) -> list[list[str]]:
    slots = str(common.per_process(jobs_at_once, procs))
    kind = "process" if procs == 1 else "thread"
    cmd = [sys.executable, "-m", "huey.bin.huey_consumer", "sys_huey.huey",
           "-w", slots, "-k", kind, "-n", "-q"]  # fmt: skip
    return [cmd] * procs


async def main() -> None:
    a = common.args()
    await common.reset_redis()
    if a.phase == "enqueue-batch":
        start = time.perf_counter()
        sequential(a.jobs)
        common.report({"seconds": time.perf_counter() - start})
        return
    if a.phase == "producers":
        common.report(threaded_producers(a.jobs))
        return
    if a.phase == "latency":
        raise SystemExit("the latency phase is run for errands only")
    # No batch enqueue: either fill is the one-by-one loop.
    fill = common.one_by_one_sync(enqueue, a.jobs)
    cmds = consumers(a.concurrency, a.procs)
    common.report({"fill": fill, **await common.run_worker_until_done(cmds, a.jobs, {})})


if __name__ == "__main__":
    asyncio.run(main())
