"""Parsing the server's job objects, timestamps and error bodies."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import errands
from errands.errors import error_from_response
from errands.models import JobInfo, JobState, parse_time

PROTOCOL_EXAMPLE = {
    "id": "0193a5b2-7c1e-7d4a-9f1e-2b7d8c9e0a11",
    "queue": "default",
    "kind": "email.send",
    "args": {"to": "a@example.com"},
    "state": "completed",
    "priority": 0,
    "attempt": 1,
    "max_attempts": 5,
    "backoff": {"type": "exponential", "base": 1.0, "cap": 3600.0, "jitter": True},
    "timeout": 30.0,
    "unique_key": None,
    "unique_for": None,
    "retention": 86400.0,
    "tags": ["signup"],
    "progress": {"percent": 100.0, "message": "sent", "data": None},
    "result": {"message_id": "abc"},
    "errors": [
        {
            "attempt": 1,
            "type": "SMTPError",
            "message": "timeout",
            "traceback": "...",
            "at": "2026-11-22T10:00:01Z",
        }
    ],
    "worker_id": None,
    "created_at": "2026-11-22T10:00:00Z",
    "run_at": "2026-11-22T10:00:00Z",
    "started_at": "2026-11-22T10:00:02Z",
    "finished_at": "2026-11-22T10:00:02.5Z",
    "deadline": None,
}


def test_job_object_from_protocol_doc() -> None:
    info = JobInfo.from_json(PROTOCOL_EXAMPLE)
    assert info.state is JobState.COMPLETED
    assert info.finished
    assert info.progress == errands.Progress(100.0, "sent", None)
    assert info.result == {"message_id": "abc"}
    assert info.errors[0].type == "SMTPError"
    assert info.errors[0].at == datetime(2026, 11, 22, 10, 0, 1, tzinfo=timezone.utc)
    assert info.finished_at == datetime(2026, 11, 22, 10, 0, 2, 500000, tzinfo=timezone.utc)
    assert info.tags == ["signup"]


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2026-11-22T10:00:00Z", 0),
        ("2026-11-22T10:00:00.1Z", 100000),
        ("2026-11-22T10:00:00.123456789Z", 123456),
        ("2026-11-22T10:00:00.123+00:00", 123000),
    ],
)
def test_parse_time(text: str, micro: int) -> None:
    parsed = parse_time(text)
    assert parsed == datetime(2026, 11, 22, 10, 0, 0, micro, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errands.Rejected),
        (401, errands.Unauthorized),
        (404, errands.NotFound),
        (409, errands.Conflict),
        (413, errands.Rejected),
        (422, errands.Rejected),
        (500, errands.ServerError),
        (503, errands.ServerError),
    ],
)
def test_error_mapping(status: int, cls: type[errands.ApiError]) -> None:
    body = {
        "error": {"code": "invalid_field", "field": "kind", "message": "kind must not be empty"}
    }
    err = error_from_response(status, body)
    assert type(err) is cls
    assert err.status == status
    assert err.field == "kind"
    assert err.message == "kind must not be empty"
    assert "kind must not be empty" in str(err)


def test_error_with_unexpected_body() -> None:
    err = error_from_response(502, "<html>Bad gateway</html>")
    assert isinstance(err, errands.ServerError)
    assert err.field is None
    assert "Bad gateway" in err.message
