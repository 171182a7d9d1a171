"""Test helpers: a real errands server per test, and an in-process worker.

``errands_server`` (a pytest fixture, registered automatically through the ``pytest11`` entry
point) starts ``errands serve --memory`` on a free port and points ``ERRANDS_URL`` at it, so an
``App()`` created at import time talks to it. :func:`run_server` is the same as an async context
manager, for setups of your own; :func:`run_worker` runs a :class:`Worker` on the current loop.

The server binary comes from ``$ERRANDS_BIN``, else the ``errands`` the wheel installed next to
this environment's Python, else ``errands`` on ``PATH`` (see :func:`find_binary`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .worker import Worker

if TYPE_CHECKING:
    from .app import App

__all__ = ["ServerHandle", "find_binary", "run_server", "run_worker", "server"]

_NOT_FOUND = (
    "cannot find the errands server binary `errands`: install the package from its wheel or "
    "source (`pip install ./python` in the errands repository puts the server next to this "
    "package), or `cargo install --path crates/errands`, or set ERRANDS_BIN to its path"
)


def _installed_alongside() -> list[Path]:
    """Where an installed wheel put the server: this environment's scripts directory.

    That is the venv's ``bin/`` (``Scripts\\`` on Windows), which is on ``PATH`` only while the
    venv is activated; ``.venv/bin/pytest`` run directly still finds it here.
    """
    name = "errands.exe" if os.name == "nt" else "errands"
    folders = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    return [folder / name for folder in dict.fromkeys(folders)]


def find_binary() -> str:
    """Locate the ``errands`` server binary.

    In order: ``$ERRANDS_BIN``; the ``errands`` installed with this package (next to the
    environment's Python); ``errands`` on ``PATH``. Raises :class:`RuntimeError` naming the
    ways to get one when none is found.
    """
    configured = os.environ.get("ERRANDS_BIN")
    if configured:
        if not os.access(configured, os.X_OK):
            raise RuntimeError(f"ERRANDS_BIN={configured!r} is not an executable file")
        return configured
    for candidate in _installed_alongside():
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("errands")
    if on_path:
        return on_path
    raise RuntimeError(_NOT_FOUND)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerHandle:
    """A running test server.

    Attributes:
        url: base URL, e.g. ``http://127.0.0.1:41234``.
        token: the token it requires, if started with one.
        process: the server process.
        log_path: file holding the server's stdout and stderr.
    """

    url: str
    token: str | None
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: Any = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point a worker subprocess at this server."""
        env = {"ERRANDS_URL": self.url}
        if self.token:
            env["ERRANDS_TOKEN"] = self.token
        return env

    def logs(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Terminate the server (then kill it if it lingers) and remove its log file."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def _start(
    binary: str, token: str | None, args: Sequence[str], timeout: float, port: int | None
) -> ServerHandle:
    env = dict(os.environ)
    env.pop("ERRANDS_TOKEN", None)  # the server reads it too; only --token decides here
    # The bound address is read from the server's text log, whatever format the user exports.
    env["ERRANDS_LOG_FORMAT"] = "text"
    # The line that names the bound address is logged at info level; keep it visible.
    env["RUST_LOG"] = f"{env['RUST_LOG']},errands::serve=info" if env.get("RUST_LOG") else "info"
    log = tempfile.NamedTemporaryFile(prefix="errands-server-", suffix=".log", delete=False)  # noqa: SIM115 - closed in stop()
    # Port 0 lets the system pick a free port, and the server logs which. Probing for a free
    # port here and passing it on would race with other servers starting at the same moment
    # (another test's server could take it, and answer our health check).
    cmd = [binary, "serve", "--memory", "--listen", f"127.0.0.1:{port or 0}", *args]
    if token:
        cmd += ["--token", token]
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    handle = ServerHandle("", token, proc, Path(log.name), log)
    deadline = time.monotonic() + timeout
    pause = 0.01
    while proc.poll() is None and time.monotonic() < deadline:
        url = _listening_url(handle.logs())
        if url is not None and _healthy(url):
            handle.url = url
            return handle
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    output = handle.logs()
    handle.stop()
    raise RuntimeError(
        f"errands server did not become healthy ({' '.join(cmd)}):\n{output[-4000:]}"
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LISTENING = re.compile(r"errands serving listen=(\S+)")


def _listening_url(log: str) -> str | None:
    """The server's base URL, once its log says where it listens."""
    found = _LISTENING.search(_ANSI.sub("", log))
    return f"http://{found.group(1)}" if found else None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
            status: int = resp.status
    except (urllib.error.URLError, OSError):
        return False
    return status == 200


@contextlib.contextmanager
def server(
    *,
    token: str | None = None,
    args: Sequence[str] = (),
    timeout: float = 30.0,
    port: int | None = None,
) -> Iterator[ServerHandle]:
    """Run ``errands serve --memory`` for the duration of the block (blocking).

    ``port`` defaults to a free one; give one to restart a server where a worker expects it.
    """
    handle = _start(find_binary(), token, args, timeout, port)
    try:
        yield handle
    finally:
        handle.stop()


@contextlib.asynccontextmanager
async def run_server(
    *,
    token: str | None = None,
    args: Sequence[str] = (),
    timeout: float = 30.0,
    port: int | None = None,
) -> AsyncIterator[ServerHandle]:
    """Async version of :func:`server`; starting and stopping happen off the event loop.

    ``async with run_server(token="s3cret") as srv: app = errands.App(srv.url, srv.token)``
    """
    binary = await asyncio.to_thread(find_binary)
    handle = await asyncio.to_thread(_start, binary, token, args, timeout, port)
    try:
        yield handle
    finally:
        await asyncio.to_thread(handle.stop)


@contextlib.asynccontextmanager
async def run_worker(app: App, **options: Any) -> AsyncIterator[Worker]:
    """Run a :class:`Worker` for ``app`` on the current loop while the block runs.

    Options are :class:`Worker`'s (``concurrency``, ``queues``, ``grace``, ...). The block starts
    once the worker is connected; on exit the worker drains and stops.
    """
    options.setdefault("grace", 5.0)
    worker = Worker(app, **options)
    runner = asyncio.get_running_loop().create_task(worker.run(), name="errands-test-worker")
    connected = asyncio.ensure_future(worker.wait_connected())
    try:
        await asyncio.wait({runner, connected}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()  # raises what stopped it (bad token, failing startup hook)
            raise RuntimeError("the worker stopped before connecting")
        yield worker
    finally:
        connected.cancel()
        worker.stop()
        await runner


def __getattr__(name: str) -> Any:
    # `from errands.testing import errands_server` works too, without importing pytest for
    # users of run_server() alone.
    if name == "errands_server":
        from .pytest_plugin import errands_server

        return errands_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
