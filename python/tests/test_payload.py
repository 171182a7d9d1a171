"""Pydantic models and dataclasses as task arguments and results, against a real server."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pydantic
import pytest

import errands
from errands import payload
from errands.testing import run_worker


class Item(pydantic.BaseModel):
    sku: str
    quantity: int


class Order(pydantic.BaseModel):
    customer: str
    items: list[Item]
    placed_at: datetime


@dataclasses.dataclass
class Address:
    city: str
    zip_code: str


@dataclasses.dataclass
class Shipment:
    order_id: int
    to: Address
    express: bool = False


@dataclasses.dataclass
class Receipt:
    total_items: int
    customer: str


ORDER = Order(
    customer="ada",
    items=[Item(sku="a-1", quantity=2), Item(sku="b-7", quantity=3)],
    placed_at=datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc),
)


@pytest.fixture
def no_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK behaves as if pydantic were not installed (dataclasses only)."""
    monkeypatch.setattr(payload, "_pydantic", lambda: None)
    monkeypatch.setattr(payload, "_loaded_pydantic", lambda: None)


async def test_models_in_and_out(app: errands.App) -> None:
    seen: list[object] = []

    @app.task
    async def place(ctx: errands.Context, order: Order, extra: list[Item] | None = None) -> Order:
        seen.extend([order, extra])
        return order.model_copy(update={"items": order.items + (extra or [])})

    async with run_worker(app):
        job = await place.enqueue(ORDER, extra=[Item(sku="c-2", quantity=1)])
        result = await job.result(timeout=10)
    rebuilt, extra = seen
    assert rebuilt == ORDER  # a real Order in the task, datetime and all
    assert isinstance(rebuilt, Order)
    assert extra == [Item(sku="c-2", quantity=1)]
    assert isinstance(result, Order)
    assert [i.sku for i in result.items] == ["a-1", "b-7", "c-2"]
    # On the wire and in the job record it is plain JSON.
    info = await job.status()
    assert info.args["args"][0]["placed_at"] == "2026-12-01T09:30:00Z"
    assert info.result["items"][2] == {"sku": "c-2", "quantity": 1}
    # A handle from the task by id rebuilds the result too; one from the app does not.
    assert isinstance(await place.job(job.id).result(timeout=5), Order)
    assert isinstance(await app.job(job.id).result(timeout=5), dict)


async def test_dataclasses_in_and_out_of_a_sync_task(app: errands.App) -> None:
    @app.task
    def ship(ctx: errands.Context, shipment: Shipment) -> Receipt:
        assert isinstance(shipment.to, Address)
        return Receipt(total_items=shipment.order_id, customer=shipment.to.city)

    async with run_worker(app):
        job = await ship.enqueue(Shipment(7, Address("Oslo", "0150"), express=True))
        assert await job.result(timeout=10) == Receipt(total_items=7, customer="Oslo")
    assert (await job.status()).result == {"total_items": 7, "customer": "Oslo"}


async def test_payload_that_does_not_fit_fails_the_job_naming_the_field(app: errands.App) -> None:
    @app.task(max_attempts=5)
    async def place(ctx: errands.Context, order: Order) -> int:
        return len(order.items)

    bad = {"customer": "ada", "placed_at": "2026-12-01T09:30:00Z"}
    bad["items"] = [{"sku": "a-1", "quantity": 2}, {"sku": "b-7", "quantity": "three"}]
    async with run_worker(app):
        # A producer that does not import the model (curl, another service) sends raw JSON.
        job = await app.kind("place").enqueue(bad)
        with pytest.raises(errands.JobFailed) as failed:
            await job.result(timeout=10)
        # The worker is fine: the next job of the same task runs.
        assert await (await place.enqueue(ORDER)).result(timeout=10) == 2
    error = failed.value.error
    assert error is not None
    assert error.type == "InvalidPayload"
    assert "order.items[1].quantity" in error.message
    assert "valid integer" in error.message
    assert failed.value.job.attempt == 1  # not retried: the same payload cannot fit later


