"""Typed services end to end, over memory and QUIC: every call kind, options, typed errors.

This module is also checked with ``mypy --strict`` (tests/rpc/test_typing.py):
it is what user code written against the typed API looks like.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Protocol

import attrs
import pytest

from rpcnet import RpcClient, RpcServer, Service, ServiceError, StatusCode, current_context, rpcmethod
from rpcnet.errors import InvalidArgumentError, NotFoundError, RpcError

from .helpers import until


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@attrs.frozen
class Item:
    name: str
    price: float
    colour: Colour = Colour.RED
    tags: list[str] = attrs.Factory(list)


@attrs.frozen
class Order:
    id: int
    items: list[Item]
    placed: dt.datetime
    note: str | None = None
    blob: bytes = b""


@attrs.frozen
class Receipt:
    id: int
    total: float
    lines: dict[str, float]
    placed: dt.datetime
    blob: bytes


@attrs.define
class OutOfStock(ServiceError):
    code: ClassVar[StatusCode] = StatusCode.FAILED_PRECONDITION
    message_template: ClassVar[str] = "{item} is out of stock ({wanted} wanted, {left} left)"
    item: str
    wanted: int
    left: int


@attrs.define
class UnknownOrder(ServiceError, NotFoundError):
    code: ClassVar[StatusCode] = StatusCode.NOT_FOUND
    id: int


@attrs.define
class Undeclared(ServiceError):
    reason: str


class Shop(Service, Protocol, name="shop.v1.Shop", errors=[OutOfStock]):
    """A small shop: one method per call kind."""

    @rpcmethod(idempotent=True)
    async def price(self, request: Order) -> Receipt:
        """The receipt an order would get."""
        ...

    @rpcmethod(errors=[UnknownOrder])
    async def lookup(self, request: int) -> Order: ...

    async def fail(self, request: str) -> None: ...

    def items(self, request: int) -> AsyncIterator[Item]: ...

    async def total(self, items: AsyncIterator[Item]) -> float: ...

    def running(self, items: AsyncIterator[Item]) -> AsyncIterator[float]: ...

    @rpcmethod(name="Whoami")
    async def whoami(self, request: str) -> dict[str, str]: ...


PLACED = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)


class ShopImpl(Shop):
    def __init__(self) -> None:
        self.orders = {7: Order(id=7, items=[Item("tea", 2.5)], placed=PLACED)}

    async def price(self, request: Order) -> Receipt:
        lines = {item.name: item.price for item in request.items}
        for item in request.items:
            if item.name == "unicorn":
                raise OutOfStock(item="unicorn", wanted=1, left=0)
        return Receipt(id=request.id, total=sum(lines.values()), lines=lines, placed=request.placed, blob=request.blob[::-1])

    async def lookup(self, request: int) -> Order:
        order = self.orders.get(request)
        if order is None:
            raise UnknownOrder(id=request)
        return order

    async def fail(self, request: str) -> None:
        raise Undeclared(reason=request)

    async def items(self, request: int) -> AsyncIterator[Item]:
        for index in range(request):
            yield Item(f"item-{index}", float(index), Colour.GREEN if index % 2 else Colour.RED)
        if request == 3:
            raise OutOfStock(item="item-3", wanted=4, left=3)

    async def total(self, items: AsyncIterator[Item]) -> float:
        return sum([item.price async for item in items])

    async def running(self, items: AsyncIterator[Item]) -> AsyncIterator[float]:
        total = 0.0
        async for item in items:
            total += item.price
            yield total

    async def whoami(self, request: str) -> dict[str, str]:
        ctx = current_context()
        assert ctx is not None
        remaining = ctx.time_remaining()
        return {
            "method": ctx.method,
            "hello": request,
            "user": str(ctx.metadata.get("user")),
            "deadline": "none" if remaining is None else "set",
        }


Serve = Callable[..., Any]


async def _shop(serve: Serve) -> tuple[RpcServer, RpcClient, Shop]:
    def register(server: RpcServer) -> None:
        server.add_service(ShopImpl())

    server, client = await serve(register)
    return server, client, Shop.client(client)


async def _items(count: int) -> AsyncIterator[Item]:
    for index in range(count):
        yield Item(f"i{index}", float(index + 1))


async def test_unary_round_trips_attrs_enums_datetimes_bytes(serve: Serve) -> None:
    _, _, shop = await _shop(serve)
    order = Order(id=1, items=[Item("tea", 2.5, Colour.GREEN, ["hot"]), Item("cake", 4.0)], placed=PLACED, blob=b"\x00\x01\xff")
    receipt = await shop.price(order)
    assert receipt == Receipt(id=1, total=6.5, lines={"tea": 2.5, "cake": 4.0}, placed=PLACED, blob=b"\xff\x01\x00")
    assert await shop.lookup(7) == Order(id=7, items=[Item("tea", 2.5)], placed=PLACED)


async def test_wire_names_are_service_dot_method(serve: Serve) -> None:
    server, client, shop = await _shop(serve)
    assert {"shop.v1.Shop.price", "shop.v1.Shop.lookup", "shop.v1.Shop.items", "shop.v1.Shop.Whoami"} <= set(server.methods)
    assert server.methods["shop.v1.Shop.price"].idempotent is True
    assert server.methods["shop.v1.Shop.lookup"].idempotent is False
    # The untyped client reaches the same method by its wire name, with plain values.
    reply = await client.call("shop.v1.Shop.lookup", 7)
    assert reply["items"] == [{"name": "tea", "price": 2.5, "colour": "red", "tags": []}]
    assert reply["placed"] == "2024-05-01T12:30:00+00:00"


async def test_every_streaming_kind(serve: Serve) -> None:
    _, _, shop = await _shop(serve)
    items = [item async for item in shop.items(2)]
    assert items == [Item("item-0", 0.0, Colour.RED), Item("item-1", 1.0, Colour.GREEN)]
    assert await shop.total(_items(4)) == 10.0
    assert [total async for total in shop.running(_items(3))] == [1.0, 3.0, 6.0]


async def test_per_call_deadline_and_metadata(serve: Serve) -> None:
    _, _, shop = await _shop(serve)
    assert await shop.whoami("x") == {"method": "shop.v1.Shop.Whoami", "hello": "x", "user": "None", "deadline": "none"}
    tuned = shop.with_options(timeout=30.0, metadata={"user": "ada"})
    assert await tuned.whoami("y") == {"method": "shop.v1.Shop.Whoami", "hello": "y", "user": "ada", "deadline": "set"}
    # with_options returns a new proxy; the original keeps its own options.
    assert (await shop.whoami("z"))["user"] == "None"
    with pytest.raises(RpcError) as caught:
        await shop.with_options(timeout=0.0).whoami("late")
    assert caught.value.code is StatusCode.DEADLINE_EXCEEDED


async def test_declared_errors_arrive_as_the_same_class_with_the_same_fields(serve: Serve) -> None:
    _, _, shop = await _shop(serve)
    with pytest.raises(OutOfStock) as caught:
        await shop.price(Order(id=2, items=[Item("unicorn", 1e6)], placed=PLACED))
    error = caught.value
    assert (error.item, error.wanted, error.left) == ("unicorn", 1, 0)
    assert error.code is StatusCode.FAILED_PRECONDITION
    assert str(error) == "FAILED_PRECONDITION: unicorn is out of stock (1 wanted, 0 left)"
    # A method-level error, also caught as its status class.
    with pytest.raises(NotFoundError) as missing:
        await shop.lookup(99)
    assert isinstance(missing.value, UnknownOrder) and missing.value.id == 99
    # Raised by a streaming handler after some messages: the typed error ends the stream.
    # (Whether the messages before it are delivered first is the engine's ordering rule.)
    with pytest.raises(OutOfStock) as in_stream:
        async for item in shop.items(3):
            assert item.name.startswith("item-")
    assert in_stream.value.left == 3


async def test_undeclared_errors_stay_status_errors(serve: Serve) -> None:
    _, _, shop = await _shop(serve)
    with pytest.raises(RpcError) as caught:
        await shop.fail("nope")
    assert not isinstance(caught.value, Undeclared)
    assert caught.value.code is StatusCode.FAILED_PRECONDITION
    assert caught.value.message == "Undeclared(reason='nope')"
    assert caught.value.details is None


async def test_invalid_requests_are_invalid_argument_naming_the_field(serve: Serve) -> None:
    _, client, _ = await _shop(serve)
    bad = {"id": 1, "placed": "2024-05-01T12:30:00+00:00", "items": [{"name": "tea", "price": 1.0}, {"name": "x", "price": "free"}]}
    with pytest.raises(InvalidArgumentError) as caught:
        await client.call("shop.v1.Shop.price", bad)
    assert caught.value.message == "invalid request for shop.v1.Shop.price: expected a number, got str @ $.items[1].price"
    with pytest.raises(InvalidArgumentError) as missing:
        await client.call("shop.v1.Shop.price", {"id": 1, "items": []})
    assert missing.value.message == "invalid request for shop.v1.Shop.price: required field missing @ $.placed"
    with pytest.raises(InvalidArgumentError) as colour:
        await client.call("shop.v1.Shop.price", {"id": 1, "placed": "2024-05-01", "items": [{"name": "a", "price": 1, "colour": "blue"}]})
    assert colour.value.message == (
        "invalid request for shop.v1.Shop.price: expected one of 'red', 'green' (Colour), got 'blue' @ $.items[0].colour"
    )
    with pytest.raises(InvalidArgumentError) as scalar:
        await client.call("shop.v1.Shop.lookup", "7")
    assert scalar.value.message == "invalid request for shop.v1.Shop.lookup: expected an integer, got str @ $"


async def test_unknown_fields_are_ignored_and_missing_ones_take_defaults(serve: Serve) -> None:
    _, client, _ = await _shop(serve)
    reply = await client.call(
        "shop.v1.Shop.price",
        {"id": 3, "placed": "2024-05-01T12:30:00+00:00", "items": [{"name": "a", "price": 1.5, "from_the_future": True}], "extra": 1},
    )
    assert reply == {"id": 3, "total": 1.5, "lines": {"a": 1.5}, "placed": "2024-05-01T12:30:00+00:00", "blob": b""}


async def test_a_client_of_a_wrong_argument_type_fails_before_sending(serve: Serve) -> None:
    _, _, shop = await _shop(serve)
    bad: Any = {"id": 1}
    with pytest.raises(TypeError, match=r"shop.v1.Shop.price takes Order, got dict"):
        await shop.price(bad)


async def test_cancelling_a_typed_stream_cancels_the_call(serve: Serve) -> None:
    server, _, shop = await _shop(serve)
    stream = shop.items(1000)
    async for item in stream:
        assert item.name == "item-0"
        break
    await stream.aclose()  # type: ignore[attr-defined]
    await until(lambda: server.active_calls == 0)
