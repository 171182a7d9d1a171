"""Typed views of what the server returns: job objects, their progress and their errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

__all__ = [
    "FINISHED_STATES",
    "JobError",
    "JobInfo",
    "JobState",
    "Progress",
    "format_time",
    "parse_time",
    "seconds",
]


class JobState(str, Enum):
    """The states of a job (see docs/protocol.md, "Job states")."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


#: States a job does not leave on its own; ``Job.result()`` waits for one of these.
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})

# Python 3.10's fromisoformat accepts neither "Z" nor fractions that are not 3 or 6 digits long,
# while RFC 3339 allows both, so the fraction is normalised by hand.
_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp from the server into an aware ``datetime`` (``None`` stays)."""
    if value is None:
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = datetime.fromisoformat(text.replace("t", "T"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def format_time(value: datetime) -> str:
    """Format an aware ``datetime`` as RFC 3339 in UTC, the way the server expects it.

    Naive datetimes are refused: guessing between local time and UTC is how jobs end up running
    hours early or late.
    """
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(
            "run_at must be timezone-aware (e.g. datetime.now(timezone.utc) + timedelta(...))"
        )
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def seconds(value: float | timedelta) -> float:
    """Accept a duration as seconds or a ``timedelta``; the protocol speaks seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


@dataclass(frozen=True, slots=True)
class Progress:
    """What a running job last reported about itself."""

    percent: float | None = None
    message: str | None = None
    data: Any = None

    @classmethod
    def from_json(cls, raw: Any) -> Progress | None:
        """Build from the job object's ``progress`` field (``None`` when absent)."""
        if not isinstance(raw, dict):
            return None
        percent = raw.get("percent")
        return cls(
            percent=float(percent) if percent is not None else None,
            message=raw.get("message"),
            data=raw.get("data"),
        )


@dataclass(frozen=True, slots=True)
class JobError:
    """One failed attempt as the server recorded it."""

    type: str
    message: str
    attempt: int | None = None
    traceback: str | None = None
    at: datetime | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobError:
        """Build from one entry of the job object's ``errors`` list."""
        return cls(
            type=str(raw.get("type", "")),
            message=str(raw.get("message", "")),
            attempt=raw.get("attempt"),
            traceback=raw.get("traceback"),
            at=parse_time(raw.get("at")),
        )


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of one job, as returned by ``GET /v1/jobs/{id}``.

    ``raw`` keeps the whole JSON object so fields added to the protocol later are reachable
    before this class learns about them.
    """

    id: str
    kind: str
    queue: str
    state: JobState
    args: Any = None
    priority: int = 0
    attempt: int = 0
    max_attempts: int = 1
    #: Attempts its workers stopped unfinished as they shut down, given back without counting.
    interruptions: int = 0
    timeout: float | None = None
    unique_key: str | None = None
    tags: list[str] = field(default_factory=list)
    progress: Progress | None = None
    result: Any = None
    errors: list[JobError] = field(default_factory=list)
    worker_id: str | None = None
    created_at: datetime | None = None
    run_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """True when the job is completed, dead or cancelled."""
        return self.state in FINISHED_STATES

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobInfo:
        """Build from a job object; tolerant of optional fields the server leaves out."""
        return cls(
            id=str(raw["id"]),
            kind=str(raw.get("kind", "")),
            queue=str(raw.get("queue", "")),
            state=JobState(raw["state"]),
            args=raw.get("args"),
            priority=int(raw.get("priority") or 0),
            attempt=int(raw.get("attempt") or 0),
            max_attempts=int(raw.get("max_attempts") or 1),
            interruptions=int(raw.get("interruptions") or 0),
            timeout=raw.get("timeout"),
            unique_key=raw.get("unique_key"),
            tags=list(raw.get("tags") or []),
            progress=Progress.from_json(raw.get("progress")),
            result=raw.get("result"),
            errors=[JobError.from_json(e) for e in raw.get("errors") or [] if isinstance(e, dict)],
            worker_id=raw.get("worker_id"),
            created_at=parse_time(raw.get("created_at")),
            run_at=parse_time(raw.get("run_at")),
            started_at=parse_time(raw.get("started_at")),
            finished_at=parse_time(raw.get("finished_at")),
            deadline=parse_time(raw.get("deadline")),
            raw=raw,
        )
