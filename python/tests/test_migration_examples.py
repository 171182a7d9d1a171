"""The migration guides (docs/migrating-from-arq.md, docs/migrating-from-celery.md) stay true.

Every errands-side Python block of a guide must be code of its example app
(examples/from_arq, examples/from_celery), and these tests run that code against a real server:
what a guide says a snippet does is asserted here. The arq and Celery blocks (fenced as
``python arq`` / ``python celery``) cannot run without Redis or a broker; they must still parse.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import errands
from errands.testing import ServerHandle, find_binary, run_worker

from .conftest import eventually, wait_state

ROOT = Path(__file__).resolve().parents[2]
ARQ_GUIDE = ROOT / "docs" / "migrating-from-arq.md"
CELERY_GUIDE = ROOT / "docs" / "migrating-from-celery.md"
ARQ_EXAMPLE = ROOT / "examples" / "from_arq"
CELERY_EXAMPLE = ROOT / "examples" / "from_celery"

# The commands the guides give for running a worker and checking on it; the tests run these.
ARQ_WORKER_COMMAND = "errands-worker crawler.tasks:app --concurrency 10"
ARQ_CHECK_COMMAND = "errands check --queue default"
CELERY_WORKER_COMMAND = "errands-worker mailer.tasks:app --queues emails,default --concurrency 8"
CELERY_CHECK_COMMAND = "errands check --queue emails"

# A fenced block, possibly indented (inside a list item): its info string and its code.
_FENCE = re.compile(r"^([ \t]*)```([^\n]*)\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a guide."""

    info: str  # the fence's info string: "python", "python arq", "sh", ...
    code: str
    line: int  # where it starts in the guide, for error messages

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""


