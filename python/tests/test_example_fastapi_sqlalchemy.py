"""The FastAPI + SQLAlchemy example (examples/fastapi_sqlalchemy): a row and its job commit
together, or neither is kept. Runs against a fresh PostgreSQL database (see test_transactional).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest

from .test_transactional import create_database, drop_database, sqlalchemy_url

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_sqlalchemy"


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database with the errands schema, dropped at the end."""
    name, url = asyncio.run(create_database())
    try:
        yield url
    finally:
        asyncio.run(drop_database(name))


@pytest.fixture
def example(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example's module, imported afresh on this test's database."""
    monkeypatch.setenv("DATABASE_URL", sqlalchemy_url(database))
    name = "errands_example_fastapi_sqlalchemy"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


@pytest.fixture
def client(example: ModuleType) -> Iterator[TestClient]:
    with TestClient(example.api) as client:
        yield client


def rows(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `signups` rows and the errands jobs, read on a connection of their own."""

    async def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        conn = await asyncpg.connect(url)
        try:
            signups = await conn.fetch("SELECT id, email FROM signups ORDER BY id")
            jobs = await conn.fetch(
                "SELECT id::text, kind, queue, state, args::text FROM errands.jobs ORDER BY id"
            )
        finally:
            await conn.close()
        return [dict(r) for r in signups], [dict(r) for r in jobs]

    return asyncio.run(read())


def test_a_committed_signup_has_its_job(client: TestClient, database: str) -> None:
    reply = client.post("/signups", json={"email": "ann@example.com"})
    assert reply.status_code == 201, reply.text
    body = reply.json()
    signups, jobs = rows(database)
    assert signups == [{"id": body["id"], "email": "ann@example.com"}]
    assert len(jobs) == 1
    job = jobs[0]
    assert job["id"] == body["job_id"]
    assert (job["kind"], job["queue"], job["state"]) == ("send_welcome_email", "email", "queued")
    assert '"args": [1, "ann@example.com"]' in job["args"]
    assert client.get(f"/signups/{body['id']}").json()["email"] == "ann@example.com"


def test_a_request_failing_after_the_enqueue_keeps_neither(
    client: TestClient, database: str
) -> None:
    reply = client.post("/signups?fail_after_enqueue=true", json={"email": "bob@example.com"})
    assert reply.status_code == 500, reply.text
    assert rows(database) == ([], [])
    # The same sign-up goes through afterwards: nothing of the failed one is left behind.
    assert client.post("/signups", json={"email": "bob@example.com"}).status_code == 201
    signups, jobs = rows(database)
    assert [s["email"] for s in signups] == ["bob@example.com"]
    assert [j["kind"] for j in jobs] == ["send_welcome_email"]


def test_a_duplicate_signup_is_refused_without_a_job(client: TestClient, database: str) -> None:
    assert client.post("/signups", json={"email": "cy@example.com"}).status_code == 201
    assert client.post("/signups", json={"email": "cy@example.com"}).status_code == 409
    signups, jobs = rows(database)
    assert (len(signups), len(jobs)) == (1, 1)
