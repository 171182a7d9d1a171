"""Blocking facade over the async client, for scripts, Django views and other sync code.

Calls run on one private event loop in a daemon thread, shared by every caller of this app.
That keeps the HTTP connection pool warm across calls (a fresh loop per call would reconnect
every time) and works from any thread: one with no loop, or even one whose loop is running
(the call then blocks that loop, as any blocking call would).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .models import JobInfo
from .spec import JobSpec

if TYPE_CHECKING:
    from .app import App
    from .job import Job
    from .task import Enqueuer

__all__ = ["SyncClient", "SyncJob"]

T = TypeVar("T")
R = TypeVar("R")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="errands-sync", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("app.sync cannot be used from inside its own event loop")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class SyncClient:
    """Blocking versions of the producer API: ``app.sync.enqueue("kind", ...)``.

    Every method waits for the server's answer and raises the same exceptions as the async API.
    """

    def __init__(self, app: App) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        with self._lock:
            # After a fork (gunicorn, multiprocessing) the thread is gone: start a new one.
            if self._runner is None or self._runner.pid != os.getpid():
                self._runner = _LoopThread()
                atexit.register(self.close)
            runner = self._runner
        return runner.run(coro, timeout)

    def _enqueuer(self, task: str | Enqueuer[..., Any]) -> Enqueuer[..., Any]:
        return self._app.kind(task) if isinstance(task, str) else task

    def enqueue(self, task: str | Enqueuer[..., Any], /, *args: Any, **kwargs: Any) -> SyncJob[Any]:
        """Enqueue one job of a task (object, or name) and return a blocking handle.

        ``app.sync.enqueue("compile_source", "src-1")``,
        ``app.sync.enqueue(compile_source.options(delay=10), "src-1")``.
        """
        enqueuer = self._enqueuer(task)
        spec = enqueuer.spec(*args, **kwargs)  # serialisation errors raise here, in the caller
        return SyncJob(self, enqueuer._typed(self._run(self._app.client.enqueue(spec))))

    def enqueue_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> list[SyncJob[Any]]:
        """Enqueue many jobs in one batch request; see :meth:`App.enqueue_many`."""
        items = list(jobs)
        return [SyncJob(self, j) for j in self._run(self._app.client.enqueue_many(items))]

    def get_job(self, job_id: str) -> JobInfo:
        """Fetch a job's snapshot."""
        return self._run(self._app.client.get_job(job_id))

    def job(self, job_id: str) -> SyncJob[Any]:
        """A blocking handle on an existing job."""
        return SyncJob(self, self._app.client.job(job_id))

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job."""
        return self._run(self._app.client.cancel(job_id))

    def retry(self, job_id: str, *, reset_attempts: bool = True) -> JobInfo:
        """Queue a dead, cancelled or completed job again."""
        return self._run(self._app.client.retry(job_id, reset_attempts=reset_attempts))

    def close(self) -> None:
        """Close the HTTP session and stop the background loop (also done at exit)."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is None or runner.pid != os.getpid():
            return
        with contextlib.suppress(Exception):  # best effort at shutdown
            runner.run(self._app.client.close(), 5)
        runner.stop()


class SyncJob(Generic[R]):
    """Blocking counterpart of :class:`Job`."""

    __slots__ = ("_job", "_sync")

    def __init__(self, sync: SyncClient, job: Job[R]) -> None:
        self._sync = sync
        self._job = job

    @property
    def id(self) -> str:
        """The job id."""
        return self._job.id

    @property
    def created(self) -> bool:
        """False when a unique key matched an existing job."""
        return self._job.created

    def __repr__(self) -> str:
        return repr(self._job)

    def status(self) -> JobInfo:
        """Fetch the job now."""
        return self._sync._run(self._job.status())

    def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish; see :meth:`Job.result`."""
        return self._sync._run(self._job.result(timeout))

    def cancel(self) -> JobInfo:
        """Cancel the job."""
        return self._sync._run(self._job.cancel())

    def retry(self, *, reset_attempts: bool = True) -> JobInfo:
        """Queue the job again."""
        return self._sync._run(self._job.retry(reset_attempts=reset_attempts))
