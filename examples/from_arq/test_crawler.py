"""How the crawler's tasks are tested: a real errands server per test, a worker in-process.

This is the test docs/migrating-from-arq.md shows in place of arq's burst-mode worker;
python/tests/test_migration_examples.py runs it.
"""

from __future__ import annotations

from crawler.tasks import app, download_content
from errands.testing import ServerHandle, run_worker


async def test_download_content(errands_server: ServerHandle) -> None:
    async with run_worker(app):  # runs the startup hooks, connects, serves jobs
        job = await download_content.enqueue(errands_server.url + "/healthz")
        assert await job.result(timeout=10) == len('{"status":"ok"}')
    await app.close()
