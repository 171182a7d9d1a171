"""The argument convention and request bodies: what goes on the wire for an enqueue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import errands
from errands.spec import Backoff, JobSpec, decode_args, encode_args


def test_args_are_packed_as_args_and_kwargs() -> None:
    assert encode_args("k", (1, "a"), {"x": [1, 2]}) == {"args": [1, "a"], "kwargs": {"x": [1, 2]}}


@pytest.mark.parametrize("bad", [{1, 2}, object(), float("nan"), b"bytes"])
def test_unserialisable_args_raise_a_type_error(bad: object) -> None:
    with pytest.raises(errands.SerializationError, match="not JSON-serialisable") as info:
        encode_args("k", (bad,), {})
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, errands.ErrandsError)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"args": [1], "kwargs": {"a": 2}}, ([1], {"a": 2})),
        ({"args": [1, 2]}, ([1, 2], {})),
        ({"kwargs": {"a": 1}}, ([], {"a": 1})),
        ({"to": "a@example.com"}, ([], {"to": "a@example.com"})),  # another producer's object
        ([1, 2], ([1, 2], {})),
        (None, ([], {})),
        (7, ([7], {})),
        ({}, ([], {})),
    ],
)
def test_decode_args(args: object, expected: tuple[list[object], dict[str, object]]) -> None:
    assert decode_args(args) == expected


def test_body_leaves_out_unset_fields() -> None:
    assert JobSpec("k").to_body() == {"kind": "k"}


def test_body_converts_options() -> None:
    at = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    spec = JobSpec("k", args={"args": [], "kwargs": {}}).with_options(
        run_at=at,
        timeout=timedelta(minutes=1),
        backoff=Backoff.exponential(base=2, cap=60, jitter=False),
        tags=["a", "b"],
        unique_key="u",
        unique_for=30,
    )
    assert spec.to_body() == {
        "kind": "k",
        "args": {"args": [], "kwargs": {}},
        "run_at": "2026-11-22T09:00:00.123Z",
        "timeout": 60.0,
        "backoff": {"type": "exponential", "base": 2.0, "cap": 60.0, "jitter": False},
        "tags": ["a", "b"],
        "unique_key": "u",
        "unique_for": 30.0,
    }


def test_naive_run_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        JobSpec("k", run_at=datetime(2026, 1, 1)).to_body()


def test_backoff_forms() -> None:
    assert Backoff.fixed(5).to_json() == {"type": "fixed", "delay": 5.0}
    assert Backoff.none().to_json() == {"type": "none"}
    assert Backoff.coerce(3).to_json() == {"type": "fixed", "delay": 3.0}
    assert Backoff.coerce({"type": "none"}) == Backoff.none()


def test_task_defaults_and_options() -> None:
    app = errands.App("http://example.invalid")

    @app.task(queue="interactive", max_attempts=3, timeout=300, backoff=Backoff.none())
    async def compile_source(ctx: errands.Context, source_id: str, *, fast: bool = False) -> int:
        return 1

    assert compile_source.name == "compile_source"
    assert app.tasks["compile_source"] is compile_source
    body = compile_source.spec("src-1", fast=True).to_body()
    assert body == {
        "kind": "compile_source",
        "queue": "interactive",
        "max_attempts": 3,
        "timeout": 300.0,
        "backoff": {"type": "none"},
        "args": {"args": ["src-1"], "kwargs": {"fast": True}},
    }
    later = compile_source.options(delay=10, priority=5, unique_key="src-1", queue="batch")
    body = later.spec("src-1").to_body()
    assert body["delay"] == 10.0
    assert body["priority"] == 5
    assert body["unique_key"] == "src-1"
    assert body["queue"] == "batch"
    # options() returns a new enqueuer: the task's own defaults are untouched.
    assert "delay" not in compile_source.spec("x").to_body()
    # delay and run_at replace each other rather than conflict.
    at = datetime.now(timezone.utc)
    assert "delay" not in later.options(run_at=at).spec("x").to_body()


def test_sync_function_task_and_name() -> None:
    app = errands.App("http://example.invalid")

    @app.task(name="email.send")
    def send(ctx: errands.Context, to: str) -> None:
        return None

    assert send.name == "email.send"
    assert not send.is_async
    with pytest.raises(ValueError, match="already registered"):
        app.task(name="email.send")(send.func)


def test_kind_by_name_uses_registered_defaults() -> None:
    app = errands.App("http://example.invalid")

    @app.task(queue="batch")
    async def report(ctx: errands.Context) -> None:
        return None

    assert app.kind("report").spec().to_body()["queue"] == "batch"
    assert app.kind("elsewhere").spec(1).to_body() == {
        "kind": "elsewhere",
        "args": {"args": [1], "kwargs": {}},
    }
    assert app.queues() == ["batch"]
    assert errands.App("http://example.invalid").queues() == ["default"]
