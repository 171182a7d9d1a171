"""The FastAPI example (examples/fastapi): upload, worker subprocess, progress WebSocket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from errands.testing import ServerHandle

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

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
