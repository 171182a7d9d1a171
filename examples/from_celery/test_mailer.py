"""How the mailer's tasks are tested: a real errands server per test, a worker in-process.

This is the test docs/migrating-from-celery.md shows in place of ``task_always_eager`` or
Celery's ``celery_worker`` fixture; python/tests/test_migration_examples.py runs it.
"""

from __future__ import annotations

from errands.testing import ServerHandle, run_worker
from mailer.tasks import app, send_email


async def test_send_email(errands_server: ServerHandle) -> None:
    async with run_worker(app) as worker:  # a real worker: real retries, timeouts, queues
        job = await send_email.enqueue("a@example.com", "Welcome!")
        assert await job.result(timeout=10) == "<1@mailer.example>"
        assert worker.state.smtp.sent == [("a@example.com", "Welcome!")]
    await app.close()
