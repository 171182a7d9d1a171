"""Worker logging: human text by default, or one JSON object per line for log pipelines.

While a job runs, every log record (the SDK's and the task's own, from any logger, in async and
plain ``def`` tasks alike) carries the job's ``job_id``, ``queue``, ``kind`` and ``attempt``:
the runner sets them in a context variable, which asyncio copies into the job's task and the
worker copies into the thread of a plain function, and :class:`JobFields` puts them on each
record. ``--log-format json`` writes them out with ``ts``, ``level``, ``message`` and
``logger``; the text format leaves them out.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

__all__ = ["JobFields", "JobLogContext", "JsonFormatter", "configure_logging", "current_job"]

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True, slots=True)
class JobLogContext:
    """What a log record emitted while a job runs says about the job."""

    job_id: str
    queue: str
    kind: str
    attempt: int


#: The job whose code is running in this context, if any.
current_job: ContextVar[JobLogContext | None] = ContextVar("errands_job", default=None)

_JOB_ATTRIBUTES = ("job_id", "queue", "kind", "attempt")


class JobFields(logging.Filter):
    """Puts the running job's fields on every record (``None`` outside a job); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        for name in _JOB_ATTRIBUTES:
            if not hasattr(record, name):  # an explicit extra={"job_id": ...} wins
                setattr(record, name, getattr(job, name) if job is not None else None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``message``, ``logger``,
    the job's fields when it was emitted inside one, and ``exception`` with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for name in _JOB_ATTRIBUTES:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: a log call must never fail on an odd argument.
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Log to stderr at ``level`` in ``log_format``, with job fields on every record."""
    handler = logging.StreamHandler()
    handler.addFilter(JobFields())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