async def test_result_that_does_not_fit_raises_invalid_payload(app: errands.App) -> None:
    @app.task
    async def report(ctx: errands.Context) -> Receipt:
        return {"total_items": "many", "customer": "ada"}  # type: ignore[return-value]

    async with run_worker(app):
        job = await report.enqueue()
        with pytest.raises(errands.InvalidPayload) as bad:
            await job.result(timeout=10)
    assert bad.value.field == "result.total_items"
    assert (await job.status()).state is errands.JobState.COMPLETED


@pytest.mark.usefixtures("no_pydantic")
async def test_dataclasses_without_pydantic(app: errands.App) -> None:
    @app.task
    async def ship(ctx: errands.Context, shipments: list[Shipment]) -> Receipt:
        assert all(isinstance(s.to, Address) for s in shipments)
        return Receipt(total_items=len(shipments), customer=shipments[0].to.city)

    async with run_worker(app):
        good = await ship.enqueue([Shipment(1, Address("Oslo", "0150"))])
        assert await good.result(timeout=10) == Receipt(total_items=1, customer="Oslo")
        wrong_type = await app.kind("ship").enqueue([{"order_id": 1, "to": {"city": 5}}])
        missing = await app.kind("ship").enqueue([{"order_id": 1, "to": {"city": "Oslo"}}])
        unknown = await app.kind("ship").enqueue([{"order_id": 1, "to": None, "weight": 3}])
        for job, field in [
            (wrong_type, "shipments[0].to.city: should be a string"),
            (missing, "shipments[0].to.zip_code: field required"),
            (unknown, "shipments[0].weight: is not a field of Shipment"),
        ]:
            with pytest.raises(errands.JobFailed) as failed:
                await job.result(timeout=10)
            assert failed.value.error is not None
            assert failed.value.error.type == "InvalidPayload"
            assert field in failed.value.error.message


def test_models_serialise_at_enqueue_and_other_objects_still_refuse() -> None:
    app = errands.App("http://127.0.0.1:9")

    @app.task
    async def place(ctx: errands.Context, order: Order, when: Shipment) -> None: ...

    spec = place.spec(ORDER, when=Shipment(1, Address("Oslo", "0150")))
    body = spec.to_body()
    assert errands.spec.dumps(body["args"]) == (
        '{"args":[{"customer":"ada","items":[{"sku":"a-1","quantity":2},'
        '{"sku":"b-7","quantity":3}],"placed_at":"2026-12-01T09:30:00Z"}],'
        '"kwargs":{"when":{"order_id":1,"to":{"city":"Oslo","zip_code":"0150"},"express":false}}}'
    )
    with pytest.raises(errands.SerializationError, match="set is not JSON serializable"):
        place.spec({1, 2}, when=None)  # type: ignore[arg-type]


class PlaceOrder:
    """A task that is a callable object: its annotations resolve in its class's module."""

    async def __call__(self, ctx: errands.Context, order: Order) -> Receipt:
        return Receipt(total_items=len(order.items), customer=order.customer)


def test_annotations_resolve_for_callable_objects_and_unknown_names_pass_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shapes = payload.TaskShapes(PlaceOrder())
    args, _ = shapes.arguments([ORDER.model_dump(mode="json")], {})
    assert args == [ORDER]
    assert shapes.result is not None

    @dataclasses.dataclass
    class Local:  # with postponed annotations, "Local" cannot be found by name later
        x: int

    async def task(ctx: errands.Context, value: Local, n: int) -> None: ...

    with caplog.at_level("WARNING", logger="errands"):
        shapes = payload.TaskShapes(task)
    assert shapes.arguments([{"x": 1}, 2], {}) == ([{"x": 1}, 2], {})
    assert "cannot resolve the annotation 'Local'" in caplog.text
