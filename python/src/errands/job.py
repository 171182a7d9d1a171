"""The :class:`Job` handle returned by enqueue, and how following a job works.

Following a job (``job.events()``, ``job.result()``) uses the server's event stream
(``GET /v1/events?ids=<id>``) the way docs/protocol.md prescribes: subscribe first, then read the
job once, then act on events. Nothing is polled while the stream is up. ``result()`` polls only
when no stream can be opened at all (an older server, a proxy that refuses WebSockets).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from .errors import ConnectionFailed, ErrandsError, JobCancelled, JobFailed, ResultTimeout
from .events import JobEvent
from .models import JobInfo, JobState, Progress

if TYPE_CHECKING:
    from .client import Client
    from .payload import Shape

__all__ = ["Job", "JobEvents"]

R = TypeVar("R")

log = logging.getLogger("errands.job")

# Polling schedule, when no event stream can be opened: quick first looks for short jobs, then
# settle at 2 requests/s per waiter so many waiters do not hammer the server.
_POLL_FIRST = 0.01
_POLL_MAX = 0.5
_POLL_GROWTH = 1.5
_sleep = asyncio.sleep  # (tests replace it)

# An event stream that drops is re-opened (and the job re-read) up to this many times in a row
# before giving up: result() falls back to polling, events() raises ConnectionFailed.
_MAX_REOPENS = 3

# Each result() waiter holds one WebSocket. Past this many at once on one event loop, further
# waiters poll instead, so gathering thousands of results cannot exhaust file descriptors.
MAX_STREAMING_WAITERS = 256
_streaming_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int]
_streaming_waiters = weakref.WeakKeyDictionary()


class Job(Generic[R]):
    """A handle on one enqueued job.

    ``R`` is the task's return type, so ``await job.result()`` is typed when the job came from a
    typed task. The handle holds only the id and what it last saw of the job; it is cheap to
    create one from an id with :meth:`App.job`.
    """

    __slots__ = (
        "_attempt",
        "_client",
        "_info",
        "_progress",
        "_result_shape",
        "_state",
        "created",
        "id",
    )

    def __init__(
        self,
        client: Client,
        job_id: str,
        *,
        created: bool = True,
        info: JobInfo | None = None,
    ) -> None:
        self._client = client
        self.id = job_id
        #: False when a unique key matched and the server returned an existing job.
        self.created = created
        self._info: JobInfo | None = None
        self._state: JobState | None = None
        self._attempt: int | None = None
        self._progress: Progress | None = None
        # Rebuilds the result as the task's return type (a model), when the handle came from
        # a task whose function is annotated so.
        self._result_shape: Shape | None = None
        if info is not None:
            self._seen(info)

    def __repr__(self) -> str:
        state = f" {self._state}" if self._state else ""
        return f"<Job {self.id}{state}>"

    @property
    def info(self) -> JobInfo | None:
        """The last snapshot fetched by :meth:`status`, :meth:`result`, :meth:`events`, ...."""
        return self._info

    @property
    def state(self) -> JobState | None:
        """The latest state seen: from the last snapshot, or a later event of :meth:`events`."""
        return self._state

    @property
    def progress(self) -> Progress | None:
        """The latest progress seen: from the last snapshot, or a later event of :meth:`events`.

        Call :meth:`status` to refresh it once, or iterate :meth:`events` to follow it live.
        """
        return self._progress

    def _seen(self, info: JobInfo) -> None:
        self._info = info
        self._state = info.state
        self._attempt = info.attempt
        self._progress = info.progress

    def _news(self, event: JobEvent) -> bool:
        """Record an event; False when it tells nothing new (already seen in a snapshot)."""
        if event.type == "state":
            if (event.state, event.attempt) == (self._state, self._attempt):
                return False
            self._state = event.state
            self._attempt = event.attempt
        elif event.type == "progress":
            if event.progress == self._progress:
                return False
            self._progress = event.progress
        return True

    async def status(self) -> JobInfo:
        """Fetch the job now and return the snapshot (also kept as :attr:`info`)."""
        info = await self._client.get_job(self.id)
        self._seen(info)
        return info

    def events(self) -> JobEvents:
        """Follow the job live: its state changes and progress reports, until it finishes.

        ::

            async for event in job.events():
                if event.type == "progress":
                    print(event.progress.percent, event.progress.message)
            print(job.info.result)  # the final snapshot: result, errors, ...

        It subscribes to the server's events for this job first, then fetches the job (kept
        as :attr:`info`), so nothing is missed: the first events describe the job as fetched
        (a ``state`` event, and a ``progress`` one if it reported any; their ``seq`` is
        ``None``), then come the server's events as they happen. Events that tell nothing new
        (already in the snapshot) are skipped. The iteration ends with the event into
        completed, dead or cancelled, by which time :attr:`info` holds the final snapshot.
        :attr:`state` and :attr:`progress` follow the events.

        A dropped stream is re-opened and the job re-read, transparently. Leaving the loop early
        closes the subscription once the iterator is closed or collected; ``async with
        job.events() as events:`` closes it at the end of the block.

        Raises:
            NotFound: no such job.
            ConnectionFailed: the event stream cannot be opened, or keeps dropping.
        """
        return JobEvents(_follow(self, poll_without_stream=False))

    async def result(self, timeout: float | None = None) -> R:
        """Wait until the job finishes and return what the task returned.

        Waits on the server's event stream (see :meth:`events`); without one it re-fetches
        the job with a delay growing from 10 ms to 500 ms. ``timeout=0`` checks once.

        When the handle came from a task (``task.enqueue()``, ``task.job(id)``) whose function
        is annotated to return a pydantic model or dataclass, the result is rebuilt as one;
        otherwise it is the JSON value the task returned (as in :attr:`JobInfo.result`).

        Raises:
            JobFailed: the job is dead (carries the last error).
            JobCancelled: the job was cancelled.
            ResultTimeout: ``timeout`` seconds passed first; the job itself is not affected.
            InvalidPayload: the result does not fit the task's return annotation.
        """
        info = await _wait_for_finish(self, timeout)
        if info.state is JobState.COMPLETED:
            if self._result_shape is not None:
                return cast(R, self._result_shape.load(info.result, "result"))
            return cast(R, info.result)
        if info.state is JobState.CANCELLED:
            raise JobCancelled(info)
        raise JobFailed(info)

    async def cancel(self) -> JobInfo:
        """Cancel the job (a running one is aborted on its worker). 409 if already finished."""
        info = await self._client.cancel(self.id)
        self._seen(info)
        return info

    async def retry(self, *, reset_attempts: bool = True) -> JobInfo:
        """Queue a dead, cancelled or completed job again."""
        info = await self._client.retry(self.id, reset_attempts=reset_attempts)
        self._seen(info)
        return info

    async def delete(self) -> None:
        """Delete the job record (409 while it runs)."""
        await self._client.delete(self.id)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


class JobEvents:
    """What :meth:`Job.events` returns: an async iterator of :class:`JobEvent`, and an async
    context manager that closes the subscription when its block ends."""

    __slots__ = ("_events",)

    def __init__(self, events: AsyncGenerator[JobEvent, None]) -> None:
        self._events = events

    def __aiter__(self) -> JobEvents:
        return self

    async def __anext__(self) -> JobEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop following and close the subscription."""
        await self._events.aclose()

    async def __aenter__(self) -> JobEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _made_up(job: Job[Any], info: JobInfo, *, first: bool) -> list[JobEvent]:
    """Events describing the snapshot ``info``: all of it when ``first``, else what is news."""
    events = [JobEvent.state_of(info)]
    if info.progress is not None:
        events.append(JobEvent.progress_of(info))
    news = [e for e in events if job._news(e)]
    return events if first else news


