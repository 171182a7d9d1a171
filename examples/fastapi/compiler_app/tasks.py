"""The worker side: one task that "compiles" a source file and reports progress.

Run it with:  errands-worker compiler_app.tasks:app --concurrency 4
"""

from __future__ import annotations

import asyncio
import hashlib
import os

from pydantic import BaseModel

import errands

# ERRANDS_URL / ERRANDS_TOKEN from the environment (default http://127.0.0.1:7733).
app = errands.App()

# Seconds each compile step pretends to take, so progress is visible in the browser.
STEP_DELAY = float(os.environ.get("COMPILE_STEP_DELAY", "0.6"))


class Compiled(BaseModel):
    """The job's result: stored as JSON on the job, rebuilt by ``await job.result()``."""

    filename: str
    lines: int
    words: int
    sha256: str


@app.task(queue="interactive", max_attempts=3, timeout=120)
async def compile_source(ctx: errands.Context, filename: str, source: str) -> Compiled:
    """Pretend to compile ``source``; report progress at 10/30/50/80/100 %."""
    await ctx.progress(10, "reading")
    lines = source.splitlines()
    await asyncio.sleep(STEP_DELAY)

    await ctx.progress(30, "parsing")
    words = sum(len(line.split()) for line in lines)
    await asyncio.sleep(STEP_DELAY)

    await ctx.progress(50, "checking")
    if any(line.lstrip().startswith("#error") for line in lines):  # a directive, as in C
        # A source error will not go away on retry: fail the job for good.
        raise errands.Permanent(f"{filename}: found #error directive")
    await asyncio.sleep(STEP_DELAY)

    await ctx.progress(80, "generating")
    digest = hashlib.sha256(source.encode()).hexdigest()
    await asyncio.sleep(STEP_DELAY)

    await ctx.progress(100, "done")
    return Compiled(filename=filename, lines=len(lines), words=words, sha256=digest)
