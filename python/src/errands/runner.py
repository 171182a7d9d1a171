"""Running one delivered job: call the task, enforce its timeout, and build the report.

This module decides *what* to tell the server about an attempt (``complete`` or ``fail`` with
which error and retry advice); the worker module decides *how* messages travel.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from . import otel
from .context import Context
from .errors import InvalidPayload, Permanent, Retry
from .logs import JobLogContext, current_job
from .models import parse_time
from .spec import decode_args, dumps
from .task import Task

__all__ = ["Abort", "Delivery", "JobRun", "fail_message"]

log = logging.getLogger("errands.worker")

Message = dict[str, Any]

# A traceback longer than this is cut from the top: the innermost frames are the useful ones.
_MAX_TRACEBACK = 32 * 1024


@dataclass(frozen=True, slots=True)
class Delivery:
    """A ``job`` message from the server."""

    id: str
    queue: str
    kind: str
    args: Any
    attempt: int
    max_attempts: int
    timeout: float | None
    deadline: datetime | None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, msg: Message) -> Delivery:
        """Parse a ``job`` message (raises ``KeyError``/``ValueError`` when malformed)."""
        timeout = msg.get("timeout")
        return cls(
            id=str(msg["id"]),
            queue=str(msg.get("queue", "")),
            kind=str(msg["kind"]),
            args=msg.get("args"),
            attempt=int(msg.get("attempt") or 1),
            max_attempts=int(msg.get("max_attempts") or 1),
            timeout=float(timeout) if timeout is not None else None,
            deadline=parse_time(msg.get("deadline")),
            headers=_headers(msg.get("headers")),
        )


def _headers(raw: Any) -> dict[str, str]:
    """A delivery's headers: string pairs only (the server sends nothing else)."""
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


class Abort(Enum):
    """Why a running job was stopped from outside; decides what (if anything) is reported."""

    #: The server sent ``cancel`` (reason cancelled or timeout): it already knows, say nothing.
    SERVER = "server"
    #: The attempt ran past its timeout here first: report a ``Timeout`` failure.
    TIMEOUT = "timeout"
    #: The worker is shutting down past its grace period (it reports the job ``interrupted``
    #: itself), or lost its connection (the server has requeued the job): no outcome to report.
    SHUTDOWN = "shutdown"


def fail_message(
    job_id: str,
    type_: str,
    message: str,
    *,
    tb: str | None = None,
    retry: bool = True,
    retry_after: float | None = None,
) -> Message:
    """A ``fail`` message; ``retry``/``retry_after`` are left out when they are the defaults."""
    error: dict[str, Any] = {"type": type_, "message": message}
    if tb:
        error["traceback"] = tb[-_MAX_TRACEBACK:]
    msg: Message = {"type": "fail", "id": job_id, "error": error}
    if not retry:
        msg["retry"] = False
    if retry_after is not None:
        msg["retry_after"] = retry_after
    return msg


def _format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _report_exception(job_id: str, exc: Exception) -> Message:
    if isinstance(exc, Retry):
        return fail_message(job_id, "Retry", exc.message, retry_after=exc.delay)
    if isinstance(exc, Permanent):
        cause = exc.__cause__
        type_ = type(cause).__name__ if cause is not None else "Permanent"
        return fail_message(job_id, type_, str(exc), tb=_format_tb(exc), retry=False)
    return fail_message(job_id, type(exc).__name__, str(exc), tb=_format_tb(exc))


def _report_result(job_id: str, result: Any) -> Message:
    msg: Message = {"type": "complete", "id": job_id}
    if result is None:
        return msg
    try:
        dumps(result)
    except (TypeError, ValueError) as exc:
        # Re-running will not make the value serialisable, so do not retry.
        return fail_message(
            job_id,
            "SerializationError",
            f"the task returned a value that is not JSON-serialisable: {exc}",
            retry=False,
        )
    msg["result"] = result
    return msg


