"""What to enqueue: the argument convention, retry backoff, and per-job options.

A :class:`JobSpec` is one ``POST /v1/jobs`` request body, built but not yet sent. Tasks build them
from their defaults plus :meth:`Task.options`; :meth:`App.enqueue_many` sends many in one batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from . import otel
from .errors import SerializationError
from .models import format_time, parse_time, seconds
from .payload import to_jsonable

__all__ = [
    "Backoff",
    "JobSpec",
    "args_error",
    "body_head",
    "decode_args",
    "dumps",
    "encode_args",
    "job_body",
]

Duration = float | timedelta


# One encoder for every message: json.dumps() with non-default options builds a new
# JSONEncoder on each call, which shows in a worker's per-job cost.
_ENCODER = json.JSONEncoder(
    allow_nan=False, ensure_ascii=False, separators=(",", ":"), default=to_jsonable
)


def dumps(value: Any) -> str:
    """Serialise strictly to JSON: no NaN/Infinity (not JSON), no silent ``str()`` fallbacks.

    Pydantic models and dataclass instances are written as their JSON form (see
    :func:`errands.payload.to_jsonable`); anything else that is not JSON raises ``TypeError``.
    """
    return _ENCODER.encode(value)


def args_error(kind: str, exc: Exception) -> SerializationError:
    """The error for arguments of ``kind`` that ``dumps`` refused."""
    return SerializationError(f"arguments for {kind!r} are not JSON-serialisable: {exc}")


def encode_args(kind: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Pack call arguments as ``{"args": [...], "kwargs": {...}}`` and check they are JSON.

    The check happens here, on the caller's side, so a bad argument raises
    :class:`SerializationError` before anything reaches the server.
    """
    packed = {"args": list(args), "kwargs": dict(kwargs)}
    try:
        dumps(packed)
    except (TypeError, ValueError) as exc:
        raise args_error(kind, exc) from exc
    return packed


def body_head(template: JobSpec) -> str:
    """The ``POST /v1/jobs`` body of ``template`` up to its args: ``{"kind":...,"args":``.

    ``template`` carries no args (a task's defaults); :func:`job_body` completes it. Headers
    are left out: they change per call (trace context), so :func:`job_body` adds them.
    """
    return dumps(template.to_body(headers=False))[:-1] + ',"args":'


