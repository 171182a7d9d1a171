"""The FastAPI example (examples/fastapi): upload, worker subprocess, progress WebSocket."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from errands.testing import ServerHandle

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

import httpx
from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi"


@pytest.fixture
def client(errands_server: ServerHandle, tmp_path: Path) -> Iterator[TestClient]:
    """The example's web app plus one worker process, both on the test server."""
    sys.path.insert(0, str(EXAMPLE))
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "errands", "worker", "compiler_app.tasks:app", "--grace", "5"],
        cwd=EXAMPLE,
        env={**os.environ, **errands_server.env, "COMPILE_STEP_DELAY": "0.05"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from compiler_app.web import api

        with TestClient(api) as client:
            yield client
    finally:
        sys.path.remove(str(EXAMPLE))
        worker.terminate()
        worker.wait(10)
        log.close()


def upload(client: TestClient, text: str) -> dict[str, Any]:
    reply = client.post("/uploads", files={"file": ("main.c", text.encode(), "text/plain")})
    assert reply.status_code == 202, reply.text
    body: dict[str, Any] = reply.json()
    return body


def follow(client: TestClient, progress_url: str) -> list[dict[str, Any]]:
    with client.websocket_connect(progress_url) as ws:
        updates: list[dict[str, Any]] = []
        while not updates or updates[-1]["state"] not in ("completed", "dead", "cancelled"):
            updates.append(ws.receive_json())
    return updates


def test_upload_compiles_and_streams_progress(client: TestClient) -> None:
    job = upload(client, "int main() {\n  return 0;\n}\n")
    updates = follow(client, job["progress"])
    final = updates[-1]
    assert final["state"] == "completed"
    assert final["percent"] == 100
    assert final["result"]["lines"] == 3
    percents = [u["percent"] for u in updates if u["percent"] is not None]
    assert percents == sorted(percents)  # progress only moves forward
    assert set(percents) <= {10, 30, 50, 80, 100}
    assert client.get(job["status"]).json()["state"] == "completed"
    assert "<progress" in client.get("/").text


def test_failed_compile_reports_error(client: TestClient) -> None:
    job = upload(client, "#error nope\n")
    final = follow(client, job["progress"])[-1]
    assert final["state"] == "dead"
    assert "found #error directive" in final["error"]


def test_unknown_job(client: TestClient) -> None:
    assert client.get("/jobs/0193a5b2-7c1e-7d4a-9f1e-2b7d8c9e0a11").status_code == 404


# -- the README's own commands ------------------------------------------------------------------

README = (EXAMPLE / "README.md").read_text()
PLACEHOLDER_ID = "0193..."


def readme_line(prefix: str) -> str:
    """The one line of the README's shell blocks that starts with ``prefix``."""
    [line] = [line.strip() for line in README.splitlines() if line.strip().startswith(prefix)]
    return line


def shown_reply(command: str) -> Any:
    """The JSON the README shows (as a ``# {...}`` comment) right below ``command``."""
    lines = README.splitlines()
    below = lines[lines.index(command) + 1].strip()
    assert below.startswith("# {"), below
    # A bare ... (any number) is not JSON: read it as the string "...", which matches anything.
    return json.loads(re.sub(r":\.\.\.(?=[,}])", ':"..."', below[2:]))


def assert_as_shown(actual: Any, shown: Any, job_id: str, where: str = "reply") -> None:
    """``actual`` is what the README shows: ``...`` stands for any value, ``0193...`` the id."""
    if isinstance(shown, dict):
        assert isinstance(actual, dict), (where, actual)
        assert set(actual) == set(shown), (where, actual)
        for key, value in shown.items():
            assert_as_shown(actual[key], value, job_id, f"{where}.{key}")
    elif shown == "...":
        assert actual is not None, where
    elif isinstance(shown, str) and PLACEHOLDER_ID in shown:
        assert actual == shown.replace(PLACEHOLDER_ID, job_id), (where, actual)
    else:
        assert actual == shown, (where, actual)


class Process:
    """A README command run through bash, its output in a file."""

    def __init__(self, command: str, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=EXAMPLE,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            assert self.proc.poll() is None, self.log()
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} in:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def readme_processes(errands_server: ServerHandle, tmp_path: Path) -> Iterator[str]:
    """The worker and web app started with the README's command lines; yields the web URL."""
    env = {
        **os.environ,
        **errands_server.env,
        "COMPILE_STEP_DELAY": "0.05",
        "WEB_PORT": "0",  # uvicorn picks a free port and logs it
        "PYTHONUNBUFFERED": "1",
        # errands-worker and uvicorn as pip installed them next to this interpreter
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    worker = Process(readme_line("errands-worker "), env, tmp_path / "worker.log")
    web = Process(readme_line("uvicorn "), env, tmp_path / "web.log")
    try:
        worker.wait_for("connected to")
        port = web.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        web.stop()
        worker.stop()


def test_readme_curl_example(readme_processes: str) -> None:
    upload_line = readme_line("curl -F ")
    found = re.fullmatch(
        r'curl -F file=@(\S+) "http://127\.0\.0\.1:\$\{WEB_PORT:-8000\}(\S+)"', upload_line
    )
    assert found, upload_line
    filename, path = found.groups()
    with (EXAMPLE / filename).open("rb") as upload:
        reply = httpx.post(readme_processes + path, files={"file": (filename, upload)})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    assert_as_shown(reply.json(), shown_reply(upload_line), job_id)

    status_line = readme_line('curl "http://127.0.0.1:${WEB_PORT:-8000}/jobs/')
    status_url = status_line.split('"')[1].replace("http://127.0.0.1:${WEB_PORT:-8000}", "")
    status_url = readme_processes + status_url.replace(PLACEHOLDER_ID, job_id)
    deadline = time.monotonic() + 20
    while (view := httpx.get(status_url).json())["state"] not in ("completed", "dead"):
        assert time.monotonic() < deadline, view
        time.sleep(0.02)
    assert_as_shown(view, shown_reply(status_line), job_id)
    source = (EXAMPLE / filename).read_text()
    assert view["result"]["lines"] == len(source.splitlines())
