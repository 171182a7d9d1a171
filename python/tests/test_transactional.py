"""``errands.enqueue_in()``: jobs that commit, or roll back, with the caller's own transaction.

These tests run against a real PostgreSQL: ``$ERRANDS_TEST_POSTGRES``, default
``postgres://postgres@127.0.0.1:5432``. Each test gets a database of its own, created empty,
migrated by the server binary (``$ERRANDS_BIN migrate --db <url>``) and dropped at the end. When
PostgreSQL cannot be reached the tests fail: they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import errands
import errands.task
from errands import Backoff, JobState, Rejected, SerializationError, enqueue_in, enqueue_many_in

from .conftest import eventually

POSTGRES = os.environ.get("ERRANDS_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432").rstrip("/")

MARKER = {"kind": "marker", "queue": "marker"}
DEFAULT_BACKOFF = {"type": "exponential", "base": 1.0, "cap": 3600.0, "jitter": True}


# -- a fresh database per test --------------------------------------------------------------------


async def create_database() -> tuple[str, str]:
    """Create an empty database with a unique name and migrate it; return (name, url)."""
    name = f"errands_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"{POSTGRES}/{name}"
    try:
        await migrate(url)
    except BaseException:
        await drop_database(name)
        raise
    return name, url


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def migrate(url: str) -> None:
    """Create the errands schema in ``url`` the way a deployment does: ``errands migrate``."""
    binary = os.environ.get("ERRANDS_BIN") or shutil.which("errands")
    assert binary, "set ERRANDS_BIN to the errands server binary (python/ci.sh does)"
    proc = await asyncio.create_subprocess_exec(
        binary,
        "migrate",
        "--db",
        url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        raise AssertionError(
            f"`{binary} migrate --db {url}` failed with status {proc.returncode}:\n"
            f"{(out + err).decode(errors='replace')[-4000:]}"
        )


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh, migrated database for the block; its URL (``postgres://...``)."""
    name, url = await create_database()
    try:
        yield url
    finally:
        await drop_database(name)


class Db:
    """The test's database, reached through one of the three supported drivers."""

    def __init__(self, url: str, driver: str) -> None:
        self.url = url
        self.driver = driver

    @contextlib.asynccontextmanager
    async def transaction(self, *, commit: bool = True) -> AsyncIterator[Any]:
        """A connection (or session) in a transaction, committed at the end of the block, or
        rolled back when ``commit`` is false or the block raises."""
        if self.driver == "asyncpg":
            conn = await asyncpg.connect(self.url)
            # A jsonb codec of the application's must not change what enqueue_in sends.
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            try:
                tx = conn.transaction()
                await tx.start()
                try:
                    yield conn
                except BaseException:
                    await tx.rollback()
                    raise
                await (tx.commit() if commit else tx.rollback())
            finally:
                await conn.close()
        elif self.driver == "psycopg":
            # Rows as dicts on the application's connection must not matter either.
            pconn = await psycopg.AsyncConnection.connect(self.url, row_factory=dict_row)
            try:
                try:
                    yield pconn
                except BaseException:
                    await pconn.rollback()
                    raise
                await (pconn.commit() if commit else pconn.rollback())
            finally:
                await pconn.close()
        else:
            engine = create_async_engine(sqlalchemy_url(self.url))
            try:
                async with AsyncSession(engine) as session:
                    try:
                        yield session
                    except BaseException:
                        await session.rollback()
                        raise
                    await (session.commit() if commit else session.rollback())
            finally:
                await engine.dispose()

    async def jobs(self) -> list[dict[str, Any]]:
        """Every stored job, oldest first, read on a connection of its own."""
        conn = await asyncpg.connect(self.url)
        try:
            rows = await conn.fetch(
                "SELECT id::text, queue, kind, args::text, state, priority, max_attempts,"
                " backoff::text, timeout, unique_key, unique_for, retention, tags,"
                " extract(epoch FROM run_at - created_at)::float8 AS wait"
                " FROM errands.jobs ORDER BY created_at, id"
            )
        finally:
            await conn.close()
        jobs = [dict(row) for row in rows]
        for job in jobs:
            job["args"] = json.loads(job["args"])
            job["backoff"] = json.loads(job["backoff"])
        return jobs


