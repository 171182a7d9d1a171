"""The blocking facade (app.sync) for scripts and sync web frameworks."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

import errands
from errands.testing import ServerHandle, run_worker


def test_sync_enqueue_from_plain_code(errands_server: ServerHandle) -> None:
    # No event loop anywhere in this test.
    app = errands.App(errands_server.url)

    @app.task(queue="reports")
    def build_report(ctx: errands.Context, month: str) -> str:
        return month

    try:
        job = app.sync.enqueue(build_report, "2026-11")
        by_name = app.sync.enqueue("build_report", month="2026-12")
        info = app.sync.get_job(job.id)
        assert info.state is errands.JobState.QUEUED
        assert info.queue == "reports"
        assert app.sync.get_job(by_name.id).args == {"args": [], "kwargs": {"month": "2026-12"}}
        assert job.cancel().state is errands.JobState.CANCELLED
        with pytest.raises(errands.JobCancelled):
            job.result(timeout=5)
        with pytest.raises(errands.SerializationError):
            app.sync.enqueue("build_report", {1})
        with pytest.raises(errands.NotFound):
            app.sync.get_job("0193a5b2-7c1e-7d4a-9f1e-2b7d8c9e0a11")
        jobs = app.sync.enqueue_many([build_report.spec(str(m)) for m in range(3)])
        assert len({j.id for j in jobs}) == 3
    finally:
        app.sync.close()


def test_sync_facade_from_many_threads(errands_server: ServerHandle) -> None:
    app = errands.App(errands_server.url)
    try:
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda i: app.sync.enqueue("k", i).id, range(40)))
        assert len(set(ids)) == 40
    finally:
        app.sync.close()


async def test_sync_result_while_worker_runs(app: errands.App) -> None:
    @app.task
    async def double(ctx: errands.Context, n: int) -> int:
        return n * 2

    def produce() -> int:
        job = app.sync.enqueue(double, 21)
        return job.result(timeout=10)

    try:
        async with run_worker(app):
            assert await asyncio.to_thread(produce) == 42
        # Also callable straight from async code (it blocks this loop for the call).
        job = app.sync.enqueue("other")
        assert app.sync.get_job(job.id).kind == "other"
    finally:
        await asyncio.to_thread(app.sync.close)
