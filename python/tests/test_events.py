"""Live events against a real server: job.events(), result() on the stream, app.events()."""

from __future__ import annotations

import asyncio
import time

import pytest

import errands
from errands.testing import run_server, run_worker

from .conftest import until


async def test_job_events_follow_live_progress(app: errands.App) -> None:
    go = asyncio.Event()

    @app.task
    async def compile_source(ctx: errands.Context) -> str:
        await go.wait()  # start reporting once the test follows the job
        for percent in (10, 30, 50):
            await ctx.progress(percent, f"step {percent}", data={"p": percent})
        return "done"

    async with run_worker(app):
        job = await compile_source.enqueue()
        seen: list[errands.JobEvent] = []
        async with job.events() as events:
            async for event in events:
                seen.append(event)
                if event.type == "progress":
                    assert job.progress == event.progress  # follows the events live
                go.set()  # subscribed and read: now let it run
        assert job.info is not None
        assert job.info.result == "done"  # the final snapshot is there when iteration ends

    first = seen[0]
    assert first.seq is None  # made up from the job as fetched on subscribing
    assert first.type == "state"
    assert first.state in (errands.JobState.QUEUED, errands.JobState.RUNNING)
    live = seen[1:]
    assert all(e.seq is not None and e.id == job.id for e in live)
    seqs = [e.seq for e in live]
    assert seqs == sorted(seqs)
    progress = [e.progress for e in live if e.type == "progress"]
    assert [(p.percent, p.message, p.data) for p in progress if p] == [
        (10, "step 10", {"p": 10}),
        (30, "step 30", {"p": 30}),
        (50, "step 50", {"p": 50}),
    ]
    assert live[-1].type == "state"
    assert live[-1].state is errands.JobState.COMPLETED
    assert live[-1].finished
    assert job.state is errands.JobState.COMPLETED
    assert job.progress == errands.Progress(50, "step 50", {"p": 50})


async def test_events_of_a_finished_job_end_at_once(app: errands.App) -> None:
    job = await app.enqueue("never.runs")
    await job.cancel()
    events = [e async for e in job.events()]
    assert [(e.type, e.state, e.seq) for e in events] == [
        ("state", errands.JobState.CANCELLED, None)
    ]
    with pytest.raises(errands.NotFound):
        async for _ in app.job("0193a5b2-7c1e-7d4a-9f1e-2b7d8c9e0a11").events():
            pass


async def test_result_waits_on_the_event_stream(
    app: errands.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()

    @app.task
    async def slow(ctx: errands.Context) -> str:
        await release.wait()
        return "ok"

    fetches = 0
    get_job = app.client.get_job

    async def counting_get_job(job_id: str) -> errands.JobInfo:
        nonlocal fetches
        fetches += 1
        return await get_job(job_id)

    monkeypatch.setattr(app.client, "get_job", counting_get_job)
    async with run_worker(app):
        job = await slow.enqueue()
        waiter = asyncio.ensure_future(job.result(timeout=30))
        await until(lambda: fetches == 1, what="result() to subscribe and read the job")
        # Not a synchronisation: a window in which polling would have re-fetched the job about
        # seven times (10 ms, then 1.5x longer each time). Waiting on events fetches nothing.
        await asyncio.sleep(0.3)
        assert fetches == 1
        release.set()
        released = time.monotonic()
        assert await waiter == "ok"
        latency = time.monotonic() - released
    assert fetches == 2  # one more, for the result, after the event that finished it
    assert latency < 1.0, latency  # typically a few milliseconds


async def test_app_events_filter_and_token() -> None:
    async with run_server(token="s3cret") as srv:
        async with errands.App(srv.url, token="s3cret") as app:
            async with app.events(queue="wanted") as events:
                await app.kind("a").options(queue="other").enqueue()
                job = await app.kind("b").options(queue="wanted").enqueue()
                event = await asyncio.wait_for(events.__anext__(), 10)
            assert (event.id, event.type, event.state) == (job.id, "state", errands.JobState.QUEUED)
            assert (event.queue, event.kind, event.attempt) == ("wanted", "b", 0)
            assert event.at is not None
            with pytest.raises(errands.Rejected):
                await app.events(ids=["not-a-uuid"]).open()
            assert await job.cancel()
            with pytest.raises(errands.JobCancelled):
                await job.result(timeout=10)
        async with errands.App(srv.url, token="wrong") as bad:
            with pytest.raises(errands.Unauthorized):
                async with bad.events():
                    pass