class JobRun:
    """One attempt of one job, running as an asyncio task on the worker's loop.

    The report (``complete``/``fail``) is handed to ``report`` when the attempt ends, unless it
    was aborted in a way that needs none (see :class:`Abort`). ``done`` is called last, always,
    so the worker can forget the job: nothing about a finished job is kept.
    """

    __slots__ = ("_aborted", "_done", "_executor", "_report", "_task", "_timer", "ctx", "delivery")

    def __init__(
        self,
        delivery: Delivery,
        task: Task[..., Any] | None,
        ctx: Context,
        *,
        executor: Executor,
        report: Callable[[Message], None],
        done: Callable[[JobRun], None],
        known: Callable[[], list[str]],
    ) -> None:
        self.delivery = delivery
        self.ctx = ctx
        self._executor = executor
        self._report = report
        self._done = done
        self._aborted: Abort | None = None
        loop = asyncio.get_running_loop()
        timeout = ctx.timeout
        self._timer = loop.call_later(timeout, self.abort, Abort.TIMEOUT) if timeout else None
        self._task = loop.create_task(self._main(task, known), name=f"errands-job-{delivery.id}")
        # A done callback rather than `finally`: a task cancelled before its first step never
        # enters its coroutine, and the worker must forget it all the same.
        self._task.add_done_callback(self._finished)

    @property
    def id(self) -> str:
        """The job id."""
        return self.delivery.id

    @property
    def task(self) -> asyncio.Task[None]:
        """The asyncio task running this attempt."""
        return self._task

    def abort(self, reason: Abort) -> None:
        """Stop the attempt; the first reason given wins."""
        if self._task.done() or self._aborted is not None:
            return
        self._aborted = reason
        self._task.cancel()

    async def _main(self, task: Task[..., Any] | None, known: Callable[[], list[str]]) -> None:
        # This asyncio task has its own copy of the context: records logged while it runs (and
        # in the thread of a plain function, which gets a copy of it) name this job.
        d = self.delivery
        current_job.set(JobLogContext(d.id, d.queue, d.kind, d.attempt))
        try:
            if otel.ENABLED:
                with otel.job_span(
                    job_id=d.id, queue=d.queue, kind=d.kind, attempt=d.attempt, headers=d.headers
                ) as span:
                    msg = await self._execute(task, known)
                    otel.record_outcome(span, msg)
            else:
                msg = await self._execute(task, known)
            if msg is not None:
                self._report(msg)
        except asyncio.CancelledError:
            pass  # aborted before the task function started: nothing to report
        except Exception:  # pragma: no cover - a bug here must not kill the worker
            log.exception("internal error while running job %s", self.id)

    def _finished(self, _: asyncio.Task[None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._done(self)

    async def _execute(
        self, task: Task[..., Any] | None, known: Callable[[], list[str]]
    ) -> Message | None:
        d = self.delivery
        if task is None:
            names = ", ".join(sorted(known())) or "none"
            return fail_message(
                d.id,
                "UnknownKind",
                f"this worker has no task named {d.kind!r} (it knows: {names}); "
                "is the task registered on the App the worker was started with?",
            )
        try:
            args, kwargs = task.shapes.arguments(*decode_args(d.args))
        except InvalidPayload as exc:
            # The same payload will not fit on the next attempt either.
            return fail_message(
                d.id, "InvalidPayload", f"arguments of {d.kind}: {exc.reason}", retry=False
            )
        except Exception as exc:  # e.g. a type hint pydantic cannot build a validator for
            return _report_exception(d.id, exc)
        try:
            if task.is_async:  # called here: one coroutine less per job than via a helper
                result = await task.func(self.ctx, *args, **kwargs)
            else:
                result = await self._run_sync(task, args, kwargs)
        except asyncio.CancelledError:
            if self._aborted is None:
                raise  # not ours (the loop is shutting down): let it propagate
            return self._aborted_report()
        except Exception as exc:
            if self._aborted is not None:
                return self._aborted_report()
            log.debug("job %s (%s) attempt %s failed", d.id, d.kind, d.attempt, exc_info=True)
            return _report_exception(d.id, exc)
        if self._aborted is not None:  # the task swallowed the cancellation
            return self._aborted_report()
        return _report_result(d.id, result)

    async def _run_sync(self, task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        # Plain functions run in the pool; the context copy carries contextvars (logging
        # correlation ids and the like) into the thread. A cancelled sync task cannot be
        # interrupted: its thread runs on, but its outcome is no longer reported.
        call = functools.partial(
            contextvars.copy_context().run, task.func, self.ctx, *args, **kwargs
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _aborted_report(self) -> Message | None:
        if self._aborted is Abort.TIMEOUT:
            return fail_message(
                self.id,
                "Timeout",
                f"the attempt ran longer than its timeout of {self.ctx.timeout} s",
            )
        return None
