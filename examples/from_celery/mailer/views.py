"""Sync callers (a Django or Flask view, a script, a management command): ``app.sync``.

docs/migrating-from-celery.md quotes these functions.
"""

from __future__ import annotations

from .tasks import app, send_email


def signup_view(email: str) -> str:
    job = app.sync.enqueue(send_email, email, "Welcome!")  # send_email.delay(...)
    return job.id


def status_view(job_id: str) -> str:
    return app.sync.get_job(job_id).state.value  # AsyncResult(job_id).state


def result_view(job_id: str) -> str:
    result: str = app.sync.job(job_id).result(timeout=10)  # AsyncResult(job_id).get(timeout=10)
    return result


def revoke_view(job_id: str) -> str:
    return app.sync.cancel(job_id).state.value  # celery_app.control.revoke(job_id, terminate=True)
