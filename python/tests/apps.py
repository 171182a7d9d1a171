"""Tasks for worker subprocesses: `python -m errands worker tests.apps:app`.

The App takes its URL from ERRANDS_URL, which the tests set to their server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import errands

app = errands.App()
log = logging.getLogger("tests.apps")


@app.task
def wait_for_file(ctx: errands.Context, path: str) -> str:
    """Stays in flight until the test creates ``path`` (a gate the test controls).

    A plain function, so it runs in the worker's thread pool and may block.
    """
    Path(f"{path}.{ctx.job_id}.started").touch()  # tells the test this worker has it
    gate = Path(path)
    while not gate.exists():
        time.sleep(0.01)
    return f"released on attempt {ctx.attempt}"


@app.task
async def hang(ctx: errands.Context, marker: str | None = None) -> None:
    """Never finishes on its own; touches ``marker`` (if given) once it runs."""
    if marker:
        await asyncio.to_thread(Path(marker).touch)
    await asyncio.Event().wait()


@app.task
async def hang_on_first_attempt(ctx: errands.Context) -> str:
    """Hangs on attempt 1 (so its worker can be killed mid-job), succeeds on later ones."""
    if ctx.attempt == 1:
        await asyncio.Event().wait()
    return f"done on attempt {ctx.attempt}"


@app.task
async def log_async(ctx: errands.Context, text: str) -> str:
    """Logs from the worker's loop, once plainly and once with a traceback."""
    log.info("async task says %s", text)
    try:
        raise ValueError(text)
    except ValueError:
        log.exception("and handled an error")
    return text


@app.task
def log_in_thread(ctx: errands.Context, text: str) -> str:
    """Logs from the thread pool."""
    log.warning("sync task says %s", text)
    return text


@app.task
async def hang_unless_released(ctx: errands.Context, marker: str, release: str) -> str:
    """Touches ``marker`` once it runs, then hangs unless ``release`` exists (the test creates
    it when the job may finish); says on which attempt it finished."""
    await asyncio.to_thread(Path(f"{marker}.{ctx.attempt}").touch)
    # A file the test creates from another process: there is no event to wait on.
    while not await asyncio.to_thread(Path(release).exists):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return f"done on attempt {ctx.attempt}"