def code_blocks(guide: Path) -> list[Block]:
    text = guide.read_text()
    return [
        Block(m.group(2).strip(), m.group(3), text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
    ]


def _normalised(lines: list[str]) -> str:
    return textwrap.dedent("\n".join(line.rstrip() for line in lines)).strip("\n")


def found_in(code: str, sources: list[Path]) -> bool:
    """True when ``code``'s lines are consecutive lines of one source file (indentation aside)."""
    wanted = _normalised(code.splitlines())
    size = len(wanted.splitlines())
    for source in sources:
        lines = source.read_text().splitlines()
        for start in range(len(lines) - size + 1):
            if _normalised(lines[start : start + size]) == wanted:
                return True
    return False


def compiles(code: str) -> bool:
    """True when ``code`` parses as Python: an excerpt may be indented, or ``await`` at the top."""
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(textwrap.dedent(code), "<guide>", "exec", flags=flags)
    return isinstance(tree, ast.Module)


@pytest.mark.parametrize(
    ("guide", "example", "before"),
    [(ARQ_GUIDE, ARQ_EXAMPLE, "arq"), (CELERY_GUIDE, CELERY_EXAMPLE, "celery")],
    ids=["arq", "celery"],
)
def test_guide_code_is_the_examples_code(guide: Path, example: Path, before: str) -> None:
    sources = sorted(example.rglob("*.py"))
    blocks = [b for b in code_blocks(guide) if b.language == "python"]
    ours = [b for b in blocks if b.info == "python"]
    theirs = [b for b in blocks if b.info == f"python {before}"]
    assert ours, f"{guide.name}: no errands code found"
    assert theirs, f"{guide.name}: no {before} code found"
    assert len(ours) + len(theirs) == len(blocks), f"{guide.name}: unknown python fence info"
    missing = [b.line for b in ours if not found_in(b.code, sources)]
    assert not missing, f"{guide.name}: blocks at lines {missing} are not in {example}"
    for block in blocks:
        assert compiles(block.code), block.line


@pytest.mark.parametrize(
    ("guide", "commands"),
    [
        (ARQ_GUIDE, [ARQ_WORKER_COMMAND, ARQ_CHECK_COMMAND]),
        (CELERY_GUIDE, [CELERY_WORKER_COMMAND, CELERY_CHECK_COMMAND]),
    ],
    ids=["arq", "celery"],
)
def test_guide_gives_the_tested_commands(guide: Path, commands: list[str]) -> None:
    text = guide.read_text()
    for command in commands:
        assert command in text


@pytest.fixture(scope="module", autouse=True)
def _examples_importable() -> Iterator[None]:
    """Make the example apps importable as ``crawler`` and ``mailer``, as their READMEs run them."""
    paths = [str(ARQ_EXAMPLE), str(CELERY_EXAMPLE)]
    sys.path[:0] = paths
    yield
    for path in paths:
        sys.path.remove(path)


def _seconds_between(start: datetime | None, end: datetime | None) -> float:
    """Seconds from ``start`` to ``end``: both the server's times, so a slow test cannot skew it."""
    assert start is not None
    assert end is not None
    return (end - start).total_seconds()


def _deferred_by(info: errands.JobInfo) -> float:
    """How long after its creation the job is due."""
    return _seconds_between(info.created_at, info.run_at)


def _retried_after(info: errands.JobInfo) -> float:
    """How long after its last failure the job is due again."""
    return _seconds_between(info.errors[-1].at, info.run_at)


# -- arq ----------------------------------------------------------------------------------------


async def test_arq_example_test_passes(errands_server: ServerHandle) -> None:
    from test_crawler import test_download_content

    await test_download_content(errands_server)


async def test_arq_startup_and_shutdown_hooks_hold_the_session(
    errands_server: ServerHandle,
) -> None:
    from crawler.tasks import app, download_content

    async with run_worker(app) as worker:
        session = worker.state.session
        assert not session.closed
        job = await download_content.enqueue(errands_server.url + "/readyz")
        assert await job.result(timeout=10) == len('{"status":"ready"}')
    assert session.closed  # on_shutdown ran when the worker stopped
    await app.close()


async def test_arq_retry_defers_by_attempt_times_five(errands_server: ServerHandle) -> None:
    from crawler.tasks import app, download_content

    async with run_worker(app):
        job = await download_content.enqueue(errands_server.url + "/no-such-page")  # a 404
        info = await wait_state(app, job.id, "scheduled")
    assert info.attempt == 1
    assert [e.type for e in info.errors] == ["Retry"]
    assert _retried_after(info) == pytest.approx(5, abs=0.1)  # attempt 1 x 5 s
    assert info.max_attempts == 5
    assert info.raw["retention"] == 3600
    assert info.timeout == 300
    await app.close()


async def test_arq_producers_enqueue_defer_and_dedupe(errands_server: ServerHandle) -> None:
    from crawler import producer
    from crawler.tasks import app

    jobs = await producer.main()
    infos = [await job.status() for job in jobs]
    assert [i.state for i in infos] == ["queued"] * 3
    assert [i.args["args"] for i in infos] == [
        ["https://facebook.com"],
        ["https://microsoft.com"],
        ["https://github.com"],
    ]
    by_name = await (await producer.enqueue_by_name("https://example.com")).status()
    assert (by_name.kind, by_name.args["args"]) == ("download_content", ["https://example.com"])

    ten_s, one_min, year_2032 = [await j.status() for j in await producer.deferred("u")]
    assert {ten_s.state, one_min.state, year_2032.state} == {"scheduled"}
    assert _deferred_by(ten_s) == pytest.approx(10, abs=0.01)
    assert _deferred_by(one_min) == pytest.approx(60, abs=0.01)
    assert year_2032.run_at == datetime(2032, 1, 28, tzinfo=timezone.utc)

    first = await producer.once("https://example.org")
    again = await producer.once("https://example.org")
    assert first.created
    assert not again.created
    assert again.id == first.id
    await app.close()


async def test_arq_reading_results(errands_server: ServerHandle) -> None:
    from crawler import producer
    from crawler.tasks import app, download_content

    ok = await download_content.enqueue(errands_server.url + "/healthz")
    doomed = await download_content.options(max_attempts=1).enqueue(errands_server.url + "/nope")
    async with run_worker(app):
        assert await producer.show(ok) == len('{"status":"ok"}')
        with pytest.raises(errands.JobFailed) as failed:
            await producer.show(doomed)
    assert failed.value.error is not None
    assert failed.value.error.type == "Retry"  # Retry on the last attempt: dead
    await app.close()


async def test_arq_cron_is_declared_by_the_worker(errands_server: ServerHandle) -> None:
    from crawler.tasks import app

    async with run_worker(app):
        schedule = await app.get_cron("run_regularly")
        assert (schedule.schedule, schedule.tz) == ("12 9,12,18 * * *", "Europe/London")
        london = [t.astimezone(ZoneInfo("Europe/London")) for t in schedule.next_fire_times]
        assert len(london) == 5
        assert {(t.hour, t.minute) for t in london} <= {(9, 12), (12, 12), (18, 12)}
        job = await app.trigger_cron("run_regularly")
        assert await job.result(timeout=10) is None
    await app.close()


# -- celery -------------------------------------------------------------------------------------


async def test_celery_example_test_passes(errands_server: ServerHandle) -> None:
    from test_mailer import test_send_email

    await test_send_email(errands_server)


async def test_celery_autoretry_on_connection_error(errands_server: ServerHandle) -> None:
    from mailer import producer
    from mailer.tasks import app

    async with run_worker(app) as worker:
        worker.state.smtp.fail_next.append(ConnectionError("smtp down"))
        job = await producer.welcome("a@example.com")
        assert await producer.wait_for(job.id) == "<1@mailer.example>"
    info = await job.status()
    assert info.attempt == 2
    assert [e.type for e in info.errors] == ["ConnectionError"]
    assert (info.max_attempts, info.timeout, info.queue) == (6, 120, "emails")
    assert info.raw["backoff"] == {"type": "exponential", "base": 1, "cap": 600, "jitter": True}
    assert worker.state.smtp.closed  # on_shutdown ran
    await app.close()


async def test_celery_other_errors_are_permanent(errands_server: ServerHandle) -> None:
    from mailer.tasks import app, send_email

    async with run_worker(app):
        job = await send_email.enqueue("not-an-address", "Welcome!")
        with pytest.raises(errands.JobFailed) as failed:
            await job.result(timeout=10)
    assert failed.value.job.attempt == 1  # no retries
    assert failed.value.error is not None
    assert failed.value.error.type == "InvalidAddress"  # the cause's type, from `from exc`
    await app.close()


async def test_celery_retry_with_countdown(errands_server: ServerHandle) -> None:
    from mailer.services import RateLimited
    from mailer.tasks import app, send_email

    async with run_worker(app) as worker:
        worker.state.smtp.fail_next.append(RateLimited(retry_after=30))
        job = await send_email.enqueue("a@example.com", "Welcome!")
        info = await wait_state(app, job.id, "scheduled")
    assert [e.type for e in info.errors] == ["Retry"]
    assert _retried_after(info) == pytest.approx(30, abs=0.1)
    await app.close()


async def test_celery_time_limit_cancels_and_cleans_up(
    errands_server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailer import services
    from mailer.tasks import app, build_report

    monkeypatch.setattr(services, "RENDER_SECONDS", 60.0)
    async with run_worker(app):
        job = await build_report.options(timeout=0.3, max_attempts=1).enqueue("2026-11")
        with pytest.raises(errands.JobFailed) as failed:
            await job.result(timeout=10)
    assert failed.value.error is not None
    assert failed.value.error.type == "Timeout"
    assert "2026-11" in services.DISCARDED  # the except CancelledError branch ran
    await app.close()


async def test_celery_beat_schedule_is_a_cron(errands_server: ServerHandle) -> None:
    from mailer.tasks import app

    async with run_worker(app) as worker:
        schedule = await app.get_cron("weekly-digest")
        assert (schedule.schedule, schedule.tz) == ("0 7 * * MON", "Europe/Berlin")
        assert schedule.job.queue == "emails"
        berlin = [t.astimezone(ZoneInfo("Europe/Berlin")) for t in schedule.next_fire_times]
        assert len(berlin) == 5
        assert {(t.weekday(), t.hour, t.minute) for t in berlin} == {(0, 7, 0)}
        job = await app.trigger_cron("weekly-digest")
        assert await job.result(timeout=10) == "<1@mailer.example>"
        assert worker.state.smtp.sent == [("team@example.com", "Your weekly digest")]
    await app.close()


async def test_celery_apply_async_options(errands_server: ServerHandle) -> None:
    from mailer import producer
    from mailer.tasks import app

    remind = await (await producer.remind("a@example.com")).status()
    assert (remind.state, remind.queue, remind.priority) == ("scheduled", "emails", 5)
    assert _deferred_by(remind) == pytest.approx(3600, abs=0.01)
    when = datetime.now(timezone.utc) + timedelta(days=30)
    greet = await (await producer.greet_at("a@example.com", when)).status()
    assert greet.state == "scheduled"
    assert greet.run_at is not None
    assert abs((greet.run_at - when).total_seconds()) < 0.01
    async with run_worker(app):
        by_name = await producer.welcome_by_name("b@example.com")
        assert await by_name.result(timeout=10) == "<1@mailer.example>"
    await app.close()


async def test_by_name_options_come_from_the_producers_app(errands_server: ServerHandle) -> None:
    from mailer import producer

    registered = await (await producer.welcome_by_name("a@example.com")).status()
    assert (registered.queue, registered.max_attempts, registered.timeout) == ("emails", 6, 120)
    async with errands.App() as bare:  # a producer that knows only the name
        job = await bare.enqueue("send_email", "a@example.com", "Hi")
        info = await job.status()
    assert (info.queue, info.max_attempts, info.timeout) == ("default", 5, None)
    assert info.raw["backoff"] == {"type": "exponential", "base": 1, "cap": 3600, "jitter": True}
    assert info.raw["retention"] == 86400
    await producer.app.close()


async def test_celery_group_by_hand(errands_server: ServerHandle) -> None:
    from mailer import producer
    from mailer.tasks import app

    addresses = ["a@x.org", "b@x.org", "c@x.org"]
    async with run_worker(app) as worker:
        results = await producer.send_to_all(addresses, "News")
    sent = worker.state.smtp.sent
    assert sorted(sent) == [(to, "News") for to in addresses]
    # one result per address, in the order given: message id n is the n-th mail sent
    assert [sent[int(r.strip("<>").split("@")[0]) - 1][0] for r in results] == addresses
    await app.close()


async def test_celery_sync_views(errands_server: ServerHandle) -> None:
    from mailer import views
    from mailer.tasks import app, send_email

    try:
        async with run_worker(app):
            job_id = await asyncio.to_thread(views.signup_view, "a@example.com")
            assert await asyncio.to_thread(views.result_view, job_id) == "<1@mailer.example>"
            assert await asyncio.to_thread(views.status_view, job_id) == "completed"
        later = await send_email.options(delay=60).enqueue("b@example.com", "Later")
        assert await asyncio.to_thread(views.revoke_view, later.id) == "cancelled"
    finally:
        await asyncio.to_thread(app.sync.close)
        await app.close()


# -- the worker commands and `errands check` -----------------------------------------------------


def _check(server: ServerHandle, command: str) -> subprocess.CompletedProcess[str]:
    """Run an ``errands check ...`` command line against ``server``."""
    return subprocess.run(
        [find_binary(), *shlex.split(command)[1:]],
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "check", "example", "queue"),
    [
        (ARQ_WORKER_COMMAND, ARQ_CHECK_COMMAND, ARQ_EXAMPLE, "default"),
        (CELERY_WORKER_COMMAND, CELERY_CHECK_COMMAND, CELERY_EXAMPLE, "emails"),
    ],
    ids=["arq", "celery"],
)
async def test_worker_command_serves_and_check_sees_it(
    errands_server: ServerHandle,
    tmp_path: Path,
    command: str,
    check: str,
    example: Path,
    queue: str,
) -> None:
    before = await asyncio.to_thread(_check, errands_server, check)
    assert before.returncode != 0
    assert f"queue {queue}: no connected worker serves it" in before.stderr
    argv = shlex.split(command)
    argv[0] = str(Path(sys.executable).with_name(argv[0]))  # the venv's console script
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            *argv, cwd=example, env={**os.environ, **errands_server.env}, stdout=log, stderr=log
        )
        try:

            async def served() -> bool:
                done = await asyncio.to_thread(_check, errands_server, check)
                return done.returncode == 0 and done.stdout.strip() == "ok"

            await eventually(served, timeout=20, what=f"a worker on {queue}")
        finally:
            worker.terminate()  # SIGTERM: drain, run the shutdown hooks, exit 0
            code = await asyncio.wait_for(worker.wait(), 20)
    assert code == 0, log_path.read_text()