async def _follow(job: Job[Any], *, poll_without_stream: bool) -> AsyncGenerator[JobEvent, None]:
    """The events of ``job`` until a fresh snapshot shows it finished (then ``job.info`` is it).

    ``poll_without_stream``: when no event stream can be opened, or it keeps dropping, poll
    instead of raising (the made-up events then describe each change the polling sees).
    """
    client = job._client
    reopens = 0
    first = True
    while True:
        stream = client.events(ids=[job.id])
        try:
            await stream.open()
        except ErrandsError as exc:
            if not poll_without_stream:
                raise
            log.debug("no event stream for job %s (%s); polling", job.id, exc)
            async for event in _poll(job, first=first):
                yield event
            return
        try:
            info = await client.get_job(job.id)  # subscribed first, so nothing slips between
            for event in _made_up(job, info, first=first):
                yield event
            first = False
            job._seen(info)
            if info.finished:
                return
            async for event in stream:
                if event.id != job.id or not job._news(event):
                    continue
                reopens = 0
                if event.finished:
                    info = await client.get_job(job.id)  # for the result and errors
                    if info.finished:
                        job._seen(info)
                        yield event
                        return
                    # Retried since (by someone else): report the finish, then where it is now.
                    yield event
                    for made_up in _made_up(job, info, first=False):
                        yield made_up
                    job._seen(info)
                    continue
                yield event
        except ConnectionFailed as exc:
            # The stream dropped (server restarting, subscriber cut off): subscribe again and
            # re-read the job. A get_job that fails on a dead server raises from the next round.
            reopens += 1
            if reopens > _MAX_REOPENS:
                if not poll_without_stream:
                    raise
                log.debug("event stream for job %s keeps dropping (%s); polling", job.id, exc)
                async for event in _poll(job, first=False):
                    yield event
                return
            log.debug("event stream for job %s dropped (%s); re-subscribing", job.id, exc)
        finally:
            await stream.close()


