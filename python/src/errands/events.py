"""Live job events: ``GET /v1/events`` over a WebSocket (docs/protocol.md, "GET /v1/events").

:class:`EventStream` is the raw subscription (``app.events(queue=...)``); ``Job.events()`` and
``Job.result()`` build on it to follow one job.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp

from .errors import ConnectionFailed, Unauthorized, error_from_response
from .models import FINISHED_STATES, JobInfo, JobState, Progress, parse_time

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["EventStream", "JobEvent"]

log = logging.getLogger("errands.events")

# Seconds between our pings on an event socket, to notice a server that vanished while a
# subscriber waits (the server does not ping subscribers itself).
_HEARTBEAT = 20.0
_SKIPPED = (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event about a job.

    Attributes:
        type: ``"state"`` (the job entered ``state``) or ``"progress"`` (it reported
            ``progress``). Other values may appear as the server grows; skip what you do not know.
        id, queue, kind: which job.
        state, attempt: for ``state`` events, the new state and the attempt count.
        progress: for ``progress`` events, what the job reported.
        seq: the server's event number (rises by one per event per server process; a filtered
            stream has gaps). ``None`` for events :meth:`Job.events` makes up from the job as it
            fetched it on subscribing.
        at: when the server published the event (``None`` for made-up ones).
        raw: the event's JSON object as received.
    """

    type: str
    id: str
    queue: str = ""
    kind: str = ""
    state: JobState | None = None
    attempt: int | None = None
    progress: Progress | None = None
    seq: int | None = None
    at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """True for a ``state`` event into completed, dead or cancelled."""
        return self.type == "state" and self.state in FINISHED_STATES

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobEvent:
        """Build from the server's JSON; tolerant of fields it does not know."""
        state: JobState | None = None
        if raw.get("state") is not None:
            try:
                state = JobState(raw["state"])
            except ValueError:
                state = None
        attempt = raw.get("attempt")
        seq = raw.get("seq")
        return cls(
            type=str(raw.get("type", "")),
            id=str(raw.get("id", "")),
            queue=str(raw.get("queue", "")),
            kind=str(raw.get("kind", "")),
            state=state,
            attempt=int(attempt) if isinstance(attempt, int) else None,
            progress=Progress.from_json(raw.get("progress")),
            seq=int(seq) if isinstance(seq, int) else None,
            at=parse_time(raw["at"]) if isinstance(raw.get("at"), str) else None,
            raw=raw,
        )

    @classmethod
    def state_of(cls, info: JobInfo) -> JobEvent:
        """A made-up ``state`` event describing a snapshot (``seq`` and ``at`` are ``None``)."""
        return cls("state", info.id, info.queue, info.kind, info.state, info.attempt)

    @classmethod
    def progress_of(cls, info: JobInfo) -> JobEvent:
        """A made-up ``progress`` event carrying a snapshot's progress."""
        return cls("progress", info.id, info.queue, info.kind, progress=info.progress)


class EventStream:
    """A subscription to the server's live events, filtered by job ids, queue and/or kind.

    ::

        async with app.events(queue="default") as events:
            async for event in events:
                print(event.seq, event.id, event.type, event.state or event.progress)

    The subscription starts when the ``async with`` block is entered (or :meth:`open` returns):
    read the state you care about *after* that, and no change in between is missed. Iterating
    never ends on its own; it raises :class:`ConnectionFailed` if the server closes the stream
    (it is shutting down, or this subscriber fell more than 16,384 events behind) or the
    connection drops. Leaving the block (or :meth:`close`) ends it.

    Raises (on opening): :class:`Unauthorized` (token refused), :class:`Rejected` (a bad job id
    in ``ids``), :class:`ConnectionFailed` (server unreachable, or it did not accept a
    WebSocket), :class:`ApiError` for other error statuses.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        ids: Iterable[str] | None = None,
        queue: str | None = None,
        kind: str | None = None,
    ) -> None:
        self._transport = transport
        self._params: dict[str, str] = {}
        if ids is not None:
            self._params["ids"] = ",".join(ids)
        if queue is not None:
            self._params["queue"] = queue
        if kind is not None:
            self._params["kind"] = kind
        self._ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self._closed = False

    async def open(self) -> None:
        """Subscribe (open the WebSocket). Events published from now on are delivered."""
        if self._ws is not None:
            return
        try:
            self._ws = await self._transport.websocket(
                "/v1/events", params=self._params, heartbeat=_HEARTBEAT
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise Unauthorized(401, "unauthorized", "the server refused the token") from exc
            if exc.status in (400, 404, 413) or exc.status >= 500:
                raise error_from_response(exc.status, exc.message) from exc
            # Anything else (200 from a proxy that dropped the upgrade, ...): no WebSocket here.
            raise ConnectionFailed(
                f"no event stream at {self._transport.url}: {exc.status} {exc.message}"
            ) from exc
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise ConnectionFailed(
                f"cannot reach errands server at {self._transport.url}: {exc or type(exc).__name__}"
            ) from exc

    async def close(self) -> None:
        """End the subscription (iteration then stops)."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def __aenter__(self) -> EventStream:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> JobEvent:
        while True:
            ws = self._ws
            if ws is None:
                if self._closed:
                    raise StopAsyncIteration
                raise RuntimeError("open the EventStream first (async with app.events() as s)")
            try:
                msg = await ws.receive()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                raise ConnectionFailed(f"event stream lost: {exc or type(exc).__name__}") from exc
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    raw = json.loads(msg.data)
                except ValueError:
                    log.warning("ignoring an event that is not JSON: %.200s", msg.data)
                    continue
                if isinstance(raw, dict):
                    return JobEvent.from_json(raw)
                continue
            if msg.type in _SKIPPED:
                continue
            if self._closed:
                raise StopAsyncIteration
            reason = ws.close_code
            extra = msg.extra if msg.type == aiohttp.WSMsgType.CLOSE and msg.extra else ""
            error = ws.exception()
            raise ConnectionFailed(
                "the server closed the event stream"
                + (f" (code {reason}{': ' + extra if extra else ''})" if reason else "")
                + (f": {error}" if error else "")
            )
