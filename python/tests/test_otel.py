"""OpenTelemetry across the queue, against a real server exporting its own spans over OTLP.

A small OTLP/HTTP receiver (protobuf, as collectors take it) collects spans from both sides:
this process's (the producer span and the worker's job span, through the OpenTelemetry SDK and
its OTLP exporter) and the server's (``errands serve --otlp-endpoint``). One trace must hold
them all, parent to child: producer -> server enqueue -> server dispatch, server completion and
the job's span.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import errands
from errands.testing import run_server, run_worker

from .conftest import eventually


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    return getattr(value, field) if field else None


class Collector:
    """An OTLP/HTTP traces endpoint on a free port, keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                request = ExportTraceServiceRequest.FromString(body)
                collector.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received = ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    )
                    with self.lock:
                        self.spans.append(received)

    def named(self, name: str) -> ReceivedSpan | None:
        with self.lock:
            return next((s for s in self.spans if s.name == name), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    receiver = Collector()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="module")
def provider(collector: Collector) -> Iterator[TracerProvider]:
    """This process's tracer provider, exporting to the collector. The global provider can be
    set once per process; it is shut down after this module, so later tests export nothing."""
    provider = TracerProvider(resource=Resource.create({"service.name": "python-app"}))
    exporter = OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    trace.set_tracer_provider(provider)
    try:
        yield provider
    finally:
        provider.shutdown()


@pytest.fixture
async def traced_app(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[errands.App]:
    """An App on a server that exports its spans to the collector within 100 ms."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    async with (
        run_server(args=["--otlp-endpoint", collector.url]) as srv,
        errands.App(srv.url) as app,
    ):
        yield app


async def test_producer_server_and_job_spans_share_one_trace(
    traced_app: errands.App, collector: Collector, provider: TracerProvider
) -> None:
    seen: dict[str, str] = {}

    @traced_app.task
    async def render(ctx: errands.Context, page: str) -> str:
        seen.update(ctx.headers)
        return page.upper()

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("producer") as producer:
        job = await render.options(headers={"x-tenant": "42"}).enqueue("home")
    async with run_worker(traced_app):
        assert await job.result(timeout=10) == "HOME"
    await asyncio.to_thread(provider.force_flush)

    names = ["producer", "enqueue render", "dispatch render", "complete render", "process render"]

    async def all_received() -> dict[str, ReceivedSpan] | None:
        found = {name: collector.named(name) for name in names}
        if all(found.values()):
            return {name: span for name, span in found.items() if span is not None}
        return None

    spans = await eventually(all_received, what="every span at the collector")
    trace_id = format(producer.get_span_context().trace_id, "032x")
    assert {span.trace_id for span in spans.values()} == {trace_id}
    enqueue = spans["enqueue render"]
    assert enqueue.parent_span_id == spans["producer"].span_id
    for name in ["dispatch render", "complete render", "process render"]:
        assert spans[name].parent_span_id == enqueue.span_id, name
    for name in ["enqueue render", "dispatch render", "complete render"]:
        assert spans[name].service == "errands", name
    job_span = spans["process render"]
    assert job_span.service == "python-app"
    assert job_span.kind == 5  # SPAN_KIND_CONSUMER
    assert job_span.attributes["errands.queue"] == "default"
    assert job_span.attributes["errands.kind"] == "render"
    assert job_span.attributes["errands.attempt"] == 1
    assert job_span.attributes["errands.outcome"] == "completed"
    assert spans["complete render"].attributes["errands.outcome"] == "completed"
    # The task saw its own header and the trace context the server passed on.
    assert seen["x-tenant"] == "42"
    assert seen["traceparent"].split("-")[1] == trace_id


async def test_a_failing_job_span_says_so(
    traced_app: errands.App, collector: Collector, provider: TracerProvider
) -> None:
    @traced_app.task(max_attempts=1)
    async def explode(ctx: errands.Context) -> None:
        raise ValueError("boom")

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("failing producer") as producer:
        job = await explode.enqueue()
    async with run_worker(traced_app):
        with pytest.raises(errands.JobFailed):
            await job.result(timeout=10)
    await asyncio.to_thread(provider.force_flush)
    trace_id = format(producer.get_span_context().trace_id, "032x")

    async def received(name: str) -> ReceivedSpan | None:
        span = collector.named(name)
        return span if span is not None and span.trace_id == trace_id else None

    job_span = await eventually(lambda: received("process explode"), what="the job span")
    assert job_span.attributes["errands.outcome"] == "failed"
    assert job_span.attributes["errands.error_type"] == "ValueError"
    complete = await eventually(lambda: received("complete explode"), what="the server span")
    assert complete.attributes["errands.outcome"] == "dead"


async def test_a_given_traceparent_is_kept_and_untraced_enqueues_add_none(app: errands.App) -> None:
    seen: list[dict[str, str]] = []

    @app.task
    async def note(ctx: errands.Context) -> None:
        seen.append(dict(ctx.headers))

    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    first = await note.options(headers={"traceparent": given}).enqueue()
    second = await note.enqueue()
    async with run_worker(app):
        await first.result(timeout=10)
        await second.result(timeout=10)
    by_parent = {h.get("traceparent"): h for h in seen}
    # Without --otlp-endpoint the server passes headers on untouched.
    assert given in by_parent
    assert None in by_parent
