"""W3C trace context across the queue, through ``opentelemetry-api`` when it is installed.

At enqueue the current span's context goes into the job's headers (``traceparent``, and
``tracestate``/``baggage`` when set), unless the caller gave a ``traceparent`` of their own. The
worker runs each job in a consumer span that continues that trace, with the job's queue, kind,
attempt and outcome as attributes. Without ``opentelemetry-api`` (the ``otel`` extra) both are
no-ops, and headers travel as given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the `otel` extra is not installed
    ENABLED = False
else:
    ENABLED = True

__all__ = ["ENABLED", "inject", "job_span", "record_outcome"]

TRACEPARENT = "traceparent"

# The instrumentation scope the job spans are reported under.
_SCOPE = "errands"


def inject(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """``headers`` plus the current span's trace context; ``None`` when there is nothing."""
    carrier = dict(headers) if headers else {}
    if ENABLED and TRACEPARENT not in carrier:
        propagate.inject(carrier)
    return carrier or None


@contextlib.contextmanager
def job_span(
    *, job_id: str, queue: str, kind: str, attempt: int, headers: Mapping[str, str]
) -> Iterator[Any]:
    """Runs the block in the job's consumer span, current in this context (so spans the task
    starts, in its thread too, are its children). Yields the span, or ``None`` without
    OpenTelemetry."""
    if not ENABLED:
        yield None
        return
    parent = propagate.extract(dict(headers))
    tracer = trace.get_tracer(_SCOPE)
    attributes: dict[str, str | int] = {
        "messaging.system": "errands",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "errands.job_id": job_id,
        "errands.queue": queue,
        "errands.kind": kind,
        "errands.attempt": attempt,
    }
    with tracer.start_as_current_span(
        f"process {kind}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        # The runner turns exceptions into reports; record_outcome says how the job ended.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def record_outcome(span: Any, report: Mapping[str, Any] | None) -> None:
    """Records on ``span`` how the attempt ended, from the report the worker sends: completed,
    failed (with the error as the span's status), or cancelled when nothing is reported."""
    if span is None:
        return
    if report is None:
        span.set_attribute("errands.outcome", "cancelled")
    elif report.get("type") == "complete":
        span.set_attribute("errands.outcome", "completed")
    else:
        error = report.get("error") or {}
        span.set_attribute("errands.outcome", "failed")
        span.set_attribute("errands.error_type", str(error.get("type", "")))
        span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))))
