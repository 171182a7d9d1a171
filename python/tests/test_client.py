"""The producer API against a real server: enqueue, inspect, cancel, retry, errors."""

from __future__ import annotations

import pytest

import errands
from errands.testing import ServerHandle, run_server


async def test_enqueue_and_inspect(app: errands.App) -> None:
    job = await app.enqueue("email.send", "a@example.com", subject="hi")
    assert job.created
    info = await job.status()
    assert info.id == job.id
    assert info.kind == "email.send"
    assert info.queue == "default"
    assert info.state is errands.JobState.QUEUED
    assert info.args == {"args": ["a@example.com"], "kwargs": {"subject": "hi"}}
    assert info.attempt == 0
    assert job.progress is None
    assert (await app.get_job(job.id)).id == job.id


async def test_task_options_reach_the_server(app: errands.App) -> None:
    @app.task(queue="interactive", max_attempts=3, timeout=60, priority=2)
    async def compile_source(ctx: errands.Context, source_id: str) -> dict[str, int]:
        return {"pages": 1}

    job = await compile_source.options(delay=3600, unique_key="src-1", tags=["t"]).enqueue("s1")
    info = await job.status()
    assert info.state is errands.JobState.SCHEDULED
    assert info.queue == "interactive"
    assert info.max_attempts == 3
    assert info.timeout == 60
    assert info.priority == 2
    assert info.unique_key == "src-1"
    assert info.tags == ["t"]
    # Same unique key while unfinished: the existing job comes back.
    again = await compile_source.options(unique_key="src-1").enqueue("s1")
    assert again.id == job.id
    assert not again.created


async def test_enqueue_many(app: errands.App) -> None:
    specs = [app.kind("a").spec(i) for i in range(3)] + [{"kind": "b", "queue": "batch"}]
    jobs = await app.enqueue_many(specs)
    assert len(jobs) == 4
    infos = [await j.status() for j in jobs]
    assert [i.kind for i in infos] == ["a", "a", "a", "b"]
    assert [i.args for i in infos[:3]] == [{"args": [i], "kwargs": {}} for i in range(3)]
    assert infos[3].queue == "batch"


async def test_batch_is_all_or_nothing(app: errands.App) -> None:
    with pytest.raises(errands.Rejected) as info:
        await app.enqueue_many([{"kind": "ok"}, {"kind": ""}])
    assert info.value.status == 400
    assert info.value.field == "jobs[1].kind"
    assert (await app.list_jobs()).jobs == []


async def test_rejected_carries_field_and_reason(app: errands.App) -> None:
    with pytest.raises(errands.Rejected) as info:
        await app.enqueue("")
    assert info.value.code == "invalid_field"
    assert info.value.field == "kind"
    assert info.value.message
    with pytest.raises(errands.Rejected) as info:
        await app.kind("k").options(max_attempts=0).enqueue()
    assert info.value.field == "max_attempts"


async def test_unserialisable_args_fail_before_sending(app: errands.App) -> None:
    @app.task
    async def store(ctx: errands.Context, items: object) -> None:
        return None

    with pytest.raises(errands.SerializationError):
        await store.enqueue({1, 2, 3})
    with pytest.raises(TypeError):  # it is a TypeError too
        await app.enqueue("store", items=object())
    with pytest.raises(TypeError):
        await app.enqueue_many([store.spec(1), {"kind": "store", "args": {1, 2}}])
    assert (await app.list_jobs()).jobs == []  # nothing reached the server


async def test_not_found(app: errands.App) -> None:
    missing = "0193a5b2-7c1e-7d4a-9f1e-2b7d8c9e0a11"
    with pytest.raises(errands.NotFound) as info:
        await app.get_job(missing)
    assert info.value.status == 404
    with pytest.raises(errands.NotFound):
        await app.job(missing).cancel()


