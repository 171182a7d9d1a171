"""A Celery app's tasks (send_email with autoretry, a time-limited report, a beat schedule)
as an errands app.

docs/migrating-from-celery.md quotes this file. Run it from examples/from_celery with:

    errands-worker mailer.tasks:app --queues emails,default --concurrency 8
"""

from __future__ import annotations

import asyncio

import errands

from .services import RateLimited, Smtp, discard_partial_report, render_report

app = errands.App()  # ERRANDS_URL (default http://127.0.0.1:7733), ERRANDS_TOKEN


@app.on_startup
def open_smtp(state: errands.State) -> None:  # Celery: the worker_process_init signal
    state.smtp = Smtp()


@app.on_shutdown
def close_smtp(state: errands.State) -> None:
    state.smtp.close()


@app.task(
    queue="emails",
    max_attempts=6,  # Celery's max_retries=5, plus the first run
    backoff=errands.Backoff.exponential(base=1, cap=600),  # retry_backoff=True
    timeout=120,
)
def send_email(ctx: errands.Context, to: str, subject: str) -> str:
    try:
        return ctx.state.smtp.send(to, subject)
    except ConnectionError:
        raise  # retried with the backoff above, like autoretry_for=(ConnectionError,)
    except RateLimited as exc:
        raise errands.Retry(str(exc), delay=exc.retry_after) from exc  # self.retry(countdown=)
    except Exception as exc:
        raise errands.Permanent(f"cannot send to {to!r}") from exc  # dead now, no retries


@app.task(timeout=60)
async def build_report(ctx: errands.Context, month: str) -> str:
    try:
        return await render_report(month)
    except asyncio.CancelledError:  # the timeout (or a cancel): Celery's SoftTimeLimitExceeded
        await discard_partial_report(month)
        raise


@app.cron(
    "0 7 * * MON", name="weekly-digest", tz="Europe/Berlin", kwargs={"to": "team@example.com"}
)
@app.task(queue="emails")
def weekly_digest(ctx: errands.Context, to: str) -> str:
    return ctx.state.smtp.send(to, "Your weekly digest")
