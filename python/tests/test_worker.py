"""The worker against a real server, in-process: results, retries, timeouts, cancel, progress."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import errands
from errands.testing import ServerHandle, run_server, run_worker

from .conftest import eventually, until

FAST_RETRY = errands.Backoff.none()


async def test_enqueue_to_result(app: errands.App) -> None:
    @app.task
    async def add(ctx: errands.Context, a: int, b: int) -> dict[str, Any]:
        return {"sum": a + b, "attempt": ctx.attempt, "kind": ctx.kind, "id": ctx.job_id}

    async with run_worker(app, concurrency=2):
        job = await add.enqueue(2, b=3)
        result = await job.result(timeout=10)
    assert result == {"sum": 5, "attempt": 1, "kind": "add", "id": job.id}
    info = await job.status()
    assert info.state is errands.JobState.COMPLETED
    assert info.result == result


async def test_retry_then_success(app: errands.App) -> None:
    @app.task(max_attempts=3, backoff=FAST_RETRY)
    async def flaky(ctx: errands.Context) -> int:
        if ctx.attempt < 3:
            raise ConnectionError(f"attempt {ctx.attempt} failed")
        return ctx.attempt

    async with run_worker(app):
        job = await flaky.enqueue()
        assert await job.result(timeout=10) == 3
    info = await job.status()
    assert info.attempt == 3
    assert [(e.attempt, e.type, e.message) for e in info.errors] == [
        (1, "ConnectionError", "attempt 1 failed"),
        (2, "ConnectionError", "attempt 2 failed"),
    ]
    assert info.errors[0].traceback is not None
    assert "raise ConnectionError" in info.errors[0].traceback


async def test_exhausted_attempts_raise_job_failed(app: errands.App) -> None:
    @app.task(max_attempts=2, backoff=FAST_RETRY)
    async def always_fails(ctx: errands.Context) -> None:
        raise ValueError("bad input")

    async with run_worker(app):
        job = await always_fails.enqueue()
        with pytest.raises(errands.JobFailed) as info:
            await job.result(timeout=10)
    assert info.value.job.state is errands.JobState.DEAD
    assert info.value.job.attempt == 2
    assert info.value.error is not None
    assert info.value.error.type == "ValueError"
    assert info.value.error.message == "bad input"


async def test_retry_with_delay_and_permanent(app: errands.App) -> None:
    @app.task(max_attempts=5)
    async def rate_limited(ctx: errands.Context) -> str:
        if ctx.attempt == 1:
            raise errands.Retry("429 from upstream", delay=0.05)
        return "ok"

    @app.task(max_attempts=5)
    async def invalid(ctx: errands.Context) -> None:
        raise errands.Permanent("record 42 does not exist")

    async with run_worker(app):
        retried = await rate_limited.enqueue()
        doomed = await invalid.enqueue()
        assert await retried.result(timeout=10) == "ok"
        with pytest.raises(errands.JobFailed) as info:
            await doomed.result(timeout=10)
    assert [e.type for e in (await retried.status()).errors] == ["Retry"]
    assert info.value.job.attempt == 1  # no retry despite max_attempts=5
    assert info.value.error is not None
    assert info.value.error.type == "Permanent"
    assert info.value.error.message == "record 42 does not exist"


async def test_timeout(app: errands.App) -> None:
    finished = asyncio.Event()

    @app.task(timeout=0.2, max_attempts=1)
    async def too_slow(ctx: errands.Context) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            finished.set()

    async with run_worker(app) as worker:
        job = await too_slow.enqueue()
        with pytest.raises(errands.JobFailed) as info:
            await job.result(timeout=10)
        await asyncio.wait_for(finished.wait(), 5)  # the coroutine really was stopped
        await until(lambda: worker.running == 0, what="worker to free the slot")
    assert info.value.error is not None
    assert info.value.error.type == "Timeout"


async def test_cancel_running_task(app: errands.App) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @app.task
    async def long_running(ctx: errands.Context) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @app.task
    async def quick(ctx: errands.Context) -> str:
        return "still serving"

    async with run_worker(app, concurrency=1):
        job = await long_running.enqueue()
        await asyncio.wait_for(started.wait(), 10)
        assert (await job.status()).state is errands.JobState.RUNNING
        await job.cancel()
        await asyncio.wait_for(cancelled.wait(), 10)
        with pytest.raises(errands.JobCancelled):
            await job.result(timeout=10)
        # The slot was freed: with concurrency 1 the next job still runs.
        assert await (await quick.enqueue()).result(timeout=10) == "still serving"
    info = await job.status()
    assert info.state is errands.JobState.CANCELLED
    assert info.errors == []  # the worker reported nothing after the cancel


async def test_progress_in_order(app: errands.App) -> None:
    steps = [10, 30, 50, 80, 100]
    seen = {p: asyncio.Event() for p in steps}

    @app.task
    async def compile_source(ctx: errands.Context) -> str:
        for percent in steps:
            await ctx.progress(percent, f"step {percent}", data={"percent": percent})
            await seen[percent].wait()  # hold until the test observed it
        return "done"

    observed: list[tuple[float | None, str | None]] = []
    async with run_worker(app):
        job = await compile_source.enqueue()
        for percent in steps:

            async def reached(p: int = percent) -> errands.Progress | None:
                await job.status()
                return job.progress if job.progress and job.progress.percent == p else None

            progress = await eventually(reached, what=f"progress {percent}")
            observed.append((progress.percent, progress.message))
            assert progress.data == {"percent": percent}
            seen[percent].set()
        assert await job.result(timeout=10) == "done"
    assert observed == [(p, f"step {p}") for p in steps]
    final = await job.status()
    assert final.state is errands.JobState.COMPLETED
    assert final.progress is not None
    assert final.progress.percent == 100


async def test_sync_tasks_run_off_the_loop(app: errands.App) -> None:
    release = threading.Event()
    blocking_started = threading.Event()

    @app.task
    def blocking(ctx: errands.Context, n: int) -> dict[str, Any]:
        blocking_started.set()
        ctx.progress(50, "halfway")  # plain call from a worker thread
        release.wait(10)
        return {"n": n, "thread": threading.current_thread().name}

    @app.task
    async def quick(ctx: errands.Context) -> str:
        return "async ran while the sync task blocked"

    async with run_worker(app, concurrency=2):
        slow = await blocking.enqueue(7)
        await asyncio.to_thread(blocking_started.wait, 10)
        # The loop is free: an async job completes while the sync one is blocked in its thread.
        assert await (await quick.enqueue()).result(timeout=10) == (
            "async ran while the sync task blocked"
        )

        async def halfway() -> bool:
            progress = (await slow.status()).progress
            return progress is not None and progress.percent == 50

        await eventually(halfway, what="progress from the sync task")
        release.set()
        result = await slow.result(timeout=10)
    assert result["n"] == 7
    assert result["thread"].startswith("errands-task")


async def test_unknown_kind(app: errands.App) -> None:
    @app.task
    async def known(ctx: errands.Context) -> None:
        return None

    async with run_worker(app, queues=["default"]):
        job = await app.kind("not.registered").options(max_attempts=1).enqueue()
        with pytest.raises(errands.JobFailed) as info:
            await job.result(timeout=10)
    assert info.value.error is not None
    assert info.value.error.type == "UnknownKind"
    assert "not.registered" in info.value.error.message


async def test_hooks_and_shared_state(app: errands.App) -> None:
    events: list[str] = []

    @app.on_startup
    async def connect(state: errands.State) -> None:
        events.append("startup")
        state.greeting = "hello"

    @app.on_shutdown
    def disconnect(state: errands.State) -> None:
        events.append(f"shutdown {state.greeting}")

    @app.task
    async def greet(ctx: errands.Context, name: str) -> str:
        return f"{ctx.state.greeting} {name}"

    async with run_worker(app):
        assert events == ["startup"]
        assert await (await greet.enqueue("ada")).result(timeout=10) == "hello ada"
    assert events == ["startup", "shutdown hello"]


async def test_queues_in_priority_order(app: errands.App) -> None:
    order: list[str] = []

    @app.task(queue="batch")
    async def batch_job(ctx: errands.Context) -> None:
        order.append("batch")

    @app.task(queue="interactive")
    async def interactive_job(ctx: errands.Context) -> None:
        order.append("interactive")

    batch = [await batch_job.enqueue() for _ in range(3)]
    interactive = [await interactive_job.enqueue() for _ in range(3)]
    async with run_worker(app, concurrency=1, queues=["interactive", "batch"]):
        for job in interactive + batch:
            await job.result(timeout=10)
    assert order == ["interactive"] * 3 + ["batch"] * 3


async def test_enqueue_from_a_task(app: errands.App) -> None:
    @app.task
    async def child(ctx: errands.Context, n: int) -> int:
        return n * 2

    @app.task
    async def parent(ctx: errands.Context, n: int) -> int:
        job = await child.enqueue(n)
        return await job.result(timeout=10)

    async with run_worker(app, concurrency=2):
        assert await (await parent.enqueue(21)).result(timeout=10) == 42


async def test_a_busy_worker_answers_pings_and_keeps_its_connection() -> None:
    # The server takes a worker silent for 1 s for dead. These plain functions run 2.5 s each,
    # one sleeping and one spinning on the CPU: the worker's reader answers the pings
    # meanwhile, so it keeps its connection and both jobs complete on their first attempt.
    args = ["--worker-silence-timeout", "1s", "--worker-ping-interval", "200ms"]
    async with run_server(args=args) as srv, errands.App(srv.url) as app:

        @app.task
        def sleeps(ctx: errands.Context, seconds: float) -> str:
            time.sleep(seconds)
            return "slept"

        @app.task
        def spins(ctx: errands.Context, seconds: float) -> int:
            deadline, turns = time.monotonic() + seconds, 0
            while time.monotonic() < deadline:
                turns += 1
            return turns

        async with run_worker(app, concurrency=2) as worker:
            connection = worker.worker_id
            jobs = [await sleeps.enqueue(2.5), await spins.enqueue(2.5)]
            assert await jobs[0].result(timeout=20) == "slept"
            assert await jobs[1].result(timeout=20) > 0
            for job in jobs:
                info = await job.status()
                assert (info.attempt, info.errors) == (1, []), info.errors
            assert worker.connected
            assert worker.worker_id == connection
        assert "worker lost" not in srv.logs(), srv.logs()


async def test_worker_reconnects_after_server_restart() -> None:
    async with run_server() as first:
        port = int(first.url.rsplit(":", 1)[1])
        app = errands.App(first.url)

        @app.task
        async def ping(ctx: errands.Context) -> str:
            return "pong"

        async with run_worker(app) as worker:
            assert await (await ping.enqueue()).result(timeout=10) == "pong"
            await asyncio.to_thread(first.stop)
            await until(lambda: not worker.connected, what="worker to notice the server is gone")
            async with run_server(port=port):
                await until(lambda: worker.connected, what="worker to reconnect")
                assert await (await ping.enqueue()).result(timeout=10) == "pong"
        await app.close()


async def test_worker_with_bad_token_stops() -> None:
    async with run_server(token="s3cret") as srv, errands.App(srv.url, token="wrong") as app:
        with pytest.raises(errands.Unauthorized):
            async with run_worker(app):
                pass


async def test_many_jobs(app: errands.App, errands_server: ServerHandle) -> None:
    @app.task
    async def square(ctx: errands.Context, n: int) -> int:
        return n * n

    jobs = await app.enqueue_many([square.spec(n) for n in range(500)])
    async with run_worker(app, concurrency=20) as worker:
        results = [await j.result(timeout=30) for j in jobs]
        assert worker.running == 0
    assert results == [n * n for n in range(500)]