async def test_cancel_retry_delete(app: errands.App) -> None:
    job = await app.enqueue("later")
    info = await job.cancel()
    assert info.state is errands.JobState.CANCELLED
    assert (await job.cancel()).state is errands.JobState.CANCELLED  # cancelling again: no-op
    with pytest.raises(errands.JobCancelled):
        await job.result(timeout=5)
    info = await job.retry()
    assert info.state is errands.JobState.QUEUED
    with pytest.raises(errands.Conflict) as conflict:
        await job.retry()  # retrying a queued job is an illegal transition
    assert conflict.value.status == 409
    await job.delete()
    with pytest.raises(errands.NotFound):
        await job.status()


async def test_list_jobs_pages(app: errands.App) -> None:
    await app.enqueue_many([app.kind("p").spec(i) for i in range(5)])
    first = await app.list_jobs(kind="p", limit=3)
    assert len(first.jobs) == 3
    assert first.next_cursor is not None
    rest = await app.list_jobs(kind="p", limit=3, cursor=first.next_cursor)
    assert len(rest.jobs) == 2
    assert rest.next_cursor is None
    # Newest first, i.e. the last enqueued (args [4]) comes first.
    assert first.jobs[0].args == {"args": [4], "kwargs": {}}


async def test_result_timeout_leaves_job_alone(app: errands.App) -> None:
    job = await app.enqueue("nobody.runs.this")
    with pytest.raises(errands.ResultTimeout):
        await job.result(timeout=0.05)
    assert (await job.status()).state is errands.JobState.QUEUED


async def test_bad_token() -> None:
    async with run_server(token="s3cret") as srv:
        async with errands.App(srv.url, token="wrong") as wrong:
            with pytest.raises(errands.Unauthorized) as info:
                await wrong.enqueue("k")
            assert info.value.status == 401
            assert info.value.code == "unauthorized"
        async with errands.App(srv.url) as missing:
            with pytest.raises(errands.Unauthorized):
                await missing.get_job("0193a5b2-7c1e-7d4a-9f1e-2b7d8c9e0a11")
            assert await missing.client.health()  # /healthz needs no token
        async with errands.App(srv.url, token="s3cret") as right:
            job = await right.enqueue("k")
            assert (await job.status()).state is errands.JobState.QUEUED


async def test_the_fixture_finds_its_server_whatever_log_format_the_user_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server's address is read from its text log; a JSON log would hide it.
    monkeypatch.setenv("ERRANDS_LOG_FORMAT", "json")
    async with run_server() as srv, errands.App(srv.url) as app:
        job = await app.enqueue("k")
        assert (await job.status()).state is errands.JobState.QUEUED
        assert "errands serving listen=" in srv.logs()


async def test_connection_failed() -> None:
    from errands.testing import _free_port

    async with errands.App(f"http://127.0.0.1:{_free_port()}") as app:
        with pytest.raises(errands.ConnectionFailed, match="cannot reach"):
            await app.enqueue("k")


async def test_env_configures_module_level_app(errands_server: ServerHandle) -> None:
    # ERRANDS_URL was set by the fixture; an App() made without a URL follows it.
    app = errands.App()
    assert app.url == errands_server.url
    try:
        job = await app.enqueue("k")
        assert (await job.status()).kind == "k"
    finally:
        await app.close()


async def test_list_helpers_follow_every_page() -> None:
    # A one-byte page budget: each page holds one entry, so only following the cursors
    # sees more than the first.
    async with run_server(args=["--max-list-bytes", "1"]) as srv, errands.App(srv.url) as app:
        for name in ["q2", "q3", "q1"]:
            await app.client.enqueue({"kind": "k", "queue": name})
            await app.client.put_cron(name, {"schedule": "0 * * * *", "job": {"kind": "k"}})
        first = await app.client.transport.request("GET", "/v1/queues")
        assert len(first["queues"]) == 1
        assert first["next_cursor"] == "q1"
        assert [q["name"] for q in await app.client.queues()] == ["q1", "q2", "q3"]
        assert [s.name for s in await app.client.list_cron()] == ["q1", "q2", "q3"]
