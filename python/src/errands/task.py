"""Tasks: a function registered under a kind, and the enqueue API built on it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .payload import Shape, TaskShapes
from .spec import Backoff, JobSpec, body_head, encode_args, job_body
from .transactional import EnqueueResult, enqueue_body_in

if TYPE_CHECKING:
    from .app import App
    from .job import Job

__all__ = ["Enqueuer", "Task"]

P = ParamSpec("P")
R = TypeVar("R")

Duration = float | timedelta


class Enqueuer(Generic[P, R]):
    """Enqueues jobs of one kind with a fixed set of options.

    ``task.options(...)`` and ``app.kind("name")`` return one. It is immutable: ``options()``
    returns a new one, so a configured enqueuer can be kept and reused.
    """

    __slots__ = ("_app", "_body_head", "_template")

    def __init__(self, app: App, template: JobSpec) -> None:
        self._app = app
        self._template = template
        # The request body up to its args, serialised once: `{"kind":...,"queue":...,"args":`.
        self._body_head: str | None = None

    @property
    def kind(self) -> str:
        """The task name jobs are enqueued under."""
        return self._template.kind

    def options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        unique_for: Duration | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | Duration | None = None,
        timeout: Duration | None = None,
        retention: Duration | None = None,
        tags: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Enqueuer[P, R]:
        """The same enqueuer with some options overridden for the jobs it creates.

        ``delay`` (seconds or timedelta) and ``run_at`` (aware datetime) schedule the job;
        ``unique_key`` returns the existing unfinished job with that key instead of a new one;
        ``headers`` travel with the job to the worker (``ctx.headers``), beside the trace
        context added at enqueue.
        """
        template = self._template.with_options(
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            unique_key=unique_key,
            unique_for=unique_for,
            max_attempts=max_attempts,
            backoff=backoff,
            timeout=timeout,
            retention=retention,
            tags=tags,
            headers=headers,
        )
        if delay is not None:
            template = replace(template, run_at=None)
        elif run_at is not None:
            template = replace(template, delay=None)
        return Enqueuer(self._app, template)

    def spec(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec:
        """Build the job without sending it, for :meth:`App.enqueue_many`.

        Raises:
            SerializationError: an argument is not JSON-serialisable.
        """
        return self._template._with_args(encode_args(self.kind, args, kwargs))

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue one job with these arguments and return its handle.

        Arguments travel as JSON ``{"args": [...], "kwargs": {...}}``.

        Raises:
            SerializationError: an argument is not JSON-serialisable (nothing is sent).
            Rejected, Unauthorized, ConnectionFailed: the server refused or was unreachable.
        """
        job: Job[R] = await self._app.client.enqueue_json(self._body(args, kwargs))
        return self._typed(job)

    async def enqueue_in(self, conn: Any, /, *args: P.args, **kwargs: P.kwargs) -> EnqueueResult:
        """Enqueue one job inside the caller's own PostgreSQL transaction.

        ``conn`` is an asyncpg connection, a psycopg ``AsyncConnection`` or a SQLAlchemy
        ``AsyncSession``/``AsyncConnection`` on the errands database. The job is stored (and
        workers are woken) only if that transaction commits. The body is the one
        :meth:`enqueue` sends; see :func:`errands.enqueue_in`.

        Raises:
            SerializationError: an argument is not JSON-serialisable (nothing is sent).
            Rejected: a bad field (``.field`` names it); the transaction is aborted.
        """
        return await enqueue_body_in(conn, self._body(args, kwargs))

    def _typed(self, job: Job[Any]) -> Job[R]:
        """``job``, set to rebuild its result when this kind's task returns a model."""
        job._result_shape = self._result_shape()
        return job

    def _result_shape(self) -> Shape | None:
        return None

    def _body(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        # The same body as `client.enqueue(self.spec(...))`, but only the arguments are
        # serialised per call, once: this is the path one-by-one producers take.
        head = self._body_head
        if head is None:
            head = self._body_head = body_head(self._template)
        return job_body(self.kind, head, args, kwargs, self._template.headers)


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - async callable objects count too
    return call is not None and inspect.iscoroutinefunction(call)


class Task(Enqueuer[P, R]):
    """A function registered with ``@app.task``; enqueue it with :meth:`enqueue`.

    ``P`` are the function's parameters after ``ctx``, ``R`` its return type, so
    ``await task.enqueue(...)`` is checked against the function's signature.
    """

    __slots__ = ("_shapes", "func", "is_async", "name", "timeout")

    def __init__(self, app: App, func: Callable[..., Any], template: JobSpec) -> None:
        super().__init__(app, template)
        #: The decorated function, e.g. to call it directly in a unit test.
        self.func = func
        #: The kind jobs of this task are enqueued under.
        self.name = template.kind
        #: True for ``async def``; plain functions run in the worker's thread pool.
        self.is_async = _is_async(func)
        #: The default per-attempt timeout, in seconds.
        self.timeout = template.timeout
        self._shapes: TaskShapes | None = None

    @property
    def shapes(self) -> TaskShapes:
        """The function's model-typed parameters and result, read from its type hints once.

        Read on first use (a worker's first job, a client's first result), not at decoration,
        so annotations may name models defined further down the module.
        """
        if self._shapes is None:
            self._shapes = TaskShapes(self.func)
        return self._shapes

    def job(self, job_id: str) -> Job[R]:
        """A handle on an existing job of this task, whose ``result()`` is typed (and rebuilt
        as a model when the function is annotated to return one)."""
        return self._typed(self._app.client.job(job_id))

    def _result_shape(self) -> Shape | None:
        return self.shapes.result

    def __repr__(self) -> str:
        return f"<Task {self.name}>"
