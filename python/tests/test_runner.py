"""What the worker reports for each way an attempt can end (no server involved)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import errands
from errands.context import State
from errands.runner import Abort, Delivery, JobRun

Message = dict[str, Any]


class Harness:
    """Runs deliveries through JobRun and collects what would go to the server."""

    def __init__(self, app: errands.App, executor: ThreadPoolExecutor) -> None:
        self.app = app
        self.executor = executor
        self.sent: list[Message] = []
        self.done = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def _send(self, msg: Message) -> None:
        if threading.current_thread() is threading.main_thread():
            self.sent.append(msg)
        else:
            self.loop.call_soon_threadsafe(self.sent.append, msg)

    def start(
        self, kind: str, *args: Any, timeout: float | None = None, attempt: int = 1, **kw: Any
    ) -> JobRun:
        delivery = Delivery(
            id="job-1",
            queue="default",
            kind=kind,
            args={"args": list(args), "kwargs": kw},
            attempt=attempt,
            max_attempts=3,
            timeout=timeout,
            deadline=None,
        )
        task = self.app.tasks.get(kind)
        ctx = errands.Context(
            job_id=delivery.id,
            kind=kind,
            queue="default",
            attempt=attempt,
            max_attempts=3,
            timeout=timeout,
            deadline=None,
            state=State(),
            app=self.app,
            _send=self._send,
        )
        self.done.clear()
        return JobRun(
            delivery,
            task,
            ctx,
            executor=self.executor,
            report=self._send,
            done=lambda run: self.done.set(),
            known=lambda: list(self.app.tasks),
        )

    async def run(self, kind: str, *args: Any, **kw: Any) -> Message | None:
        self.sent.clear()
        self.start(kind, *args, **kw)
        await asyncio.wait_for(self.done.wait(), 5)
        await asyncio.sleep(0)  # let call_soon_threadsafe appends land
        reports = [m for m in self.sent if m["type"] != "progress"]
        assert len(reports) <= 1
        return reports[0] if reports else None


app = errands.App("http://example.invalid")


@app.task
async def add(ctx: errands.Context, a: int, b: int) -> int:
    return a + b


@app.task
def add_sync(ctx: errands.Context, a: int, b: int) -> dict[str, Any]:
    ctx.progress(50, "half")  # no await needed in a plain function
    return {"sum": a + b, "thread": threading.current_thread().name}


@app.task
async def boom(ctx: errands.Context) -> None:
    raise ValueError("bad input")


@app.task
async def retry_later(ctx: errands.Context) -> None:
    raise errands.Retry("rate limited", delay=30)


@app.task
async def give_up(ctx: errands.Context) -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        raise errands.Permanent("record is gone") from exc


@app.task
async def hang(ctx: errands.Context) -> None:
    await asyncio.Event().wait()


@app.task
async def stubborn(ctx: errands.Context) -> str:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        return "swallowed the cancellation"
    return "unreachable"


@app.task
async def bad_result(ctx: errands.Context) -> object:
    return {1, 2}


@app.task
async def progress_steps(ctx: errands.Context) -> None:
    await ctx.progress(10, "start", data={"step": 1})
    await ctx.progress(100)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    with ThreadPoolExecutor(2, thread_name_prefix="errands-task") as pool:
        yield Harness(app, pool)


async def test_complete(harness: Harness) -> None:
    assert await harness.run("add", 2, 3) == {"type": "complete", "id": "job-1", "result": 5}


async def test_sync_task_runs_in_thread_pool(harness: Harness) -> None:
    report = await harness.run("add_sync", 2, 3)
    assert report is not None
    assert report["result"]["sum"] == 5
    assert report["result"]["thread"].startswith("errands-task")
    assert {"type": "progress", "id": "job-1", "percent": 50, "message": "half"} in harness.sent


async def test_exception_fails_with_type_message_traceback(harness: Harness) -> None:
    report = await harness.run("boom")
    assert report is not None
    assert report["type"] == "fail"
    assert report["error"]["type"] == "ValueError"
    assert report["error"]["message"] == "bad input"
    assert 'raise ValueError("bad input")' in report["error"]["traceback"]
    assert "retry" not in report  # default: retry per policy


async def test_retry_asks_for_delay(harness: Harness) -> None:
    report = await harness.run("retry_later")
    assert report == {
        "type": "fail",
        "id": "job-1",
        "error": {"type": "Retry", "message": "rate limited"},
        "retry_after": 30,
    }


async def test_permanent_refuses_retry_and_names_cause(harness: Harness) -> None:
    report = await harness.run("give_up")
    assert report is not None
    assert report["retry"] is False
    assert report["error"]["type"] == "KeyError"
    assert report["error"]["message"] == "record is gone"


async def test_unknown_kind(harness: Harness) -> None:
    report = await harness.run("nope")
    assert report is not None
    assert report["error"]["type"] == "UnknownKind"
    assert "'nope'" in report["error"]["message"]
    assert "add" in report["error"]["message"]  # lists what it does know


async def test_local_timeout_reports_timeout(harness: Harness) -> None:
    report = await harness.run("hang", timeout=0.05)
    assert report is not None
    assert report["error"]["type"] == "Timeout"
    assert "0.05" in report["error"]["message"]


async def test_timeout_also_when_task_swallows_cancel(harness: Harness) -> None:
    report = await harness.run("stubborn", timeout=0.05)
    assert report is not None
    assert report["error"]["type"] == "Timeout"


@pytest.mark.parametrize("reason", [Abort.SERVER, Abort.SHUTDOWN])
async def test_abort_reports_nothing(harness: Harness, reason: Abort) -> None:
    harness.sent.clear()
    run = harness.start("hang")
    await asyncio.sleep(0)  # let it start
    run.abort(reason)
    await asyncio.wait_for(harness.done.wait(), 5)
    assert harness.sent == []


async def test_abort_before_start_still_finishes(harness: Harness) -> None:
    harness.sent.clear()
    run = harness.start("hang")
    run.abort(Abort.SERVER)  # cancelled before its first step
    await asyncio.wait_for(harness.done.wait(), 5)
    assert harness.sent == []


async def test_unserialisable_result_fails_without_retry(harness: Harness) -> None:
    report = await harness.run("bad_result")
    assert report is not None
    assert report["error"]["type"] == "SerializationError"
    assert report["retry"] is False


async def test_progress_messages(harness: Harness) -> None:
    await harness.run("progress_steps")
    progress = [m for m in harness.sent if m["type"] == "progress"]
    assert progress == [
        {"type": "progress", "id": "job-1", "percent": 10, "message": "start", "data": {"step": 1}},
        {"type": "progress", "id": "job-1", "percent": 100},
    ]


def test_progress_range_is_checked() -> None:
    ctx = errands.Context("j", "k", "q", 1, 1, None, None, State(), app, lambda m: None)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        ctx.progress(150)


def test_state_names_missing_attribute() -> None:
    state = State()
    state.db = "pool"
    assert state.db == "pool"
    with pytest.raises(AttributeError, match="on_startup"):
        _ = state.cache
