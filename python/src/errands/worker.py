"""The worker: one WebSocket to the server, jobs pushed over it, reports sent back.

Flow (docs/protocol.md, "Worker socket"): send ``hello`` with queues and capacity; the server
pushes ``job`` messages while we have free capacity; each job runs as a :class:`JobRun` and its
``complete``/``fail`` goes back through one writer task that batches whatever is pending into a
single frame. When the socket drops, running jobs are aborted (the server has already requeued
them) and the worker reconnects with backoff. ``stop()`` drains: ``capacity 0``, wait up to
``grace`` seconds for running jobs, then report the rest ``interrupted`` (the server queues them
again without counting the attempt, up to a cap) and abort them, close.

Liveness: the server pings every few seconds and takes a worker silent for longer than its
silence timeout for dead (12 s by default). The read loop answers those pings itself and never
waits on a job: async tasks run as tasks of their own, plain functions in the thread pool, so
a busy worker stays connected. Only blocking the event loop (sync work inside ``async def``)
silences it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import socket
import threading
from collections.abc import Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import aiohttp

from . import __version__
from .context import Context, State
from .errors import ApiError, ConnectionFailed, ServerError, Unauthorized
from .runner import Abort, Delivery, JobRun, Message, fail_message
from .spec import dumps

if TYPE_CHECKING:
    from .app import App, Hook

__all__ = ["Worker"]

# The socket type as aiohttp's stubs spell it (generic in whether text frames are decoded).
_WebSocket = aiohttp.ClientWebSocketResponse[bool]

log = logging.getLogger("errands.worker")

_RECONNECT_FIRST = 0.1
_RECONNECT_MAX = 5.0

# Payload of the ping that follows `capacity 0` when draining (see Worker._quiesce).
_BARRIER = b"errands-drain"


class Worker:
    """Runs an app's tasks for jobs the server pushes.

    Args:
        app: the app whose tasks to run (and whose URL/token to use).
        concurrency: jobs at once; also the size of the thread pool for plain ``def`` tasks.
        queues: queue names in strict priority order. Default: the queues of the app's tasks,
            in registration order.
        weights: ``{"queue": weight}`` to pick among ``queues`` by weight instead of strictly.
        name: shown by the server; default ``host:pid``.
        grace: seconds running jobs get to finish after :meth:`stop` before they are aborted.
        heartbeat: seconds between our WebSocket pings, to notice a vanished server.

    Use :meth:`run` (until :meth:`stop`), or ``errands-worker module:app`` from a shell.
    """

    def __init__(
        self,
        app: App,
        *,
        concurrency: int = 10,
        queues: Iterable[str] | None = None,
        weights: Mapping[str, int] | None = None,
        name: str | None = None,
        grace: float = 30.0,
        heartbeat: float = 20.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.app = app
        self.concurrency = concurrency
        self.queues = list(queues) if queues is not None else app.queues()
        if not self.queues:
            raise ValueError("a worker needs at least one queue")
        self.weights = dict(weights) if weights else None
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.grace = grace
        self.heartbeat = heartbeat
        self.state = State()
        #: The id the server gave this connection (``None`` while disconnected).
        self.worker_id: str | None = None

        self._running: dict[str, JobRun] = {}
        self._outbox: list[str] = []
        self._stopping = False
        self._forced = False
        self._ws: _WebSocket | None = None
        # asyncio primitives bind to a loop on first use (Python 3.10+), i.e. the one in run().
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._executor: ThreadPoolExecutor | None = None
        self._wake = asyncio.Event()  # the outbox has something to send
        self._idle = asyncio.Event()  # no job is running
        self._idle.set()
        self._stopped = asyncio.Event()  # the drain is over
        self._connected = asyncio.Event()  # welcomed on the current connection
        self._send_lock = asyncio.Lock()
        self._drain_task: asyncio.Task[None] | None = None
        self._barrier = asyncio.Event()  # the server will push no more jobs (see _quiesce)

    # -- public control -----------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Jobs running right now."""
        return len(self._running)

    @property
    def connected(self) -> bool:
        """True while the server has welcomed this worker on a live socket."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once the worker has said hello to the server (for tests and health checks)."""
        await self._connected.wait()

    def stop(self, *, graceful: bool = True) -> None:
        """Stop taking jobs and shut down; call again (or ``graceful=False``) to skip the grace.

        Safe to call from a signal handler on the worker's loop, or from another thread.
        """
        loop = self._loop
        if loop is None:
            self._stopping = True  # not started yet: run() will return at once
            return
        if threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(lambda: self.stop(graceful=graceful))
            return
        if self._stopping or not graceful:
            if not self._forced:
                log.warning("stopping now: aborting %d running job(s)", len(self._running))
            self._forced = True
            self._stopping = True
            self._barrier.set()  # no waiting for the server either
            self._interrupt_all()
            if self._drain_task is None:
                self._drain_task = loop.create_task(self._drain())
            return
        self._stopping = True
        log.info(
            "shutting down: no new jobs, %d running get up to %s s", len(self._running), self.grace
        )
        self._drain_task = loop.create_task(self._drain())

    async def run(self) -> None:
        """Run startup hooks, declare cron schedules, serve jobs until :meth:`stop`, shut down.

        The app's cron schedules are upserted after the startup hooks and before the socket
        connects; shutdown hooks run at the end whatever happened.

        Raises:
            Unauthorized: the server refused the token (retrying would not help).
            Rejected: the server refused one of the app's cron schedules (``field`` and
                ``message`` say why); the worker never connects.
        """
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="errands-task")
        try:
            await self._run_hooks(self.app.startup_hooks, "startup")
            if not self._stopping:
                await self._declare_crons()
            if not self._stopping:
                await self._serve()
        finally:
            self._abort_all()
            if self._drain_task is not None:
                await asyncio.shield(self._drain_task)
            # Sync tasks that were aborted may still be running in their threads; don't wait.
            self._executor.shutdown(wait=False, cancel_futures=True)
            await self._run_hooks(list(reversed(self.app.shutdown_hooks)), "shutdown")
            log.info("worker stopped")

    # -- cron schedules -------------------------------------------------------------------------

    async def _declare_crons(self) -> None:
        """Upsert the app's cron schedules, retrying while the server is unreachable or failing.

        Re-declaring keeps a schedule's next fire time and its paused state (the server's
        semantics), so every worker of a fleet can do it at every start. A refusal (bad
        expression, time zone, job) raises: retrying would not help, and a worker whose
        schedules are wrong should not look healthy.
        """
        pending = list(self.app.crons.items())
        failures = 0
        while pending and not self._stopping:
            name, spec = pending[0]
            try:
                await self.app.client.put_cron(name, spec)
            except (ConnectionFailed, ServerError) as exc:
                if failures == 0:
                    log.warning("cannot declare cron schedule %r: %s; retrying", name, exc)
                failures += 1
                await self._back_off(failures)
                continue
            except Unauthorized:
                raise
            except ApiError as exc:
                raise type(exc)(
                    exc.status, exc.code, f"cron schedule {name!r}: {exc.message}", exc.field
                ) from exc
            log.info("declared cron schedule %r: %s (%s)", name, spec.schedule, spec.tz)
            pending.pop(0)
            failures = 0

    # -- connection ---------------------------------------------------------------------------

    def _ws_url(self) -> str:
        return self.app.client.transport.ws_url("/v1/worker")

    async def _serve(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                welcomed = await self._until_stopped(self._connection())
            except Unauthorized:
                raise
            except (aiohttp.ClientError, OSError, ConnectionFailed, asyncio.TimeoutError) as exc:
                welcomed = False
                if failures == 0:
                    log.warning("cannot reach errands server at %s: %s", self._ws_url(), exc)
            self._abort_all()  # the server requeues whatever this connection held
            if self._stopping:
                break
            failures = 0 if welcomed else failures + 1
            await self._back_off(failures, spread=True)

    async def _back_off(self, failures: int, *, spread: bool = False) -> None:
        """Wait before the next try after ``failures`` failed ones (doubling, capped), or until
        :meth:`stop`. ``spread`` takes a random part off, so a fleet's retries fall apart."""
        delay = min(_RECONNECT_MAX, _RECONNECT_FIRST * 2 ** min(failures, 10))
        if spread:
            delay *= random.uniform(0.5, 1.0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), delay)

    async def _until_stopped(self, coro: Coroutine[Any, Any, bool]) -> bool:
        """Run a connection; once the drain is over, give it a moment to close, then cancel it.

        Covers a stop that lands while connecting, before there is a socket to close.
        """
        loop = asyncio.get_running_loop()
        conn = loop.create_task(coro)
        stopped = loop.create_task(self._stopped.wait())
        try:
            await asyncio.wait({conn, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not conn.done():
                await asyncio.wait({conn}, timeout=1.0)
        finally:
            stopped.cancel()
            if not conn.done():
                conn.cancel()
                await asyncio.gather(conn, return_exceptions=True)
        return False if conn.cancelled() else conn.result()

    async def _connection(self) -> bool:
        """One connection's life; returns whether the server welcomed us."""
        transport = self.app.client.transport
        try:
            # autoping off: pongs come to the read loop, which needs them for the drain barrier
            # (see _quiesce); it answers the server's pings itself.
            ws = await transport.websocket(
                "/v1/worker",
                heartbeat=self.heartbeat,
                autoping=False,
                max_msg_size=64 * 1024 * 1024,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise Unauthorized(401, "unauthorized", "the server refused the token") from exc
            raise
        welcomed = False
        self._ws = ws
        self._outbox.clear()  # reports for the previous connection's leases are void
        writer = asyncio.get_running_loop().create_task(self._write_loop(ws))
        try:
            await ws.send_str(dumps(self._hello()))
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    if self._on_frame(frame.data):
                        welcomed = True
                        self._connected.set()
                        log.info(
                            "connected to %s as %s, queues %s, capacity %d",
                            transport.url,
                            self.worker_id,
                            ",".join(self.queues),
                            self.concurrency,
                        )
                elif frame.type == aiohttp.WSMsgType.PING:
                    await ws.pong(frame.data)
                elif frame.type == aiohttp.WSMsgType.PONG:
                    if frame.data == _BARRIER:
                        self._barrier.set()
                elif frame.type == aiohttp.WSMsgType.ERROR:
                    log.warning("worker socket error: %s", ws.exception())
                    break
            if not self._stopping:
                log.warning(
                    "connection to the server closed (code %s); reconnecting", ws.close_code
                )
        finally:
            self._ws = None
            self.worker_id = None
            self._connected.clear()
            writer.cancel()
            await ws.close()
        return welcomed

    def _hello(self) -> Message:
        hello: Message = {
            "type": "hello",
            "queues": self.queues,
            "capacity": 0 if self._stopping else self.concurrency,
            "name": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "sdk": "errands-python",
            "version": __version__,
        }
        if self.weights:
            hello["weights"] = self.weights
        return hello

    # -- outgoing -----------------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        """Queue a message for the server; callable from any thread.

        Serialising here means a bad ``ctx.progress(data=...)`` raises in the task that made it.
        """
        text = dumps(msg)
        if threading.get_ident() == self._loop_thread:
            self._push(text)
        elif self._loop is not None:
            # A sync task's thread may outlive the worker's loop (it cannot be interrupted).
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._push, text)

    def _push(self, text: str) -> None:
        self._outbox.append(text)
        self._wake.set()

    async def _write_loop(self, ws: _WebSocket) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._flush(ws)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("worker socket write failed: %s", exc)
            await ws.close()

    async def _flush(self, ws: _WebSocket) -> None:
        """Send everything queued as one frame (an array when there is more than one)."""
        async with self._send_lock:
            if not self._outbox or ws.closed:
                return
            batch, self._outbox = self._outbox, []
            log.debug("-> %d message(s): %.500s", len(batch), batch[0])
            await ws.send_str(batch[0] if len(batch) == 1 else "[" + ",".join(batch) + "]")

    # -- incoming -----------------------------------------------------------------------------

    def _on_frame(self, data: str) -> bool:
        """Handle one text frame; returns True when it held our ``welcome``."""
        log.debug("<- %.500s", data)
        try:
            parsed = json.loads(data)
        except ValueError:
            log.warning("ignoring a frame that is not JSON: %.200s", data)
            return False
        welcomed = False
        for msg in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(msg, dict):
                log.warning("ignoring a message that is not an object: %.200r", msg)
                continue
            kind = msg.get("type")
            if kind == "job":
                self._on_job(msg)
            elif kind == "cancel":
                run = self._running.get(str(msg.get("id")))
                if run is not None:
                    log.info("job %s cancelled by the server (%s)", run.id, msg.get("reason"))
                    run.abort(Abort.SERVER)
            elif kind == "welcome":
                self.worker_id = msg.get("worker_id")
                welcomed = True
            elif kind == "error":
                # Usually a late report for a job that timed out or was cancelled meanwhile.
                log.info("server: %s (job %s)", msg.get("message"), msg.get("id"))
            else:
                log.debug("ignoring unknown message type %r", kind)
        return welcomed

    def _on_job(self, msg: Message) -> None:
        assert self._executor is not None
        try:
            delivery = Delivery.from_json(msg)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("malformed job message %.300r: %s", msg, exc)
            if "id" in msg:
                self._send(fail_message(str(msg["id"]), "BadDelivery", f"malformed job: {exc}"))
            return
        if delivery.id in self._running:
            log.warning("job %s delivered again while running; ignoring the copy", delivery.id)
            return
        task = self.app.tasks.get(delivery.kind)
        timeout = delivery.timeout
        if timeout is None and task is not None:
            timeout = task.timeout
        ctx = Context(
            job_id=delivery.id,
            kind=delivery.kind,
            queue=delivery.queue,
            attempt=delivery.attempt,
            max_attempts=delivery.max_attempts,
            timeout=timeout,
            deadline=delivery.deadline,
            state=self.state,
            app=self.app,
            _send=self._send,
            headers=delivery.headers,
        )
        self._idle.clear()
        self._running[delivery.id] = JobRun(
            delivery,
            task,
            ctx,
            executor=self._executor,
            report=self._send,
            done=self._job_done,
            known=lambda: list(self.app.tasks),
        )

    def _job_done(self, run: JobRun) -> None:
        if self._running.get(run.id) is run:
            del self._running[run.id]
        if not self._running:
            self._idle.set()

    def _abort_all(self) -> None:
        for run in list(self._running.values()):
            run.abort(Abort.SHUTDOWN)

    def _interrupt_all(self) -> None:
        """Stop every running job and tell the server each was interrupted (not failed), so it
        queues them again without counting the attempt. A job whose attempt already ended has
        its report queued instead; it is left alone."""
        for run in list(self._running.values()):
            if not run.task.done():
                self._send({"type": "interrupted", "id": run.id})
                run.abort(Abort.SHUTDOWN)

    # -- shutdown -----------------------------------------------------------------------------

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        try:
            ws = self._ws
            if ws is not None and not ws.closed and not self._forced:
                await self._quiesce(ws, deadline)
            while True:
                try:
                    await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    log.warning(
                        "grace period of %s s is over: giving %d unfinished job(s) back to the "
                        "server (interrupted: the attempt is not counted)",
                        self.grace,
                        len(self._running),
                    )
                    self._interrupt_all()
                    await self._idle.wait()
                ws = self._ws
                if ws is None or ws.closed:
                    break
                # After the barrier no job can arrive any more. Without it (no pong within the
                # grace period), sending the last reports yields to the reader, and a job that
                # lands meanwhile is waited for too.
                await self._flush(ws)
                if self._idle.is_set():
                    await ws.close()
                    break
        except Exception as exc:
            log.debug("error while draining: %s", exc)
        finally:
            self._stopped.set()

    async def _quiesce(self, ws: _WebSocket, deadline: float) -> None:
        """Tell the server ``capacity 0`` and wait until no job it leased us can still arrive.

        Jobs the server pushed before it read ``capacity 0`` may still be on the wire, and must
        run here like any other (closing the socket on them would cost them an attempt, failed
        as ``WorkerLost``). The protocol has no reply to ``capacity``, so a WebSocket ping goes
        right behind it: the server reads its frames in order, handles ``capacity 0`` before
        it reads the ping, and pushes no job after that; its pong is written after every job it
        pushed before. When our read loop sees the pong, every job leased to us has been read
        and is running (or done), so "nothing running" then really means the socket can close.
        If no pong comes within the grace period, _drain falls back to watching for late jobs.
        """
        self._barrier.clear()
        self._send({"type": "capacity", "capacity": 0})
        try:
            await self._flush(ws)  # capacity 0 must be on the wire before the ping
            await ws.ping(_BARRIER)
        except Exception as exc:  # the socket is going; the read loop notices and cleans up
            log.debug("could not send capacity 0: %s", exc)
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(self._barrier.wait(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            log.warning("the server did not confirm capacity 0 within the grace period")

    async def _run_hooks(self, hooks: list[Hook], what: str) -> None:
        for hook in hooks:
            try:
                result = hook(self.state)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                if what == "startup":
                    raise  # a worker without its resources must not take jobs
                log.exception("%s hook %r failed", what, hook)
