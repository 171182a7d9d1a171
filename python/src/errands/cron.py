"""Cron schedules: what a client declares (``PUT /v1/cron/{name}``) and what the server shows.

The server runs the schedules: it validates the expression and time zone, and enqueues the job
at each fire time, exactly once however many servers share the store. This module only builds
the request and reads the reply (docs/protocol.md, "Cron schedules").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from .models import parse_time
from .spec import JobSpec

__all__ = ["CatchUp", "CronSchedule", "CronSpec"]


class CatchUp(str, Enum):
    """What a schedule does about fire times missed while no server ran it."""

    #: A fire time more than 60 s late is dropped (the default).
    SKIP = "skip"
    #: However many fire times were missed, one job runs for them.
    RUN_ONCE = "run_once"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> CatchUp | None:
        # The server and its CLI accept "run-once" too.
        if isinstance(value, str) and value.replace("-", "_") != value:
            return cls(value.replace("-", "_"))
        return None


@dataclass(frozen=True, slots=True)
class CronSpec:
    """One cron schedule to declare: fire ``job`` at every fire time of ``schedule``.

    Attributes:
        schedule: a cron expression of 5 fields (``minute hour day month weekday``) or 6
            (seconds first), an alias (``@daily``, ...), or an interval (``every 30s``,
            ``every 1h30m``). The server checks it; a bad one is :class:`Rejected` with
            ``field == "schedule"``.
        job: the job to enqueue; ``delay``, ``run_at`` and ``unique_key`` are decided by the
            schedule and refused if set.
        tz: IANA time zone the expression is read in (intervals ignore it).
        catch_up: see :class:`CatchUp`.
        paused: ``True`` pauses, ``False`` resumes, ``None`` keeps the current state (a new
            schedule runs), so re-declaring never resumes a schedule an operator paused.
    """

    schedule: str
    job: JobSpec
    tz: str = "UTC"
    catch_up: CatchUp = CatchUp.SKIP
    paused: bool | None = None

    def to_body(self) -> dict[str, Any]:
        """The ``PUT /v1/cron/{name}`` request body."""
        body: dict[str, Any] = {
            "schedule": self.schedule,
            "tz": self.tz,
            "job": self.job.to_body(),
            "catch_up": CatchUp(self.catch_up).value,
        }
        if self.paused is not None:
            body["paused"] = self.paused
        return body


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron schedule as the server shows it (``GET /v1/cron/{name}``).

    ``raw`` keeps the whole JSON object, for fields added to the protocol later.
    """

    name: str
    schedule: str
    tz: str
    job: JobSpec
    catch_up: CatchUp = CatchUp.SKIP
    paused: bool = False
    #: The next fire times, soonest first (up to five; empty while paused).
    next_fire_times: list[datetime] = field(default_factory=list)
    #: The latest fire time a job was enqueued for.
    last_fire: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def next_fire(self) -> datetime | None:
        """The next fire time (``None`` while paused)."""
        return self.next_fire_times[0] if self.next_fire_times else None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CronSchedule:
        """Build from the server's schedule object."""
        job: Mapping[str, Any] = raw.get("job") or {}
        return cls(
            name=str(raw["name"]),
            schedule=str(raw.get("schedule", "")),
            tz=str(raw.get("tz") or "UTC"),
            job=JobSpec.from_json(job),
            catch_up=CatchUp(raw.get("catch_up") or CatchUp.SKIP),
            paused=bool(raw.get("paused", False)),
            next_fire_times=[
                t for t in (parse_time(v) for v in raw.get("next_fire_times") or []) if t
            ],
            last_fire=parse_time(raw.get("last_fire")),
            raw=raw,
        )
