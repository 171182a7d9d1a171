"""What a running task sees: its job's identity, shared worker state, and progress reporting."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App

__all__ = ["Context", "State"]


class State:
    """Attributes shared by every job of a worker process (a DB pool, an HTTP client, ...).

    Set them in an ``@app.on_startup`` hook (``state.db = await connect()``) and read them in tasks
    as ``ctx.state.db``. Reading one that was never set raises ``AttributeError`` naming it.
    """

    def __getattr__(self, name: str) -> Any:
        # Only called for missing attributes; typed Any so `ctx.state.db` type-checks.
        raise AttributeError(f"worker state has no {name!r}; set it in an @app.on_startup hook")

    def __repr__(self) -> str:
        return f"State({', '.join(sorted(vars(self)))})"


class _Sent:
    """Awaitable returned by :meth:`Context.progress`.

    The report is queued when ``progress`` is called, so a plain ``def`` task can call it
    without awaiting, while ``await ctx.progress(...)`` still reads naturally in ``async def``.
    """

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


_SENT = _Sent()


@dataclass(slots=True)
class Context:
    """Passed as the first argument of every task.

    Attributes:
        job_id: the job's id.
        kind: the task name the job was enqueued under.
        queue: the queue it came from.
        attempt: 1 on the first run, 2 on the first retry, ...
        max_attempts: attempts the job is allowed.
        timeout: seconds this attempt may run (``None``: no limit).
        deadline: when the server will time this attempt out, if it has a timeout.
        state: the worker's shared :class:`State`.
        app: the :class:`App`, e.g. to enqueue follow-up jobs.
        headers: the headers the job was enqueued with (trace context, your own).
    """

    job_id: str
    kind: str
    queue: str
    attempt: int
    max_attempts: int
    timeout: float | None
    deadline: datetime | None
    state: State
    app: App
    _send: Callable[[dict[str, Any]], None] = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now sends the job to ``dead``."""
        return self.attempt >= self.max_attempts

    def progress(
        self, percent: float | None = None, message: str | None = None, data: Any = None
    ) -> _Sent:
        """Report progress (``percent`` 0-100, a short ``message``, any JSON ``data``).

        Safe to call from a sync task's thread. ``await ctx.progress(30, "extracting")`` in async
        tasks; in sync tasks plain ``ctx.progress(30, "extracting")`` is enough.
        """
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"progress percent must be within 0..100, got {percent}")
        msg: dict[str, Any] = {"type": "progress", "id": self.job_id}
        if percent is not None:
            msg["percent"] = percent
        if message is not None:
            msg["message"] = message
        if data is not None:
            msg["data"] = data
        self._send(msg)
        return _SENT
