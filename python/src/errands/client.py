"""The HTTP API of the server as typed coroutines: enqueue, inspect, cancel, retry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .cron import CronSchedule, CronSpec
from .errors import SerializationError
from .events import EventStream
from .job import Job
from .models import JobInfo, JobState
from .spec import JobSpec, dumps
from .transport import Transport

__all__ = ["BATCH_LIMIT", "Client", "JobPage"]

#: Jobs per ``POST /v1/jobs/batch`` request, the server's limit.
BATCH_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``GET /v1/jobs``; pass ``next_cursor`` back to get the next one."""

    jobs: list[JobInfo]
    next_cursor: str | None


def _serialise(body: Any, what: str) -> str:
    try:
        return dumps(body)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} is not JSON-serialisable: {exc}") from exc


def _job_path(job_id: str, action: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{action}"


def _cron_path(name: str, action: str = "") -> str:
    return f"/v1/cron/{quote(name, safe='')}{action}"


class Client:
    """Talks to one errands server. ``App`` wraps one; use it directly to skip the registry."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def enqueue(self, spec: JobSpec | Mapping[str, Any]) -> Job[Any]:
        """Enqueue one job (``POST /v1/jobs``) and return its handle.

        A mapping is sent as the request body as-is, for fields this SDK does not model.
        """
        body = spec.to_body() if isinstance(spec, JobSpec) else dict(spec)
        return await self.enqueue_json(_serialise(body, f"job {body.get('kind')!r}"))

    async def enqueue_json(self, body: str) -> Job[Any]:
        """Enqueue one job from an already serialised ``POST /v1/jobs`` body."""
        return self._handle(await self.transport.request("POST", "/v1/jobs", body=body))

    async def enqueue_many(self, specs: Iterable[JobSpec | Mapping[str, Any]]) -> list[Job[Any]]:
        """Enqueue many jobs with ``POST /v1/jobs/batch``; handles come back in input order.

        Each request of up to 10,000 jobs is one transaction on the server: all stored or none
        (a bad job raises :class:`Rejected` naming ``jobs[i]...``). Longer lists are sent as
        several requests, so an error in a later chunk leaves the earlier chunks enqueued.
        """
        bodies = [s.to_body() if isinstance(s, JobSpec) else dict(s) for s in specs]
        # Serialise every chunk before sending the first, so bad arguments anywhere fail early.
        chunks = [
            _serialise({"jobs": bodies[i : i + BATCH_LIMIT]}, "batch")
            for i in range(0, len(bodies), BATCH_LIMIT)
        ]
        handles: list[Job[Any]] = []
        for chunk in chunks:
            reply = await self.transport.request("POST", "/v1/jobs/batch", body=chunk)
            handles.extend(self._handle(r) for r in reply["jobs"])
        return handles

    def _handle(self, reply: Mapping[str, Any]) -> Job[Any]:
        return Job(self, str(reply["id"]), created=bool(reply.get("created", True)))

    def job(self, job_id: str) -> Job[Any]:
        """A handle on an existing job, by id (no request is made)."""
        return Job(self, job_id)

    async def get_job(self, job_id: str) -> JobInfo:
        """Fetch one job (``GET /v1/jobs/{id}``). Raises :class:`NotFound` when unknown."""
        return JobInfo.from_json(await self.transport.request("GET", _job_path(job_id)))

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | str | None = None,
        kind: str | None = None,
        tag: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first (``GET /v1/jobs``)."""
        raw = {"queue": queue, "state": state, "kind": kind, "tag": tag, "cursor": cursor}
        params = {k: str(v) for k, v in raw.items() if v is not None}
        if limit is not None:
            params["limit"] = str(limit)
        reply = await self.transport.request("GET", "/v1/jobs", params=params)
        return JobPage(
            jobs=[JobInfo.from_json(j) for j in reply.get("jobs", [])],
            next_cursor=reply.get("next_cursor"),
        )

    async def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job; raises :class:`Conflict` if it already completed or died."""
        return JobInfo.from_json(await self.transport.request("POST", _job_path(job_id, "/cancel")))

    async def retry(self, job_id: str, *, reset_attempts: bool = True) -> JobInfo:
        """Queue a dead, cancelled or completed job again; :class:`Conflict` otherwise."""
        body = None if reset_attempts else dumps({"reset_attempts": False})
        reply = await self.transport.request("POST", _job_path(job_id, "/retry"), body=body)
        return JobInfo.from_json(reply)

    async def delete(self, job_id: str) -> None:
        """Delete a job; raises :class:`Conflict` while it runs."""
        await self.transport.request("DELETE", _job_path(job_id))

    def events(
        self,
        *,
        ids: Iterable[str] | None = None,
        queue: str | None = None,
        kind: str | None = None,
    ) -> EventStream:
        """A subscription to live job events (``GET /v1/events``), filtered with AND.

        ``async with client.events(queue="default") as events: async for event in events: ...``
        """
        return EventStream(self.transport, ids=ids, queue=queue, kind=kind)

    # -- cron schedules -------------------------------------------------------------------------

    async def put_cron(self, name: str, spec: CronSpec | Mapping[str, Any]) -> CronSchedule:
        """Create or replace the cron schedule ``name`` (``PUT /v1/cron/{name}``).

        Re-declaring a schedule with the same ``schedule`` and ``tz`` keeps its next fire time;
        a spec whose ``paused`` is ``None`` keeps its paused state. A mapping is sent as the
        request body as-is.

        Raises:
            Rejected: a bad field; ``field`` names it (``schedule``, ``tz``, ``job.kind``, ...)
                and ``message`` is the server's reason.
        """
        body = spec.to_body() if isinstance(spec, CronSpec) else dict(spec)
        text = _serialise(body, f"cron schedule {name!r}")
        reply = await self.transport.request("PUT", _cron_path(name), body=text)
        return CronSchedule.from_json(reply)

    async def get_cron(self, name: str) -> CronSchedule:
        """One cron schedule with its next fire times; :class:`NotFound` when unknown."""
        return CronSchedule.from_json(await self.transport.request("GET", _cron_path(name)))

    async def _list_all(self, path: str, field: str) -> list[Any]:
        """Every entry of a paged listing, following ``next_cursor`` to the last page."""
        entries: list[Any] = []
        after: str | None = None
        while True:
            params = None if after is None else {"after": after}
            reply = await self.transport.request("GET", path, params=params)
            entries.extend(reply.get(field, []))
            cursor = reply.get("next_cursor")
            # A cursor that does not move would loop forever: stop instead.
            if cursor is None or cursor == after:
                return entries
            after = cursor

    async def list_cron(self) -> list[CronSchedule]:
        """Every cron schedule, by name, with its next fire times (``GET /v1/cron``, every
        page)."""
        return [CronSchedule.from_json(s) for s in await self._list_all("/v1/cron", "schedules")]

    async def delete_cron(self, name: str) -> None:
        """Delete a cron schedule (jobs it enqueued stay); :class:`NotFound` when unknown."""
        await self.transport.request("DELETE", _cron_path(name))

    async def pause_cron(self, name: str) -> CronSchedule:
        """Pause a cron schedule: it enqueues nothing until resumed."""
        return CronSchedule.from_json(
            await self.transport.request("POST", _cron_path(name, "/pause"))
        )

    async def resume_cron(self, name: str) -> CronSchedule:
        """Resume a paused schedule from its first fire time after now (missed ones don't run)."""
        return CronSchedule.from_json(
            await self.transport.request("POST", _cron_path(name, "/resume"))
        )

    async def trigger_cron(self, name: str) -> Job[Any]:
        """Enqueue a cron schedule's job now, paused or not, and return its handle."""
        return self._handle(await self.transport.request("POST", _cron_path(name, "/trigger")))

    async def queues(self) -> list[dict[str, Any]]:
        """Queue depths and ages (``GET /v1/queues``, every page), as the server's JSON
        objects, by name."""
        return await self._list_all("/v1/queues", "queues")

    async def health(self) -> bool:
        """True when ``GET /healthz`` answers 200."""
        await self.transport.request("GET", "/healthz")
        return True

    async def close(self) -> None:
        """Close the HTTP session of the running loop."""
        await self.transport.close()