def sqlalchemy_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?://", "postgresql+asyncpg://", url)


class Notices:
    """What a server node LISTENing on channel `errands` receives, in commit order."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.received.put_nowait(json.loads(payload))

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), timeout)


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with postgres_database() as url:
        yield url


@pytest.fixture(params=["asyncpg", "psycopg", "sqlalchemy"])
def db(request: pytest.FixtureRequest, database: str) -> Db:
    return Db(database, request.param)


@pytest.fixture
async def notices(database: str) -> AsyncIterator[Notices]:
    listener = await asyncpg.connect(database)
    seen = Notices()
    await listener.add_listener("errands", seen.on_notify)  # LISTEN is in effect on return
    try:
        yield seen
    finally:
        await listener.close()


async def commit_marker(url: str) -> dict[str, Any]:
    """Commit a job on queue `marker` outside any test transaction; return its notice.

    Notices reach a listener in commit order, so one that comes before the marker's was sent
    by a transaction that committed before it: waiting for the marker bounds the wait for a
    notice that must not come, without guessing a delay.
    """
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT errands.enqueue($1::text::jsonb)", json.dumps(MARKER))
    finally:
        await conn.close()
    return {"t": "ready", "queue": "marker"}


# -- tasks (never run here: these tests are about storing them) ----------------------------------

# Never contacted: the jobs of these tests go through PostgreSQL, not HTTP.
app = errands.App("http://127.0.0.1:9")


@app.task(queue="mail")
async def send_welcome(ctx: errands.Context, email: str, name: str = "") -> None:
    raise AssertionError("not run in these tests")


# -- tests ----------------------------------------------------------------------------------------


async def test_commit_stores_the_job_and_wakes_the_queue(db: Db, notices: Notices) -> None:
    async with db.transaction() as conn:
        result = await send_welcome.enqueue_in(conn, "ann@example.com", name="Ann")
        assert result.created
        assert result.state is JobState.QUEUED
        assert await db.jobs() == [], "visible to others before the commit"
    assert await notices.next() == {"t": "ready", "queue": "mail"}
    (job,) = await db.jobs()
    assert job["id"] == result.id
    assert uuid.UUID(result.id).version == 7
    assert job["kind"] == "send_welcome"
    assert job["queue"] == "mail"
    assert job["args"] == {"args": ["ann@example.com"], "kwargs": {"name": "Ann"}}
    assert job["state"] == "queued"
    assert (job["priority"], job["max_attempts"], job["retention"]) == (0, 5, 86400.0)
    assert job["backoff"] == DEFAULT_BACKOFF
    assert (job["timeout"], job["unique_key"], job["tags"]) == (None, None, [])
    assert job["wait"] == 0


async def test_rollback_stores_nothing_and_wakes_nobody(db: Db, notices: Notices) -> None:
    async with db.transaction(commit=False) as conn:
        result = await send_welcome.enqueue_in(conn, "bob@example.com")
        assert result.created  # as far as the transaction knows
    assert await db.jobs() == []
    marker = await commit_marker(db.url)
    assert await notices.next() == marker, "the rolled-back job woke a queue"


async def test_a_bad_field_raises_rejected_naming_it(db: Db) -> None:
    with pytest.raises(Rejected) as caught:
        async with db.transaction() as conn:
            await send_welcome.options(delay=-1).enqueue_in(conn, "c@example.com")
    assert caught.value.field == "delay"
    assert caught.value.message == (
        "delay must be a non-negative number of seconds, at most 100 years"
    )
    assert (caught.value.status, caught.value.code) == (400, "invalid_field")
    assert isinstance(caught.value.__cause__, Exception)  # the driver's error, for details

    with pytest.raises(Rejected) as caught:
        async with db.transaction() as conn:
            await enqueue_in(conn, "  ")
    assert (caught.value.field, caught.value.message) == ("kind", "kind must not be empty")

    with pytest.raises(Rejected) as caught:
        async with db.transaction() as conn:
            await enqueue_many_in(conn, [{"kind": "a"}, {"kind": "a", "qeue": "typo"}])
    assert caught.value.field == "jobs[1].qeue"
    assert "unknown field `qeue`" in caught.value.message
    assert await db.jobs() == []


async def test_arguments_that_are_not_json_are_refused_before_sending(db: Db) -> None:
    async with db.transaction() as conn:
        with pytest.raises(SerializationError):
            await send_welcome.enqueue_in(conn, {1, 2})  # type: ignore[arg-type]
        # Nothing was sent, so the transaction is still good.
        await send_welcome.enqueue_in(conn, "d@example.com")
    assert len(await db.jobs()) == 1


async def test_unique_keys_dedupe(db: Db) -> None:
    keyed = send_welcome.options(unique_key="welcome:ann")
    async with db.transaction() as conn:
        first = await keyed.enqueue_in(conn, "ann@example.com")
        again = await keyed.enqueue_in(conn, "ann@example.com")
    async with db.transaction() as conn:
        later = await keyed.enqueue_in(conn, "ann@example.com")
        other = await send_welcome.options(unique_key="welcome:bob").enqueue_in(conn, "bob")
    assert first.created
    assert not again.created
    assert not later.created
    assert first.id == again.id == later.id
    assert later.state is JobState.QUEUED
    assert other.created
    assert other.id != first.id
    assert [j["unique_key"] for j in await db.jobs()] == ["welcome:ann", "welcome:bob"]


async def test_a_scheduled_job_sends_the_scheduled_notice(db: Db, notices: Notices) -> None:
    async with db.transaction() as conn:
        result = await send_welcome.options(delay=timedelta(minutes=1)).enqueue_in(conn, "e")
    assert result.state is JobState.SCHEDULED
    assert await notices.next() == {"t": "scheduled"}
    (job,) = await db.jobs()
    assert (job["state"], job["wait"]) == ("scheduled", 60.0)


async def test_enqueue_many_in_keeps_order_and_is_all_or_nothing(db: Db) -> None:
    async with db.transaction() as conn:
        results = await enqueue_many_in(
            conn,
            [
                send_welcome.spec("a"),
                send_welcome.options(unique_key="k").spec("b"),
                send_welcome.options(unique_key="k").spec("c"),
                {"kind": "raw", "args": [1], "delay": 5},
            ],
        )
    assert [(r.created, r.state) for r in results] == [
        (True, JobState.QUEUED),
        (True, JobState.QUEUED),
        (False, JobState.QUEUED),
        (True, JobState.SCHEDULED),
    ]
    assert results[2].id == results[1].id
    assert [j["id"] for j in await db.jobs()] == [results[0].id, results[1].id, results[3].id]

    with pytest.raises(Rejected) as caught:
        async with db.transaction() as conn:
            await enqueue_many_in(conn, [send_welcome.spec("x"), {"kind": "a", "delay": -1}])
    assert caught.value.field == "jobs[1].delay"
    assert len(await db.jobs()) == 3


async def test_the_body_is_the_one_http_enqueue_sends(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    stored: list[str] = []

    async def http_enqueue(body: str) -> errands.Job[Any]:
        sent.append(body)
        return app.job("0")

    real_enqueue_body_in = errands.task.enqueue_body_in

    async def sql_enqueue(conn: Any, body: str) -> errands.EnqueueResult:
        stored.append(body)
        return await real_enqueue_body_in(conn, body)

    monkeypatch.setattr(app.client, "enqueue_json", http_enqueue)
    monkeypatch.setattr(errands.task, "enqueue_body_in", sql_enqueue)
    configured = send_welcome.options(
        priority=7,
        tags=["signup", "mail"],
        backoff=Backoff.fixed(30),
        timeout=12.5,
        retention=timedelta(hours=1),
        max_attempts=3,
        unique_key="once",
        unique_for=600,
    )
    await configured.enqueue("f@example.com", name="F")
    db = Db(database, "asyncpg")
    async with db.transaction() as conn:
        await configured.enqueue_in(conn, "f@example.com", name="F")
    assert len(sent) == 1
    assert stored == sent
    (job,) = await db.jobs()
    body = json.loads(sent[0])
    for field in ("kind", "queue", "args", "priority", "max_attempts", "timeout", "tags"):
        assert job[field] == body[field], field
    assert (job["unique_key"], job["unique_for"], job["retention"]) == ("once", 600.0, 3600.0)
    assert job["backoff"] == {"type": "fixed", "delay": 30.0}


async def test_a_kind_by_name_gets_the_server_defaults(database: str) -> None:
    db = Db(database, "psycopg")
    async with db.transaction() as conn:
        result = await enqueue_in(conn, "reports.build", 2026, full=True)
    (job,) = await db.jobs()
    assert (job["id"], job["kind"], job["queue"]) == (result.id, "reports.build", "default")
    assert job["args"] == {"args": [2026], "kwargs": {"full": True}}


async def test_a_sqlalchemy_async_connection_works_too(database: str, notices: Notices) -> None:
    engine = create_async_engine(sqlalchemy_url(database))
    try:
        async with engine.begin() as conn:
            result = await send_welcome.enqueue_in(conn, "g@example.com")
    finally:
        await engine.dispose()
    assert await notices.next() == {"t": "ready", "queue": "mail"}
    assert [j["id"] for j in await Db(database, "asyncpg").jobs()] == [result.id]


async def test_concurrent_enqueues_of_one_key_create_one_job(database: str) -> None:
    keyed = send_welcome.options(unique_key="race")
    first, second, observer = [await asyncpg.connect(database) for _ in range(3)]
    try:
        tx1, tx2 = first.transaction(), second.transaction()
        await tx1.start()
        winner = await keyed.enqueue_in(first, "first")
        await tx2.start()
        pending = asyncio.ensure_future(keyed.enqueue_in(second, "second"))

        async def waiting_on_the_first() -> bool:
            state = await observer.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                second.get_server_pid(),
            )
            return bool(state == "Lock")

        # The second insert of the key waits for the first transaction to end...
        await eventually(waiting_on_the_first, what="the second enqueue to wait on the first")
        await tx1.commit()
        # ... and then finds its job instead of making another.
        loser = await asyncio.wait_for(pending, 10)
        await tx2.commit()
    finally:
        for conn in (first, second, observer):
            await conn.close()
    assert winner.created
    assert not loser.created
    assert loser.id == winner.id
    assert [j["args"]["args"] for j in await Db(database, "asyncpg").jobs()] == [["first"]]


async def test_connections_that_cannot_hold_the_transaction_are_refused(database: str) -> None:
    with pytest.raises(TypeError, match="asyncpg connection"):
        await enqueue_in(object(), send_welcome, "x")
    pool = await asyncpg.create_pool(database, min_size=1, max_size=1)
    try:
        with pytest.raises(TypeError, match=r"pool\.acquire"):
            await enqueue_in(pool, send_welcome, "x")
        async with pool.acquire() as conn:  # a pool's connection is fine
            assert (await enqueue_in(conn, send_welcome, "y")).created
    finally:
        await pool.close()
    sync = await asyncio.to_thread(psycopg.connect, database)
    try:
        with pytest.raises(TypeError, match="AsyncConnection"):
            await enqueue_in(sync, send_welcome, "x")
    finally:
        sync.close()
    engine = create_async_engine(sqlalchemy_url(database))
    try:
        with pytest.raises(TypeError, match="AsyncSession"):
            await enqueue_in(engine, send_welcome, "x")
    finally:
        await engine.dispose()
    assert len(await Db(database, "asyncpg").jobs()) == 1
