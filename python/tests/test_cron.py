"""Cron schedules: declared with ``@app.cron``, upserted by the worker, managed from the app."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import errands
from errands.testing import ServerHandle, _free_port, run_server, run_worker

from .conftest import until, wait_state

BERLIN_MONDAY_2AM = "0 2 * * MON"


def _assert_monday_2am_berlin(times: list[datetime]) -> None:
    # 02:00 in Berlin is 01:00Z in winter (CET) and 00:00Z in summer (CEST), still on Monday.
    # Read in UTC instead it would be 02:00Z: this is what says the zone reached the server.
    assert len(times) == 5
    for at in times:
        assert at.tzinfo is not None
        utc = at.astimezone(timezone.utc)
        assert (utc.weekday(), utc.hour, utc.minute, utc.second) in {(0, 0, 0, 0), (0, 1, 0, 0)}
    assert times == sorted(times)
    assert times[0] > datetime.now(timezone.utc)


# -- declaring (no server) ----------------------------------------------------------------------


def test_cron_declarations() -> None:
    app = errands.App("http://127.0.0.1:9")

    @app.cron(BERLIN_MONDAY_2AM, tz="Europe/Berlin", kwargs={"full": True}, catch_up="run-once")
    @app.task(queue="reports", max_attempts=3, timeout=600)
    async def weekly_report(ctx: errands.Context, full: bool = False) -> str:
        return "done"

    @app.cron("every 30s", name="heartbeat-fast", queue="beats")
    @app.cron("every 5m", args=[1, "x"])
    def heartbeat(ctx: errands.Context, n: int = 0, s: str = "") -> None:
        pass

    # Both decorators give back the task; a bare function becomes one with default options.
    assert isinstance(weekly_report, errands.Task)
    assert isinstance(heartbeat, errands.Task)
    assert set(app.tasks) == {"weekly_report", "heartbeat"}
    assert list(app.crons) == ["weekly_report", "heartbeat", "heartbeat-fast"]

    weekly = app.crons["weekly_report"]
    assert weekly.to_body() == {
        "schedule": BERLIN_MONDAY_2AM,
        "tz": "Europe/Berlin",
        "job": {
            "kind": "weekly_report",
            "args": {"args": [], "kwargs": {"full": True}},
            "queue": "reports",
            "max_attempts": 3,
            "timeout": 600.0,
        },
        "catch_up": "run_once",
    }
    assert app.crons["heartbeat"].to_body() == {
        "schedule": "every 5m",
        "tz": "UTC",
        "job": {"kind": "heartbeat", "args": {"args": [1, "x"], "kwargs": {}}},
        "catch_up": "skip",
    }
    # No arguments: no args at all; the queue override applies to this schedule's jobs only.
    assert app.crons["heartbeat-fast"].to_body()["job"] == {"kind": "heartbeat", "queue": "beats"}
    assert heartbeat._template.queue is None
    # A worker of this app must serve the queue the schedule puts the task's jobs on.
    assert app.queues() == ["reports", "default", "beats"]

    # A schedule for a kind this app does not run (a producer's declaration) adds no queue.
    app.declare_cron("elsewhere", "@daily", app.kind("other").options(queue="theirs"))
    assert app.crons["elsewhere"].job.queue == "theirs"
    assert app.queues() == ["reports", "default", "beats"]


def test_cron_declaration_mistakes() -> None:
    app = errands.App("http://127.0.0.1:9")

    @app.cron("@hourly")
    @app.task
    async def tick(ctx: errands.Context) -> None:
        pass

    with pytest.raises(ValueError, match="already declared"):
        app.cron("@daily")(tick)
    app.cron("@daily", name="tick-daily")(tick)  # another name is fine

    with pytest.raises(TypeError, match=r"put @app\.cron\(\.\.\.\) above @app\.task"):

        @app.task
        @app.cron("@daily")
        async def upside_down(ctx: errands.Context) -> None:
            pass

    with pytest.raises(errands.SerializationError):
        app.declare_cron("bad-args", "@daily", tick, args=[{1, 2}])
    with pytest.raises(TypeError, match="not a string"):
        app.declare_cron("str-args", "@daily", tick, args="abc")
    with pytest.raises(ValueError, match="sometimes"):
        app.declare_cron("bad-catch-up", "@daily", tick, catch_up="sometimes")
    assert "bad-args" not in app.crons


# -- the worker declares them -------------------------------------------------------------------


async def test_worker_declares_schedules_at_start(app: errands.App) -> None:
    @app.cron(BERLIN_MONDAY_2AM, tz="Europe/Berlin", name="weekly", kwargs={"full": True})
    @app.task(queue="reports", max_attempts=3)
    async def report(ctx: errands.Context, full: bool = False) -> None:
        pass

    @app.cron("*/10 * * * * *", args=["six fields"])  # seconds first
    @app.cron("every 1h30m", name="interval", queue="slow")
    @app.task
    async def ping(ctx: errands.Context, note: str = "") -> None:
        pass

    assert await app.list_cron() == []
    async with run_worker(app) as worker:
        assert set(worker.queues) == {"reports", "default", "slow"}
        schedules = {s.name: s for s in await app.list_cron()}

    assert sorted(schedules) == ["interval", "ping", "weekly"]
    weekly = schedules["weekly"]
    assert (weekly.schedule, weekly.tz) == (BERLIN_MONDAY_2AM, "Europe/Berlin")
    assert not weekly.paused
    assert weekly.catch_up is errands.CatchUp.SKIP
    assert weekly.job.kind == "report"
    assert weekly.job.queue == "reports"
    assert weekly.job.max_attempts == 3
    assert weekly.job.args == {"args": [], "kwargs": {"full": True}}
    assert weekly.last_fire is None
    _assert_monday_2am_berlin(weekly.next_fire_times)
    assert weekly.next_fire == weekly.next_fire_times[0]

    six = schedules["ping"]
    assert (six.schedule, six.tz, six.job.kind) == ("*/10 * * * * *", "UTC", "ping")
    assert six.job.args == {"args": ["six fields"], "kwargs": {}}
    assert six.job.queue is None  # the server's default queue
    assert [t.second % 10 for t in six.next_fire_times] == [0] * 5

    interval = schedules["interval"]
    assert (interval.job.kind, interval.job.queue, interval.job.args) == ("ping", "slow", None)
    times = interval.next_fire_times
    assert {(times[i + 1] - times[i]).total_seconds() for i in range(4)} == {5400.0}
    assert await app.get_cron("interval") == interval


async def test_timezone_is_passed_through(app: errands.App) -> None:
    @app.cron(BERLIN_MONDAY_2AM, tz="Europe/Berlin", name="berlin")
    @app.cron(BERLIN_MONDAY_2AM, name="utc")
    @app.task
    async def report(ctx: errands.Context) -> None:
        pass

    async with run_worker(app):
        berlin = await app.get_cron("berlin")
        utc = await app.get_cron("utc")
    assert berlin.tz == "Europe/Berlin"
    _assert_monday_2am_berlin(berlin.next_fire_times)
    assert utc.tz == "UTC"
    assert {(t.weekday(), t.hour) for t in utc.next_fire_times} == {(0, 2)}


async def test_redeclaring_keeps_paused_state(errands_server: ServerHandle) -> None:
    async def report(ctx: errands.Context, version: int) -> None:
        pass

    async with errands.App(errands_server.url) as first:
        first.cron("@daily", name="nightly", args=[1])(first.task(report))
        async with run_worker(first):
            pass
        paused = await first.pause_cron("nightly")
        assert paused.paused
        assert paused.next_fire_times == []

        # A worker starting again re-declares the schedule: the spec is replaced, the
        # operator's pause stays.
        async with run_worker(first):
            pass
        assert (await first.get_cron("nightly")).paused

    async with errands.App(errands_server.url) as second:
        second.cron("@daily", name="nightly", args=[2])(second.task(report))
        async with run_worker(second):
            pass
        again = await second.get_cron("nightly")
        assert again.paused
        assert again.next_fire_times == []
        assert again.job.args == {"args": [2], "kwargs": {}}

        resumed = await second.resume_cron("nightly")
        assert not resumed.paused
        assert len(resumed.next_fire_times) == 5


@pytest.mark.parametrize(
    ("schedule", "tz", "field", "reason"),
    [
        ("0 2 * *", "UTC", "schedule", "5 fields"),
        ("every 0s", "UTC", "schedule", "between 1 second and 366 days"),
        ("0 0 30 2 *", "UTC", "schedule", "never fires"),
        ("0 2 * * *", "Mars/Olympus_Mons", "tz", "not an IANA time zone"),
    ],
)
async def test_bad_schedule_fails_worker_start(
    app: errands.App, schedule: str, tz: str, field: str, reason: str
) -> None:
    started = asyncio.Event()

    @app.on_startup
    def startup(state: errands.State) -> None:
        started.set()

    @app.cron("@daily", name="fine")
    @app.cron(schedule, tz=tz, name="broken")
    @app.task
    async def report(ctx: errands.Context) -> None:
        pass

    with pytest.raises(errands.Rejected) as info:
        async with run_worker(app):
            pytest.fail("the worker started despite a bad schedule")
    assert started.is_set()  # hooks ran; the schedules come after them, before the socket
    assert info.value.status == 400
    assert info.value.code == "invalid_field"
    assert info.value.field == field
    assert info.value.message.startswith("cron schedule 'broken': ")
    assert reason in info.value.message
    assert isinstance(info.value.__cause__, errands.Rejected)
    assert info.value.message.endswith(info.value.__cause__.message)

    with pytest.raises(errands.NotFound):
        await app.get_cron("broken")
    # Schedules are declared in order: the one after the bad one was never sent.
    assert await app.list_cron() == []
    workers = await app.client.transport.request("GET", "/v1/workers")
    assert workers["workers"] == []


async def test_cli_worker_with_bad_schedule_exits_with_the_reason(
    errands_server: ServerHandle, tmp_path: Path
) -> None:
    (tmp_path / "badcron.py").write_text(
        textwrap.dedent(
            """
            import errands

            app = errands.App()

            @app.cron("0 2 * *", name="nightly")
            @app.task
            async def report(ctx: errands.Context) -> None:
                pass
            """
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "errands",
        "worker",
        "badcron:app",
        cwd=tmp_path,
        env={**os.environ, **errands_server.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    log = output.decode(errors="replace")
    assert proc.returncode == 1, log
    assert "cron schedules nightly" in log
    assert "cannot start the worker: 400 invalid_field: cron schedule 'nightly': " in log
    assert "5 fields" in log
    assert "(field 'schedule')" in log
    assert "Traceback" not in log


async def test_worker_retries_declaring_until_the_server_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="errands.worker")
    port = _free_port()
    async with errands.App(f"http://127.0.0.1:{port}") as app:

        @app.cron("every 1h")
        @app.task
        async def hourly(ctx: errands.Context) -> None:
            pass

        worker = errands.Worker(app, grace=5)
        runner = asyncio.get_running_loop().create_task(worker.run())
        await until(
            lambda: "cannot declare cron schedule 'hourly'" in caplog.text,
            what="the worker to fail declaring",
        )
        async with run_server(port=port):
            await asyncio.wait_for(worker.wait_connected(), 15)
            assert [s.name for s in await app.list_cron()] == ["hourly"]
            worker.stop()
            await runner

        # Stopped while still retrying (no server): it returns without connecting.
        worker = errands.Worker(app, grace=5)
        runner = asyncio.get_running_loop().create_task(worker.run())
        caplog.clear()
        await until(lambda: "cannot declare" in caplog.text, what="the worker to retry")
        worker.stop()
        await asyncio.wait_for(runner, 5)
        assert not worker.connected


# -- running ------------------------------------------------------------------------------------


async def test_trigger_runs_the_job_to_completion(app: errands.App) -> None:
    ran: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    @app.cron("@yearly", name="yearly-report", kwargs={"year": 2026})
    @app.task(queue="reports")
    async def report(ctx: errands.Context, year: int) -> dict[str, Any]:
        await ran.put((ctx.queue, {"year": year}))
        return {"year": year, "job": ctx.job_id}

    async with run_worker(app):
        paused = await app.pause_cron("yearly-report")  # trigger works on a paused one too
        assert paused.paused
        job = await app.trigger_cron("yearly-report")
        assert job.created
        assert await job.result(timeout=10) == {"year": 2026, "job": job.id}
    assert ran.get_nowait() == ("reports", {"year": 2026})
    info = await job.status()
    assert info.kind == "report"
    assert info.tags == ["cron:yearly-report"]
    assert info.unique_key is not None
    assert info.unique_key.startswith("cron:yearly-report:manual:")
    assert (await app.get_cron("yearly-report")).last_fire is None  # a manual run is no fire


async def test_schedule_fires_on_its_own(app: errands.App) -> None:
    fired: asyncio.Queue[str] = asyncio.Queue()

    @app.cron("every 1s", args=["tick"])
    @app.task
    async def tick(ctx: errands.Context, what: str) -> str:
        await fired.put(ctx.job_id)
        return what

    async with run_worker(app):
        job_id = await asyncio.wait_for(fired.get(), 10)
        info = await wait_state(app, job_id, "completed")
    assert info.result == "tick"
    assert info.unique_key is not None
    assert info.unique_key.startswith("cron:tick:")
    assert "manual" not in info.unique_key
    assert (await app.get_cron("tick")).last_fire is not None


# -- managing from a producer -------------------------------------------------------------------


async def test_manage_schedules(app: errands.App) -> None:
    @app.task(queue="reports", max_attempts=2)
    async def report(ctx: errands.Context, full: bool = False) -> None:
        pass

    created = await app.set_cron(
        "nightly",
        "30 2 * * *",
        report.options(priority=5),
        kwargs={"full": True},
        tz="Europe/Berlin",
        catch_up=errands.CatchUp.RUN_ONCE,
    )
    assert created.name == "nightly"
    assert created.catch_up is errands.CatchUp.RUN_ONCE
    assert (created.job.queue, created.job.max_attempts, created.job.priority) == ("reports", 2, 5)
    assert len(created.next_fire_times) == 5

    # By kind name; created paused.
    other = await app.set_cron("by-name", "every 5m", "cleanup", paused=True)
    assert other.paused
    assert other.job == errands.JobSpec("cleanup")
    assert [s.name for s in await app.list_cron()] == ["by-name", "nightly"]

    # Replacing with the same timing keeps the next fire time.
    replaced = await app.set_cron("nightly", "30 2 * * *", report, tz="Europe/Berlin")
    assert replaced.next_fire_times == created.next_fire_times
    assert replaced.catch_up is errands.CatchUp.SKIP
    assert replaced.job.args is None

    assert not (await app.resume_cron("by-name")).paused
    await app.delete_cron("by-name")
    with pytest.raises(errands.NotFound):
        await app.get_cron("by-name")
    for call in (app.delete_cron, app.pause_cron, app.resume_cron, app.trigger_cron):
        with pytest.raises(errands.NotFound, match="by-name"):
            await call("by-name")

    with pytest.raises(errands.Rejected) as info:
        await app.set_cron("nightly", "30 2 * * *", report, tz="Nowhere/Special")
    assert info.value.field == "tz"
    with pytest.raises(errands.Rejected) as info:
        await app.set_cron("nightly", "@daily", report.options(delay=5))
    assert info.value.field == "job.delay"
    with pytest.raises(errands.Rejected) as info:
        await app.set_cron("a/b", "@daily", report)
    assert info.value.field == "name"
    assert [s.name for s in await app.list_cron()] == ["nightly"]
