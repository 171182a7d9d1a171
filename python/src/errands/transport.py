"""HTTP plumbing: aiohttp sessions per event loop, auth, and mapping errors to exceptions.

A session belongs to the loop it was created on. The same ``App`` is used from the application's
loop, from the sync facade's background loop, and (under pytest-asyncio) from a new loop per test,
so sessions are kept per loop instead of one per ``App``.

Each loop gets two: one for requests, whose pool of keep-alive connections is bounded, and one for
long-lived WebSockets (the worker socket, event streams). A WebSocket holds its connection for
as long as it is open, so sharing the request pool would let a few hundred ``job.result()``
waiters take every connection and leave none for the requests they make themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from typing import Any

import aiohttp

from .errors import ConnectionFailed, error_from_response

__all__ = ["DEFAULT_URL", "Transport"]

DEFAULT_URL = "http://127.0.0.1:7733"

# Keep-alive connections per loop for requests. aiohttp's default (100) is fine for waiting on
# one request at a time; concurrent enqueues (a gather of many) reuse these instead of queueing.
_POOL_SIZE = 100


class Transport:
    """Sends requests to one errands server.

    ``url``/``token`` left as ``None`` are read from ``ERRANDS_URL``/``ERRANDS_TOKEN`` each time a
    request is made, so an ``App()`` created at import time follows the environment a test fixture
    sets up later.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0
    ) -> None:
        self._url = url
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]
        self._sessions = weakref.WeakKeyDictionary()
        self._socket_sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ]
        self._socket_sessions = weakref.WeakKeyDictionary()

    def configure(self, *, url: str | None = None, token: str | None = None) -> None:
        """Override the URL and/or token (``None`` keeps the current setting)."""
        if url is not None:
            self._url = url
        if token is not None:
            self._token = token

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return (self._url or os.environ.get("ERRANDS_URL") or DEFAULT_URL).rstrip("/")

    @property
    def token(self) -> str | None:
        """The bearer token, if any."""
        return self._token or os.environ.get("ERRANDS_TOKEN") or None

    def headers(self) -> dict[str, str]:
        """Headers every request carries (auth)."""
        token = self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def session(self) -> aiohttp.ClientSession:
        """The session for requests on the running loop, created on first use."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=_POOL_SIZE)
            session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
            self._sessions[loop] = session
        return session

    def ws_url(self, path: str) -> str:
        """The ``ws://`` / ``wss://`` URL of a route."""
        base = self.url
        if base.startswith("https://"):
            base = "wss://" + base[len("https://") :]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://") :]
        return base + path

    async def websocket(
        self,
        path: str,
        *,
        params: dict[str, str] | None = None,
        heartbeat: float | None = None,
        autoping: bool = True,
        max_msg_size: int = 4 * 1024 * 1024,
    ) -> aiohttp.ClientWebSocketResponse[bool]:
        """Open a WebSocket to a route, with the token; aiohttp's errors propagate as they are.

        Sockets use their own session (see the module's docstring). The handshake must finish
        within the request timeout; the open socket has none (use ``heartbeat`` to notice a
        vanished server).
        """
        loop = asyncio.get_running_loop()
        session = self._socket_sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=0)  # one connection per socket, however many
            session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
            self._socket_sessions[loop] = session
        return await session.ws_connect(
            self.ws_url(path),
            params=params,
            headers=self.headers(),
            heartbeat=heartbeat,
            autoping=autoping,
            max_msg_size=max_msg_size,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON reply (``None`` for an empty body).

        ``body`` is already-serialised JSON: callers serialise first so that unserialisable
        arguments fail before any I/O.

        Raises:
            ApiError subclasses for error statuses, ConnectionFailed when the server is
            unreachable or does not answer in time.
        """
        url = self.url + path
        headers = self.headers()
        data = None
        # Without a body, aiohttp would label the empty payload application/octet-stream,
        # which the server refuses (a form's content type is how a cross-site page posts).
        skip: tuple[str, ...] = ("Content-Type",)
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = body.encode()
            skip = ()
        try:
            async with self.session().request(
                method, url, data=data, params=params, headers=headers, skip_auto_headers=skip
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise ConnectionFailed(
                f"cannot reach errands server at {self.url}: {exc or type(exc).__name__}"
            ) from exc
        decoded: Any = None
        if raw:
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = raw.decode(errors="replace")
        if status >= 400:
            raise error_from_response(status, decoded)
        return decoded

    async def close(self) -> None:
        """Close the session of the running loop (others close with their loops' owners)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for sessions in (self._sessions, self._socket_sessions):
            session = sessions.pop(loop, None)
            if session is not None:
                await session.close()
