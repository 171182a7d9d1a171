"""Worker processes: the CLI, graceful shutdown on SIGTERM, and a SIGKILLed worker's job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import errands
from errands.testing import ServerHandle, run_server

from .conftest import until, wait_state

PYTHON_DIR = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """`python -m errands worker tests.apps:app ...` with its log in a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "errands", "worker", "tests.apps:app", *args],
            cwd=PYTHON_DIR,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit; its log:\n{self.log()}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Start worker processes (killed at the end of the test if still alive)."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.close()


def start(
    spawn: list[WorkerProcess], server: ServerHandle, tmp_path: Path, *args: str
) -> WorkerProcess:
    worker = WorkerProcess(server.env, tmp_path / f"worker-{len(spawn)}.log", *args)
    spawn.append(worker)
    return worker


async def connected(worker: WorkerProcess) -> None:
    await until(
        lambda: "connected to" in worker.log() or worker.proc.poll() is not None,
        what="worker to connect",
    )
    assert worker.proc.poll() is None, worker.log()


async def test_sigterm_lets_running_jobs_finish(
    app: errands.App, errands_server: ServerHandle, spawn: list[WorkerProcess], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    worker = start(spawn, errands_server, tmp_path, "--grace", "30")
    jobs = [await app.enqueue("wait_for_file", str(gate)) for _ in range(3)]
    # "running" on the server means leased; wait until the worker has really started them.
    for job in jobs:
        marker = Path(f"{gate}.{job.id}.started")
        await until(marker.exists, what=f"job {job.id} to start on the worker")
    worker.proc.send_signal(signal.SIGTERM)
    await until(lambda: "shutting down" in worker.log(), what="worker to start draining")
    assert worker.proc.poll() is None  # still running: waiting for its jobs
    gate.touch()  # let the in-flight jobs finish
    assert worker.wait() == 0, worker.log()
    for job in jobs:
        info = await job.status()
        assert info.state is errands.JobState.COMPLETED, (info.errors, worker.log())
        assert info.result == "released on attempt 1"


async def test_sigterm_past_grace_gives_jobs_back_without_using_an_attempt(
    app: errands.App, errands_server: ServerHandle, spawn: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = start(spawn, errands_server, tmp_path, "--grace", "0.2")
    marker, release = tmp_path / "started", tmp_path / "release"
    job = await app.enqueue("hang_unless_released", str(marker), str(release))
    await until(Path(f"{marker}.1").exists, what="the job to start on the worker")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    assert "grace period" in worker.log()
    # Interrupted, not failed: queued again with the attempt given back and no error recorded.
    info = await wait_state(app, job.id, "queued")
    assert (info.attempt, info.interruptions, info.errors) == (0, 1, []), worker.log()

    release.touch()
    other = start(spawn, errands_server, tmp_path)
    assert await job.result(timeout=20) == "done on attempt 1", other.log()
    assert (await job.status()).errors == []
    other.proc.send_signal(signal.SIGTERM)
    assert other.wait() == 0, other.log()


async def test_a_stopped_worker_process_loses_its_job_to_another_within_the_silence_timeout(
    spawn: list[WorkerProcess], tmp_path: Path
) -> None:
    # A stalled worker (SIGSTOP: it neither runs its jobs nor answers pings) is found out once
    # it has been silent for the timeout, and its job goes to another worker.
    silence = 1.0
    args = ["--worker-silence-timeout", "1s", "--worker-ping-interval", "200ms"]
    async with run_server(args=args) as srv, errands.App(srv.url) as app:
        stalled = start(spawn, srv, tmp_path)
        marker, release = tmp_path / "started", tmp_path / "release"
        job = await app.enqueue("hang_unless_released", str(marker), str(release))
        await until(Path(f"{marker}.1").exists, what="the job to start on the first worker")
        stalled.proc.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        release.touch()  # the stopped worker cannot notice it
        other = start(spawn, srv, tmp_path)
        assert await job.result(timeout=20) == "done on attempt 2", other.log()
        took = time.monotonic() - stopped_at
        info = await job.status()
        assert [e.type for e in info.errors] == ["WorkerLost"]
        # Not before the timeout (it was silent for less), and not long after it (the second
        # worker's start, ~0.5 s of Python imports, overlaps the wait).
        assert silence * 0.8 <= took < silence + 5, took
        stalled.proc.send_signal(signal.SIGKILL)
        other.proc.send_signal(signal.SIGTERM)
        assert other.wait() == 0, other.log()


async def test_sigkilled_workers_job_goes_to_another_worker(
    app: errands.App, errands_server: ServerHandle, spawn: list[WorkerProcess], tmp_path: Path
) -> None:
    first = start(spawn, errands_server, tmp_path)
    job = await app.kind("hang_on_first_attempt").options(backoff=errands.Backoff.none()).enqueue()
    running = await wait_state(app, job.id, "running")
    second = start(spawn, errands_server, tmp_path)
    await connected(second)
    first.proc.kill()  # SIGKILL: no goodbye, the socket just drops
    assert await job.result(timeout=20) == "done on attempt 2"
    info = await job.status()
    assert [e.type for e in info.errors] == ["WorkerLost"]
    assert info.worker_id != running.worker_id or info.worker_id is None
    second.proc.send_signal(signal.SIGINT)  # SIGINT drains like SIGTERM
    assert second.wait() == 0, second.log()


async def test_worker_cli_with_bad_token(spawn: list[WorkerProcess], tmp_path: Path) -> None:
    async with run_server(token="s3cret") as srv:
        worker = WorkerProcess({"ERRANDS_URL": srv.url, "ERRANDS_TOKEN": "wrong"}, tmp_path / "w")
        spawn.append(worker)
        assert worker.wait() == 1
        assert "refused the token" in worker.log()


def test_console_script_and_module_help() -> None:
    script = Path(sys.executable).parent / "errands-worker"
    for cmd in ([str(script), "--help"], [sys.executable, "-m", "errands", "worker", "--help"]):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PYTHON_DIR)
        assert done.returncode == 0, done.stderr
        assert "--concurrency" in done.stdout
        assert "--grace" in done.stdout


def test_load_app_errors() -> None:
    from errands.cli import load_app

    assert load_app("tests.apps:app") is load_app("tests.apps")
    with pytest.raises(SystemExit, match="no attribute"):
        load_app("tests.apps:nope")
    with pytest.raises(SystemExit, match="not an App"):
        load_app("tests.apps:hang")
    with pytest.raises(SystemExit, match="cannot import"):
        load_app("tests.does_not_exist:app")


def json_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    """Every line the worker logged, each of which must be one JSON object."""
    lines = [line for line in worker.log().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) for p in parsed), lines
    return parsed


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_json_logs_name_the_job(
    app: errands.App,
    errands_server: ServerHandle,
    spawn: list[WorkerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    if how == "flag":
        worker = start(spawn, errands_server, tmp_path, "--log-format", "json")
    else:
        monkeypatch.setenv("ERRANDS_LOG_FORMAT", "json")
        worker = start(spawn, errands_server, tmp_path)
    first = await app.enqueue("log_async", "hello")
    second = await app.enqueue("log_in_thread", "from a thread")
    assert await first.result(timeout=10) == "hello"
    assert await second.result(timeout=10) == "from a thread"
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()

    lines = json_lines(worker)
    for line in lines:
        assert {"ts", "level", "message", "logger"} <= set(line), line
        assert line["ts"].endswith("+00:00")
    by_message = {line["message"]: line for line in lines}
    said = by_message["async task says hello"]
    assert said["logger"] == "tests.apps"
    assert said["level"] == "info"
    assert (said["job_id"], said["queue"], said["kind"], said["attempt"]) == (
        first.id,
        "default",
        "log_async",
        1,
    )
    handled = by_message["and handled an error"]
    assert handled["job_id"] == first.id
    assert "ValueError: hello" in handled["exception"]
    threaded = by_message["sync task says from a thread"]
    assert (threaded["job_id"], threaded["kind"], threaded["level"]) == (
        second.id,
        "log_in_thread",
        "warning",
    )
    # The worker's own records outside a job carry no job fields.
    connected_line = next(line for line in lines if "connected to" in line["message"])
    assert connected_line["logger"] == "errands.worker"
    assert "job_id" not in connected_line


async def test_text_logs_stay_the_default(
    app: errands.App, errands_server: ServerHandle, spawn: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = start(spawn, errands_server, tmp_path)
    job = await app.enqueue("log_async", "plain")
    assert await job.result(timeout=10) == "plain"
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.log()
    said = next(line for line in worker.log().splitlines() if "async task says plain" in line)
    assert " INFO tests.apps: async task says plain" in said
    assert not said.startswith("{")


def test_bad_log_format_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "errands", "worker", "tests.apps:app"],
        cwd=PYTHON_DIR,
        env={**os.environ, "ERRANDS_LOG_FORMAT": "yaml"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--log-format: expected text or json, got 'yaml'" in done.stderr


async def test_workers_list_shows_host_and_pid(
    app: errands.App, errands_server: ServerHandle, spawn: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = start(spawn, errands_server, tmp_path, "--name", "fit-1")
    await connected(worker)
    reply = await app.client.transport.request("GET", "/v1/workers")
    [shown] = [w for w in reply["workers"] if w["name"] == "fit-1"]
    assert shown["pid"] == worker.proc.pid
    assert shown["host"] == socket.gethostname()
    assert shown["sdk"] == "errands-python"
