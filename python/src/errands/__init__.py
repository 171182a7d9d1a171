"""errands: async Python client, worker and pytest fixture for the errands job server.

Quick start::

    import errands

    app = errands.App()  # ERRANDS_URL, default http://127.0.0.1:7733

    @app.task(queue="interactive", max_attempts=5, timeout=300)
    async def compile_source(ctx: errands.Context, source_id: str) -> dict:
        await ctx.progress(30, "extracting")
        return {"pages": 12}

    job = await compile_source.enqueue("src-1")
    print(await job.result(timeout=60))

Run the tasks with ``errands-worker myapp.tasks:app`` (or ``python -m errands worker ...``).
"""

__version__ = "0.1.0"

from .app import App
from .client import Client, JobPage
from .context import Context, State
from .cron import CatchUp, CronSchedule, CronSpec
from .errors import (
    ApiError,
    Conflict,
    ConnectionFailed,
    ErrandsError,
    InvalidPayload,
    JobCancelled,
    JobFailed,
    NotFound,
    Permanent,
    Rejected,
    ResultTimeout,
    Retry,
    SerializationError,
    ServerError,
    Unauthorized,
)
from .events import EventStream, JobEvent
from .job import Job, JobEvents
from .models import JobError, JobInfo, JobState, Progress
from .spec import Backoff, JobSpec
from .task import Enqueuer, Task
from .transactional import EnqueueResult, enqueue_in, enqueue_many_in
from .worker import Worker

__all__ = [
    "ApiError",
    "App",
    "Backoff",
    "CatchUp",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Context",
    "CronSchedule",
    "CronSpec",
    "EnqueueResult",
    "Enqueuer",
    "ErrandsError",
    "EventStream",
    "InvalidPayload",
    "Job",
    "JobCancelled",
    "JobError",
    "JobEvent",
    "JobEvents",
    "JobFailed",
    "JobInfo",
    "JobPage",
    "JobSpec",
    "JobState",
    "NotFound",
    "Permanent",
    "Progress",
    "Rejected",
    "ResultTimeout",
    "Retry",
    "SerializationError",
    "ServerError",
    "State",
    "Task",
    "Unauthorized",
    "Worker",
    "__version__",
    "enqueue_in",
    "enqueue_many_in",
]
