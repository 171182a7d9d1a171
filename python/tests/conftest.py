"""Shared fixtures. ``errands_server`` itself comes from the errands pytest plugin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

import errands
from errands.testing import ServerHandle

T = TypeVar("T")


@pytest.fixture
async def app(errands_server: ServerHandle) -> AsyncIterator[errands.App]:
    """A fresh App on a fresh server; each test registers the tasks it needs."""
    async with errands.App(errands_server.url) as app:
        yield app


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout`` seconds.

    Used to wait on a *condition* (a job state, a process exit), never as a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.1)


async def wait_state(
    app: errands.App, job_id: str, *states: str, timeout: float = 10.0
) -> errands.JobInfo:
    """Wait until the job is in one of ``states``."""

    async def probe() -> errands.JobInfo | None:
        info = await app.get_job(job_id)
        return info if info.state in states else None

    return await eventually(probe, timeout=timeout, what=f"job {job_id} to be {'/'.join(states)}")


async def until(predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Wait until a local condition holds (same polling as :func:`eventually`)."""

    async def probe() -> bool:
        return predicate()

    await eventually(probe, timeout=timeout, what=what or "condition")
