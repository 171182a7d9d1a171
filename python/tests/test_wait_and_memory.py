"""Waiting for results without a tight loop; and no per-job memory kept by the worker."""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import errands
from errands import job as job_module
from errands.models import JobInfo


class FakeStream:
    """A scripted event subscription: fails to open, or yields events then ends with an error."""

    def __init__(self, events: list[dict[str, Any]] | Exception, end: Exception | None) -> None:
        self.script = events
        self.end = end
        self.closed = False

    async def open(self) -> None:
        if isinstance(self.script, Exception):
            raise self.script

    async def close(self) -> None:
        self.closed = True

    def __aiter__(self) -> AsyncIterator[errands.JobEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[errands.JobEvent]:
        assert not isinstance(self.script, Exception)
        for raw in self.script:
            yield errands.JobEvent.from_json({"id": "j1", "queue": "default", "kind": "k", **raw})
        if self.end is not None:
            raise self.end
        await asyncio.Event().wait()  # a live stream: more may come


class FakeClient:
    """Answers get_job from a script of snapshots, and events() from a script of streams.

    Without streams, opening the event stream fails (as against a server without one).
    """

    def __init__(
        self,
        states: list[str],
        *,
        streams: list[FakeStream] | None = None,
        progress: list[float | None] | None = None,
        **final: Any,
    ) -> None:
        self.states = states
        self.progress = progress
        self.final = final
        self.calls = 0
        self.streams = streams if streams is not None else []
        self.opened: list[FakeStream] = []

    async def get_job(self, job_id: str) -> JobInfo:
        i = min(self.calls, len(self.states) - 1)
        self.calls += 1
        raw: dict[str, Any] = {
            "id": job_id,
            "kind": "k",
            "queue": "default",
            "state": self.states[i],
        }
        if self.progress is not None and self.progress[i] is not None:
            raw["progress"] = {"percent": self.progress[i]}
        if self.states[i] in ("completed", "dead", "cancelled"):
            raw.update(self.final)
        return JobInfo.from_json(raw)

    def events(self, *, ids: list[str]) -> FakeStream:
        assert ids == ["j1"]
        stream = (
            self.streams.pop(0)
            if self.streams
            else FakeStream(errands.ConnectionFailed("no"), None)
        )
        self.opened.append(stream)
        return stream


def job_of(client: FakeClient) -> errands.Job[Any]:
    return errands.Job(client, "j1")  # type: ignore[arg-type]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []

    async def fake_sleep(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr(job_module, "_sleep", fake_sleep)
    return recorded


async def test_result_polls_with_growing_backoff_without_event_stream(
    sleeps: list[float],
) -> None:
    client = FakeClient(["running"] * 30 + ["completed"], result={"ok": True})
    assert await job_of(client).result() == {"ok": True}
    assert len(client.opened) == 1  # tried the event stream first
    assert sleeps[0] == pytest.approx(0.01)
    assert all(b >= a for a, b in itertools.pairwise(sleeps))  # never shrinks
    assert max(sleeps) == pytest.approx(0.5)  # capped
    assert sleeps[-1] == pytest.approx(0.5)


async def test_result_waits_on_events_without_polling(sleeps: list[float]) -> None:
    events = [
        {"type": "state", "state": "running", "attempt": 1},  # also in the snapshot: skipped
        {"type": "progress", "progress": {"percent": 50}},
        {"type": "state", "state": "completed", "attempt": 1},
    ]
    client = FakeClient(["running", "completed"], streams=[FakeStream(events, None)], result=7)
    job = job_of(client)
    assert await job.result(timeout=5) == 7
    assert client.calls == 2  # once after subscribing, once for the result
    assert sleeps == []
    assert client.opened[0].closed


async def test_events_resubscribe_after_a_drop(sleeps: list[float]) -> None:
    first = FakeStream(
        [{"type": "progress", "progress": {"percent": 10}}], errands.ConnectionFailed("dropped")
    )
    second = FakeStream([{"type": "state", "state": "completed", "attempt": 1}], None)
    client = FakeClient(
        ["running", "running", "completed"],
        streams=[first, second],
        progress=[None, 30, 30],
        attempt=1,
        result="done",
    )
    job = job_of(client)
    seen = []
    async for event in job.events():
        seen.append((event.type, event.state, event.progress and event.progress.percent, event.seq))
    assert seen == [
        ("state", errands.JobState.RUNNING, None, None),  # made up from the first snapshot
        ("progress", None, 10, None),
        ("progress", None, 30, None),  # made up from the snapshot read after re-subscribing
        ("state", errands.JobState.COMPLETED, None, None),
    ]
    assert job.info is not None
    assert job.info.result == "done"
    assert job.state is errands.JobState.COMPLETED
    assert job.progress == errands.Progress(30)
    assert first.closed
    assert second.closed
    assert sleeps == []


async def test_events_without_stream_raise() -> None:
    with pytest.raises(errands.ConnectionFailed):
        async for _ in job_of(FakeClient(["running"])).events():
            pass


async def test_result_timeout(sleeps: list[float]) -> None:
    client = FakeClient(["running"])
    with pytest.raises(errands.ResultTimeout, match="is running"):
        await job_of(client).result(timeout=0)
    assert client.calls == 1
    assert isinstance(errands.ResultTimeout("x"), TimeoutError)


async def test_result_timeout_while_following() -> None:
    client = FakeClient(["running"], streams=[FakeStream([], None)])
    with pytest.raises(errands.ResultTimeout, match="still running"):
        await job_of(client).result(timeout=0.05)
    assert client.opened[0].closed


async def test_result_dead_and_cancelled(sleeps: list[float]) -> None:
    error = {"attempt": 2, "type": "ValueError", "message": "bad", "traceback": "tb"}
    dead = FakeClient(["dead"], errors=[error], attempt=2)
    with pytest.raises(errands.JobFailed, match="ValueError: bad") as info:
        await job_of(dead).result()
    assert info.value.error is not None
    assert info.value.error.traceback == "tb"
    with pytest.raises(errands.JobCancelled):
        await job_of(FakeClient(["cancelled"])).result()


async def test_worker_keeps_nothing_per_job_across_100k_jobs() -> None:
    """Drive the worker's dispatch with 100,000 deliveries and check memory stays flat."""
    app = errands.App("http://example.invalid")

    @app.task
    async def noop(ctx: errands.Context, i: int) -> int:
        return i

    worker = errands.Worker(app, concurrency=1000)
    # Wire the worker to this loop without a socket: what it would send piles up in _outbox.
    worker._loop = asyncio.get_running_loop()
    worker._loop_thread = threading.get_ident()

    async def batch(start: int, n: int) -> None:
        for i in range(start, start + n):
            worker._on_job(
                {"type": "job", "id": f"job-{i}", "queue": "default", "kind": "noop",
                 "args": {"args": [i], "kwargs": {}}, "attempt": 1, "max_attempts": 5,
                 "timeout": None, "deadline": None}
            )  # fmt: skip
        await asyncio.wait_for(worker._idle.wait(), 30)
        assert len(worker._outbox) == n
        worker._outbox.clear()

    with ThreadPoolExecutor(1) as pool:
        worker._executor = pool
        await batch(0, 10_000)  # warm up: caches, free lists
        gc.collect()
        # Allocated blocks rather than tracemalloc: as telling for a per-job leak (any object
        # kept per job is at least one block) and about ten times faster.
        before = sys.getallocatedblocks()
        for start in range(10_000, 100_000, 1000):
            await batch(start, 1000)
        gc.collect()
        after = sys.getallocatedblocks()
    assert worker.running == 0
    # Keeping anything per job would leave >= 90,000 blocks behind.
    assert after - before < 5_000, f"{after - before} more blocks after 90,000 jobs"
