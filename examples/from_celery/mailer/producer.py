"""The producer side in async code: what ``delay()``, ``apply_async()`` and ``AsyncResult`` did.

docs/migrating-from-celery.md quotes these functions; python/tests/test_migration_examples.py
runs them against a real server.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import errands

from .tasks import app, send_email


async def welcome(email: str) -> errands.Job[str]:
    return await send_email.enqueue(email, "Welcome!")  # send_email.delay(email, "Welcome!")


async def remind(email: str) -> errands.Job[str]:
    # send_email.apply_async((email, "Still there?"), countdown=3600, queue="emails", priority=5)
    later = send_email.options(delay=3600, queue="emails", priority=5)
    return await later.enqueue(email, "Still there?")


async def greet_at(email: str, when: datetime) -> errands.Job[str]:
    # send_email.apply_async((email, "Happy new year"), eta=when)
    return await send_email.options(run_at=when).enqueue(email, "Happy new year")


async def welcome_by_name(email: str) -> errands.Job[str]:
    # celery_app.send_task("mailer.tasks.send_email", args=[email, "Welcome!"])
    return await app.enqueue("send_email", email, "Welcome!")


async def wait_for(job_id: str) -> str:
    job = app.job(job_id)  # AsyncResult(job_id)
    print((await job.status()).state)  # .state: queued, running, completed, dead, ...
    result: str = await job.result(timeout=10)  # .get(timeout=10); raises JobFailed if dead
    return result


async def send_to_all(addresses: list[str], subject: str) -> list[str]:
    # group(send_email.s(to, subject) for to in addresses)().get(), by hand
    jobs = await app.enqueue_many([send_email.spec(to, subject) for to in addresses])
    return await asyncio.gather(*(job.result(timeout=60) for job in jobs))