async def _poll(job: Job[Any], *, first: bool) -> AsyncGenerator[JobEvent, None]:
    """Re-fetch the job with a growing delay until it is finished; made-up events for changes."""
    delay = _POLL_FIRST
    while True:
        info = await job._client.get_job(job.id)
        for event in _made_up(job, info, first=first):
            yield event
        first = False
        job._seen(info)
        if info.finished:
            return
        await _sleep(delay)
        delay = min(delay * _POLL_GROWTH, _POLL_MAX)


async def _wait_for_finish(job: Job[Any], timeout: float | None) -> JobInfo:
    """Return the job's snapshot once it is completed, dead or cancelled.

    Raises:
        ResultTimeout: ``timeout`` seconds passed first.
    """
    if timeout is not None and timeout <= 0:
        info = await job.status()
        if info.finished:
            return info
        raise ResultTimeout(f"job {job.id} is {info.state} (timeout {timeout} s)")
    loop = asyncio.get_running_loop()
    streaming = _streaming_waiters.get(loop, 0) < MAX_STREAMING_WAITERS
    if streaming:
        _streaming_waiters[loop] = _streaming_waiters.get(loop, 0) + 1
    waiting = loop.create_task(_until_finished(job, streaming))
    try:
        done, _ = await asyncio.wait({waiting}, timeout=timeout)
    finally:
        if not waiting.done():
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        if streaming:
            _streaming_waiters[loop] -= 1
    if not done:
        state = job.state or "unfinished"
        raise ResultTimeout(f"job {job.id} still {state} after {timeout} s (it keeps running)")
    return waiting.result()


async def _until_finished(job: Job[Any], stream: bool) -> JobInfo:
    events = _follow(job, poll_without_stream=True) if stream else _poll(job, first=True)
    try:
        async for _ in events:
            pass
    finally:
        await events.aclose()
    assert job.info is not None  # _follow and _poll end on a finished snapshot
    return job.info
