"""The producer side: what arq's ``create_pool()`` + ``enqueue_job()`` did.

docs/migrating-from-arq.md quotes these functions; python/tests/test_migration_examples.py runs
them against a real server.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import errands

from .tasks import app, download_content


async def main() -> list[errands.Job[int]]:
    jobs = []
    for url in ("https://facebook.com", "https://microsoft.com", "https://github.com"):
        jobs.append(await download_content.enqueue(url))
    return jobs


async def enqueue_by_name(url: str) -> errands.Job[int]:
    # without importing the worker's code: the task's name is enough
    return await app.enqueue("download_content", url)


async def deferred(url: str) -> list[errands.Job[int]]:
    # deferred by 10 seconds
    in_10s = await download_content.options(delay=10).enqueue(url)
    # deferred by 1 minute
    in_1min = await download_content.options(delay=timedelta(minutes=1)).enqueue(url)
    # deferred until jan 28th 2032 (run_at must be timezone-aware)
    jan_28 = datetime(2032, 1, 28, tzinfo=timezone.utc)
    in_2032 = await download_content.options(run_at=jan_28).enqueue(url)
    return [in_10s, in_1min, in_2032]


async def once(url: str) -> errands.Job[int]:
    job = await download_content.options(unique_key=f"download:{url}").enqueue(url)
    if not job.created:
        print("already queued or running:", job.id)  # arq returned None here
    return job


async def show(job: errands.Job[int]) -> int:
    print(job.id)  # a UUIDv7 chosen by the server
    info = await job.status()  # JobInfo: state, args, attempt, errors, created_at, ...
    print(info.state)  # e.g. queued
    try:
        return await job.result(timeout=5)  # waits on the server's event stream
    except errands.JobFailed as exc:  # dead; arq re-raised the task's exception here
        print(exc.error)  # JobError(type=..., message=..., attempt=..., traceback=...)
        raise
