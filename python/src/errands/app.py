"""``App``: the task registry, worker lifecycle hooks, and the client API in one object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from .client import Client, JobPage
from .context import Context, State
from .cron import CatchUp, CronSchedule, CronSpec
from .events import EventStream
from .job import Job
from .models import JobInfo, JobState
from .spec import Backoff, JobSpec, encode_args
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


class _CronDecorator(Protocol):
    @overload
    def __call__(self, task: Task[P, R], /) -> Task[P, R]: ...  # pragma: no cover

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
        #: Cron schedules a worker of this app upserts when it starts, by name.
        self.crons: dict[str, CronSpec] = {}
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
            if isinstance(fn, Task):
                raise TypeError(
                    f"{fn!r} is already a task: put @app.cron(...) above @app.task(...)"
                )
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

    def cron(
        self,
        schedule: str,
        *,
        name: str | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        queue: str | None = None,
        catch_up: CatchUp | str = CatchUp.SKIP,
    ) -> _CronDecorator:
        """Run a task on a schedule: ``@app.cron("0 2 * * MON", tz="Europe/Berlin")``.

        Put it above ``@app.task(...)``, or straight on a function to register it as a task
        with default options too. At every fire time the server enqueues the task's job with
        the task's options (queue, max_attempts, timeout, ...) and ``args``/``kwargs``.
        ``queue`` overrides the task's queue for these jobs. A worker of this app declares the
        schedule (``PUT /v1/cron/{name}``) when it starts, before it takes jobs.

        Args:
            schedule: 5- or 6-field cron expression, ``@daily`` and the like, or an interval
                such as ``every 30s``. The server checks it when the worker declares it.
            name: the schedule's name; default the task's name. Must be unique in this app.
            tz: IANA time zone the expression is read in (default UTC).
            catch_up: ``"skip"`` (default) or ``"run_once"``, see :class:`CatchUp`.
        """

        def declare(func: Callable[..., Any] | Task[..., Any]) -> Task[..., Any]:
            task = func if isinstance(func, Task) else self.task(func)
            target = task.options(queue=queue) if queue is not None else task
            self.declare_cron(
                name or task.name,
                schedule,
                target,
                args=args,
                kwargs=kwargs,
                tz=tz,
                catch_up=catch_up,
            )
            return task

        return declare  # type: ignore[return-value]

    def declare_cron(
        self,
        name: str,
        schedule: str,
        task: str | Enqueuer[..., Any],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        catch_up: CatchUp | str = CatchUp.SKIP,
    ) -> CronSpec:
        """Declare the schedule ``name`` for this app's workers to upsert when they start.

        ``@app.cron`` without the decorator: ``task`` is a task, an enqueuer with options
        (``task.options(priority=5)``) or a kind by name, as for :meth:`set_cron`.

        Raises:
            ValueError: a schedule of that name is already declared.
            SerializationError: the arguments are not JSON.
        """
        if name in self.crons:
            raise ValueError(
                f"a cron schedule named {name!r} is already declared (give it another name=)"
            )
        spec = self._cron_spec(schedule, task, args, kwargs, tz, catch_up, None)
        self.crons[name] = spec
        return spec

    def _cron_spec(
        self,
        schedule: str,
        task: str | Enqueuer[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        tz: str,
        catch_up: CatchUp | str,
        paused: bool | None,
    ) -> CronSpec:
        enqueuer = self.kind(task) if isinstance(task, str) else task
        if isinstance(args, (str, bytes)):
            raise TypeError("args must be a sequence of arguments, not a string")
        packed = encode_args(enqueuer.kind, args, kwargs or {}) if args or kwargs else None
        job = replace(enqueuer._template, args=packed)
        return CronSpec(schedule, job, tz=tz, catch_up=CatchUp(catch_up), paused=paused)

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
        # A schedule may put this app's tasks on another queue; a worker must serve it too.
        for spec in self.crons.values():
            if spec.job.kind in self.tasks:
                seen.setdefault(spec.job.queue or "default")
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

    # -- cron schedules on the server -----------------------------------------------------------

    async def set_cron(
        self,
        name: str,
        schedule: str,
        task: str | Enqueuer[..., Any],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        catch_up: CatchUp | str = CatchUp.SKIP,
        paused: bool | None = None,
    ) -> CronSchedule:
        """Create or replace the cron schedule ``name`` now (``PUT /v1/cron/{name}``).

        ``task`` is a task, an enqueuer with options (``task.options(queue="slow")``) or a kind
        by name; its options apply to every job the schedule enqueues. ``paused=None`` keeps
        the schedule's paused state (a new one runs).

        Raises:
            Rejected: the server refused a field (``.field`` is ``schedule``, ``tz``,
                ``job.kind``, ...; ``.message`` says why).
        """
        spec = self._cron_spec(schedule, task, args, kwargs, tz, catch_up, paused)
        return await self.client.put_cron(name, spec)

    async def get_cron(self, name: str) -> CronSchedule:
        """One cron schedule with its next fire times; :class:`NotFound` when unknown."""
        return await self.client.get_cron(name)

    async def list_cron(self) -> list[CronSchedule]:
        """Every cron schedule on the server, by name, with its next fire times."""
        return await self.client.list_cron()

    async def delete_cron(self, name: str) -> None:
        """Delete a cron schedule (jobs it enqueued stay); :class:`NotFound` when unknown.

        A worker that declares it creates it again when it starts.
        """
        await self.client.delete_cron(name)

    async def pause_cron(self, name: str) -> CronSchedule:
        """Pause a cron schedule; workers re-declaring it at start leave it paused."""
        return await self.client.pause_cron(name)

    async def resume_cron(self, name: str) -> CronSchedule:
        """Resume a paused schedule from its first fire time after now."""
        return await self.client.resume_cron(name)

    async def trigger_cron(self, name: str) -> Job[Any]:
        """Enqueue a cron schedule's job now (paused or not) and return its handle."""
        return await self.client.trigger_cron(name)

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
