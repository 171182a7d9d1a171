"""``App``: the task registry, worker lifecycle hooks, and the client API in one object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from .client import Client, JobPage
from .context import Context, State
from .events import EventStream
from .job import Job
from .models import JobInfo, JobState
from .spec import Backoff, JobSpec
from .task import Enqueuer, Task
from .transport import Transport

if TYPE_CHECKING:
    from .sync import SyncClient

__all__ = ["App", "Hook"]

P = ParamSpec("P")
R = TypeVar("R")

#: A lifecycle hook: gets the worker's shared state; may be sync or async.
Hook = Callable[[State], Awaitable[None] | None]
H = TypeVar("H", bound=Hook)
Duration = float | timedelta


class _TaskDecorator(Protocol):
    @overload
    def __call__(
        self, func: Callable[Concatenate[Context, P], Coroutine[Any, Any, R]], /
    ) -> Task[P, R]: ...  # pragma: no cover

    @overload
    def __call__(
        self, func: Callable[Concatenate[Context, P], R], /
    ) -> Task[P, R]: ...  # pragma: no cover


class App:
    """An errands application: register tasks, enqueue jobs, run them in a worker.

    Args:
        url: the server, e.g. ``http://127.0.0.1:7733``. ``None`` reads ``ERRANDS_URL`` (default
            ``http://127.0.0.1:7733``) whenever a connection is made, so tests can point a
            module-level app at a test server through the environment.
        token: bearer token; ``None`` reads ``ERRANDS_TOKEN``.
        timeout: seconds an HTTP request may take before :class:`ConnectionFailed`.

    ``async with App() as app:`` closes the HTTP session at the end; a long-lived app can instead
    ``await app.close()`` at shutdown.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self.client = Client(Transport(url, token, timeout=timeout))
        self.tasks: dict[str, Task[..., Any]] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self._sync: SyncClient | None = None

    @property
    def url(self) -> str:
        """The server's base URL in effect now."""
        return self.client.transport.url

    def __repr__(self) -> str:
        return f"<App {self.url} tasks={sorted(self.tasks)}>"

    # -- registry -----------------------------------------------------------------------------

    @overload
    def task(
        self, func: Callable[Concatenate[Context, P], Coroutine[Any, Any, R]]
    ) -> Task[P, R]: ...  # pragma: no cover

    @overload
    def task(
        self, func: Callable[Concatenate[Context, P], R]
    ) -> Task[P, R]: ...  # pragma: no cover

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | Duration | None = None,
        timeout: Duration | None = None,
        priority: int | None = None,
        retention: Duration | None = None,
    ) -> _TaskDecorator: ...  # pragma: no cover

    def task(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Mapping[str, Any] | Duration | None = None,
        timeout: Duration | None = None,
        priority: int | None = None,
        retention: Duration | None = None,
    ) -> Any:
        """Register a task: ``@app.task`` or ``@app.task(queue="interactive", timeout=300)``.

        The function's first parameter is the :class:`Context`; the rest are the job's arguments.
        ``async def`` tasks run on the worker's loop; plain ``def`` tasks run in its thread pool so
        they never block the loop. The kind defaults to the function's ``__name__``.

        Options are the defaults for every job of this task (server defaults when left out):
        ``max_attempts`` (5), ``backoff`` (exponential 1 s .. 1 h), ``timeout`` (seconds per
        attempt, none), ``priority`` (higher first, 0), ``retention`` (seconds a finished job is
        kept, 1 day).
        """

        def register(fn: Callable[..., Any]) -> Task[..., Any]:
            kind = name or fn.__name__
            if kind in self.tasks:
                raise ValueError(f"a task named {kind!r} is already registered")
            template = JobSpec(kind).with_options(
                queue=queue,
                max_attempts=max_attempts,
                backoff=backoff,
                timeout=timeout,
                priority=priority,
                retention=retention,
            )
            task: Task[..., Any] = Task(self, fn, template)
            self.tasks[kind] = task
            return task

        if func is not None:
            return register(func)
        return register

    def on_startup(self, hook: H) -> H:
        """Run ``hook(state)`` when a worker starts, before it takes jobs (in order)."""
        self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: H) -> H:
        """Run ``hook(state)`` when a worker stops, after its jobs finished (reverse order)."""
        self.shutdown_hooks.append(hook)
        return hook

    def queues(self) -> list[str]:
        """The queues of the registered tasks, in registration order (``["default"]`` if none)."""
        seen: dict[str, None] = {}
        for task in self.tasks.values():
            seen.setdefault(task._template.queue or "default")
        return list(seen) or ["default"]

    # -- producing ------------------------------------------------------------------------------

    def kind(self, name: str) -> Enqueuer[..., Any]:
        """An enqueuer for a task by name, for producers that do not import the worker code.

        If this app has the task registered, its defaults (queue, timeout, ...) apply.
        ``app.kind("email.send").options(delay=60).enqueue(to="a@example.com")``.
        """
        return self.tasks.get(name) or Enqueuer(self, JobSpec(name))

    async def enqueue(self, kind: str, /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Enqueue a job by task name: ``await app.enqueue("email.send", "a@example.com")``."""
        return await self.kind(kind).enqueue(*args, **kwargs)

    async def enqueue_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> list[Job[Any]]:
        """Enqueue many jobs in one request (``POST /v1/jobs/batch``), all or none.

        Build the items with ``task.spec(...)`` / ``task.options(...).spec(...)``, or pass raw
        request bodies. Lists over 10,000 are sent in chunks of 10,000 (each all or none).
        """
        return await self.client.enqueue_many(jobs)

    def job(self, job_id: str) -> Job[Any]:
        """A handle on an existing job by id."""
        return self.client.job(job_id)

    async def get_job(self, job_id: str) -> JobInfo:
        """Fetch a job's current snapshot. Raises :class:`NotFound` when unknown."""
        return await self.client.get_job(job_id)

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
        """One page of jobs, newest first."""
        return await self.client.list_jobs(
            queue=queue, state=state, kind=kind, tag=tag, limit=limit, cursor=cursor
        )

    def events(
        self,
        *,
        ids: Iterable[str] | None = None,
        queue: str | None = None,
        kind: str | None = None,
    ) -> EventStream:
        """Subscribe to live job events, filtered by job ids, queue and/or kind (AND).

        ``async with app.events(queue="default") as events: async for event in events: ...``;
        to follow one job until it finishes, ``job.events()`` is simpler.
        """
        return self.client.events(ids=ids, queue=queue, kind=kind)

    # -- sync facade and lifecycle ----------------------------------------------------------------

    @property
    def sync(self) -> SyncClient:
        """Blocking versions of the producer API, for scripts and sync web frameworks."""
        if self._sync is None:
            from .sync import SyncClient

            self._sync = SyncClient(self)
        return self._sync

    async def close(self) -> None:
        """Close this loop's HTTP session."""
        await self.client.close()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
