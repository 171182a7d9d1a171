"""Exceptions raised by the errands SDK, and the two a task raises to steer its retries.

Everything the client raises derives from :class:`ErrandsError`. Errors the server answered with
carry its reason (``code``, ``field``, ``message`` from the JSON error body) so callers can show
it or branch on it without parsing strings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import JobError, JobInfo

__all__ = [
    "ApiError",
    "Conflict",
    "ConnectionFailed",
    "ErrandsError",
    "InvalidPayload",
    "JobCancelled",
    "JobFailed",
    "NotFound",
    "Permanent",
    "Rejected",
    "ResultTimeout",
    "Retry",
    "SerializationError",
    "ServerError",
    "Unauthorized",
    "error_from_response",
]


class ErrandsError(Exception):
    """Base class of every error the errands SDK raises."""


class ConnectionFailed(ErrandsError):
    """The server could not be reached (refused, reset, DNS, or the request timed out)."""


class SerializationError(ErrandsError, TypeError):
    """Job arguments (or a task's result) are not JSON-serialisable.

    Raised on the client before anything is sent. It is a :class:`TypeError` too, so code that
    already guards against ``json.dumps`` failures keeps working.
    """


class InvalidPayload(ErrandsError, ValueError):
    """A job's arguments (or result) do not fit the task's type hints.

    Raised where a model or dataclass is rebuilt from JSON: in the worker before a task runs
    (the job then fails for good with this message, type ``InvalidPayload``), and by
    ``job.result()`` when a result does not fit the task's return annotation.

    Attributes:
        field: where it does not fit, e.g. ``order.items[0].quantity`` (the parameter name
            first; ``result...`` for a result).
        reason: what is wrong, naming the field(s).
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(reason)


class ApiError(ErrandsError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: the server's error code (``invalid_field``, ``not_found``, ...).
        message: the server's human-readable reason.
        field: the request field the error is about, when the server names one
            (``kind``, ``jobs[3].args``, ...).
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{status} {code}: {message}{where}")


class Rejected(ApiError):
    """The request was invalid (400) or too large (413); ``field`` names the bad part."""


class Unauthorized(ApiError):
    """The token is missing or wrong (401)."""


class NotFound(ApiError):
    """The job, cron schedule (or route) does not exist (404)."""


class Conflict(ApiError):
    """The job is not in a state that allows this (409), e.g. cancelling a completed job."""


class ServerError(ApiError):
    """The server failed (5xx); nothing was changed."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: Rejected,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: Rejected,
}


def error_from_response(status: int, body: Any) -> ApiError:
    """Build the matching :class:`ApiError` from a status code and the decoded JSON body.

    Tolerates bodies that are not the documented ``{"error": {...}}`` shape (a proxy's HTML page,
    say) so the caller always gets a typed error rather than a decoding crash.
    """
    code, message, field = "", "", None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or "")
        message = str(err.get("message") or "")
        field = err.get("field") if isinstance(err.get("field"), str) else None
    elif isinstance(body, str):
        message = body.strip()[:500]
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else Rejected
    return cls(status, code or cls.__name__.lower(), message or f"HTTP {status}", field)


class ResultTimeout(ErrandsError, TimeoutError):
    """``Job.result(timeout=...)`` gave up before the job finished. The job keeps running."""


class JobFailed(ErrandsError):
    """The job is ``dead``: it failed on its last attempt or a retry was refused.

    Attributes:
        job: the job as last seen.
        error: its last recorded error (type, message, traceback), if any.
    """

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        self.error: JobError | None = job.errors[-1] if job.errors else None
        if self.error is not None:
            why = f"{self.error.type}: {self.error.message}"
        else:
            why = "no error recorded"
        super().__init__(f"job {job.id} ({job.kind}) failed after {job.attempt} attempt(s): {why}")


class JobCancelled(ErrandsError):
    """The job was cancelled before it completed."""

    def __init__(self, job: JobInfo) -> None:
        self.job = job
        super().__init__(f"job {job.id} ({job.kind}) was cancelled")


class Retry(Exception):
    """Raise inside a task to fail this attempt and retry it after ``delay`` seconds.

    Without ``delay`` the job's backoff policy decides. The attempt still counts; when it was the
    last one the job goes to ``dead``.
    """

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        if delay is not None and delay < 0:
            raise ValueError("Retry delay must be >= 0")
        self.delay = delay
        self.message = message
        super().__init__(message)


class Permanent(Exception):
    """Raise inside a task to fail the job for good: no further attempts, it goes to ``dead``.

    ``raise Permanent("bad input") from exc`` records the cause's class name as the error type.
    """