def job_body(
    kind: str,
    head: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> str:
    """The whole ``POST /v1/jobs`` body: ``head`` (from :func:`body_head`) plus the call's
    arguments as ``{"args": [...], "kwargs": {...}}`` and ``headers`` with the current trace
    context.

    Raises:
        SerializationError: an argument is not JSON-serialisable.
    """
    try:
        packed = dumps({"args": args, "kwargs": kwargs})
    except (TypeError, ValueError) as exc:
        raise args_error(kind, exc) from exc
    sent = otel.inject(headers)
    if sent:
        return head + packed + ',"headers":' + dumps(sent) + "}"
    return head + packed + "}"


def decode_args(args: Any) -> tuple[list[Any], dict[str, Any]]:
    """Turn a job's ``args`` back into positional and keyword arguments.

    ``{"args": [...], "kwargs": {...}}`` (what this SDK sends) unpacks as such. Jobs enqueued by
    other producers (curl, the Rust SDK) are mapped as naturally as possible: another object
    becomes keyword arguments, a list positional ones, ``null`` no arguments, and any other value
    a single positional argument.
    """
    if args is None:
        return [], {}
    if isinstance(args, dict):
        if args and set(args) <= {"args", "kwargs"}:
            positional = args.get("args") or []
            keywords = args.get("kwargs") or {}
            if isinstance(positional, list) and isinstance(keywords, dict):
                return list(positional), dict(keywords)
        return [], dict(args)
    if isinstance(args, list):
        return list(args), {}
    return [args], {}


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before retrying a failed attempt.

    Use the constructors: ``Backoff.exponential(base=1, cap=3600)``, ``Backoff.fixed(30)`` or
    ``Backoff.none()``.
    """

    type: Literal["exponential", "fixed", "none"]
    base: float | None = None
    cap: float | None = None
    jitter: bool | None = None
    delay: float | None = None

    @classmethod
    def exponential(
        cls, base: Duration = 1.0, cap: Duration = 3600.0, *, jitter: bool = True
    ) -> Backoff:
        """Retry *n* waits ``min(cap, base * 2**(n-1))`` seconds (jittered over its upper half)."""
        return cls("exponential", base=seconds(base), cap=seconds(cap), jitter=jitter)

    @classmethod
    def fixed(cls, delay: Duration) -> Backoff:
        """Every retry waits ``delay`` seconds."""
        return cls("fixed", delay=seconds(delay))

    @classmethod
    def none(cls) -> Backoff:
        """Retry at once."""
        return cls("none")

    @classmethod
    def coerce(cls, value: Backoff | Mapping[str, Any] | Duration) -> Backoff:
        """Accept a :class:`Backoff`, its JSON form, or a number of seconds (fixed delay)."""
        if isinstance(value, Backoff):
            return value
        if isinstance(value, Mapping):
            return cls(**dict(value))
        return cls.fixed(value)

    def to_json(self) -> dict[str, Any]:
        """The protocol's JSON object for this policy."""
        out: dict[str, Any] = {"type": self.type}
        for name in _BACKOFF_FIELDS:
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out


_BACKOFF_FIELDS = tuple(f.name for f in fields(Backoff))[1:]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue: kind, packed args and options. ``None`` means "server default"."""

    kind: str
    args: Any = None
    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    unique_key: str | None = None
    unique_for: float | None = None
    retention: float | None = None
    tags: tuple[str, ...] | None = None
    headers: Mapping[str, str] | None = None

    def with_options(self, **options: Any) -> JobSpec:
        """A copy with the given options replaced (``None`` values are ignored)."""
        changes = {k: v for k, v in normalise_options(options).items() if v is not None}
        return replace(self, **changes)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> JobSpec:
        """Build from a request body as the server echoes it (a cron schedule's ``job``).

        Fields this class does not know are left out (they stay in the caller's raw JSON).
        """
        known = {f.name for f in fields(cls)} - {"kind", "args"}
        options = {k: v for k, v in raw.items() if k in known and v is not None}
        if isinstance(options.get("run_at"), str):
            options["run_at"] = parse_time(options["run_at"])
        return cls(str(raw.get("kind", "")), raw.get("args"), **normalise_options(options))

    def to_body(self, *, headers: bool = True) -> dict[str, Any]:
        """The ``POST /v1/jobs`` body, leaving out unset fields so server defaults apply.

        ``headers`` includes the spec's headers with the current trace context.
        """
        if self.delay is not None and self.run_at is not None:
            raise ValueError("give delay or run_at, not both")
        body: dict[str, Any] = {"kind": self.kind}
        for name in _SPEC_FIELDS[1:]:
            v = getattr(self, name)
            if v is None or name == "headers":
                continue
            if isinstance(v, Backoff):
                v = v.to_json()
            elif isinstance(v, datetime):
                v = format_time(v)
            elif isinstance(v, tuple):
                v = list(v)
            body[name] = v
        sent = otel.inject(self.headers) if headers else None
        if sent:
            body["headers"] = sent
        return body

    def _with_args(self, args: Any) -> JobSpec:
        """A copy with ``args`` replaced: ``dataclasses.replace(spec, args=args)``, but faster.

        (It is on the path of every ``task.spec(...)``, so of batch enqueues.)
        """
        new = object.__new__(type(self))
        for name in _SPEC_FIELDS:
            object.__setattr__(new, name, getattr(self, name))
        object.__setattr__(new, "args", args)
        return new


_SPEC_FIELDS = tuple(f.name for f in fields(JobSpec))


_DURATIONS = ("delay", "timeout", "unique_for", "retention")


def normalise_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check option names and convert friendly values (timedelta, numbers) to protocol ones."""
    allowed = {f.name for f in fields(JobSpec)} - {"kind", "args"}
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"unknown job option(s): {', '.join(sorted(unknown))}")
    out = dict(options)
    for name in _DURATIONS:
        if out.get(name) is not None:
            out[name] = seconds(out[name])
    if out.get("backoff") is not None:
        out["backoff"] = Backoff.coerce(out["backoff"])
    tags = out.get("tags")
    if tags is not None:
        out["tags"] = (tags,) if isinstance(tags, str) else tuple(tags)
    headers = out.get("headers")
    if headers is not None:
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise TypeError("headers must be a mapping of str to str")
        out["headers"] = dict(headers)
    return out
