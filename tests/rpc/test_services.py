"""Typed services: the definition rules, conversion, schema evolution, reflection."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Protocol

import attrs
import pytest

from rpcnet import RpcConfig, RpcServer, Service, ServiceError, StatusCode, rpcmethod
from rpcnet.errors import UnimplementedError
from rpcnet.rpc.convert import Codec, ConversionError, converter_for, json_schema
from rpcnet.rpc.reflection import REFLECTION_METHOD
from rpcnet.rpc.services import service_info

# -- two versions of one definition -------------------------------------------------------


@attrs.frozen
class ProfileV1:
    name: str
    age: int


@attrs.frozen
class ProfileV2:
    name: str
    age: int
    email: str = "unknown@example.org"
    languages: list[str] = attrs.Factory(lambda: ["en"])


class ProfilesV1(Service, Protocol, name="Profiles"):
    async def echo(self, request: ProfileV1) -> ProfileV1: ...


class ProfilesV2(Service, Protocol, name="Profiles"):
    async def echo(self, request: ProfileV2) -> ProfileV2: ...


class ProfilesV1Impl(ProfilesV1):
    async def echo(self, request: ProfileV1) -> ProfileV1:
        return request


class ProfilesV2Impl(ProfilesV2):
    async def echo(self, request: ProfileV2) -> ProfileV2:
        return attrs.evolve(request, name=request.name.upper())


async def test_a_new_client_talks_to_an_old_server_and_back(serve: Any) -> None:
    _, old_server = await serve(lambda server: server.add_service(ProfilesV1Impl()))
    # A v2 client: its extra fields are ignored by the v1 server, and come back as defaults.
    assert await ProfilesV2.client(old_server).echo(ProfileV2("ada", 36, "ada@example.org", ["fr"])) == ProfileV2("ada", 36)
    _, new_server = await serve(lambda server: server.add_service(ProfilesV2Impl()))
    # A v1 client: the v2 server fills in the defaults, the client ignores the fields it does not know.
    assert await ProfilesV1.client(new_server).echo(ProfileV1("bob", 40)) == ProfileV1("BOB", 40)


async def test_the_json_serializer_carries_the_same_values(serve: Any, setup: Any) -> None:
    _, client = await serve(lambda server: server.add_service(ProfilesV2Impl()), serializer="json")
    client = setup.client(client.address, serializer="json")
    try:
        assert await ProfilesV2.client(client).echo(ProfileV2("cy", 1, languages=["de"])) == ProfileV2("CY", 1, languages=["de"])
    finally:
        await client.close()


# -- the rules of a definition ---------------------------------------------------------------


def _info(definition: type) -> Any:
    return service_info(definition)


def test_one_request_argument_is_the_rule() -> None:
    class TwoArgs(Service, Protocol):
        async def add(self, a: int, b: int) -> int: ...

    with pytest.raises(TypeError, match=r"TwoArgs.add: an RPC takes exactly one request argument after self"):
        _info(TwoArgs)

    class Keyword(Service, Protocol):
        async def add(self, *, a: int) -> int: ...

    with pytest.raises(TypeError, match=r"exactly one request argument"):
        _info(Keyword)


def test_streaming_responses_are_declared_with_def() -> None:
    class AsyncStream(Service, Protocol):
        async def count(self, request: int) -> AsyncIterator[int]: ...

    with pytest.raises(TypeError, match=r"AsyncStream.count: declare a method that streams responses with 'def'"):
        _info(AsyncStream)

    class SyncUnary(Service, Protocol):
        def add(self, request: int) -> int: ...

    with pytest.raises(TypeError, match=r"SyncUnary.add: declare a method with one response with 'async def'"):
        _info(SyncUnary)


def test_unsupported_types_and_reserved_names_are_refused() -> None:
    class Sets(Service, Protocol):
        async def add(self, request: set[int]) -> int: ...

    with pytest.raises(TypeError, match=r"Sets.add request: set\[int\] is not supported"):
        _info(Sets)

    class IntKeys(Service, Protocol):
        async def add(self, request: dict[int, int]) -> int: ...

    with pytest.raises(TypeError, match=r"keys must be str"):
        _info(IntKeys)

    class Clash(Service, Protocol):
        async def client(self, request: int) -> int: ...

    with pytest.raises(TypeError, match=r"'client' is reserved by Service"):
        _info(Clash)

    class Twice(Service, Protocol):
        async def a(self, request: int) -> int: ...

        @rpcmethod(name="a")
        async def b(self, request: int) -> int: ...

    with pytest.raises(TypeError, match=r"the wire name 'Twice.a' is also used by a"):
        _info(Twice)


def test_declared_errors_must_be_attrs_service_errors() -> None:
    class Plain(ServiceError):
        pass

    class Bad(Service, Protocol, errors=[Plain]):
        async def a(self, request: int) -> int: ...

    with pytest.raises(TypeError, match=r"is not an attrs class subclassing ServiceError"):
        _info(Bad)


def test_kinds_idempotency_and_names() -> None:
    class Kinds(Service, Protocol, name="k.Kinds"):
        @rpcmethod(idempotent=True, name="Unary")
        async def unary(self, request: int) -> int: ...

        def server(self, request: int) -> AsyncIterator[int]: ...

        async def client_(self, requests: AsyncIterator[int]) -> int: ...

        def bidi(self, requests: AsyncIterator[int]) -> AsyncIterator[int]: ...

    info = _info(Kinds)
    assert [(m.wire, m.kind.value, m.idempotent) for m in info.methods] == [
        ("k.Kinds.Unary", "unary", True),
        ("k.Kinds.server", "server_streaming", False),
        ("k.Kinds.client_", "client_streaming", False),
        ("k.Kinds.bidi", "bidi_streaming", False),
    ]


async def test_an_implementation_must_implement_every_method() -> None:
    class Half(ProfilesV1):
        pass

    server = RpcServer(RpcConfig(transport="memory"))
    with pytest.raises(TypeError, match=r"Half does not implement ProfilesV1.echo"):
        server.add_service(Half())
    with pytest.raises(TypeError, match=r"implements no service definition"):
        server.add_service(object())


# -- conversion ---------------------------------------------------------------------------------


@attrs.frozen
class Validated:
    port: int = attrs.field(validator=attrs.validators.in_(range(1, 65536)))
    when: dt.date = dt.date(2024, 1, 1)


def test_codecs_are_strict_and_name_the_field() -> None:
    codec = Codec(converter_for("msgpack"), Validated)
    assert codec.load({"port": 80, "when": "2024-02-03"}) == Validated(80, dt.date(2024, 2, 3))
    assert codec.dump(Validated(80)) == {"port": 80, "when": "2024-01-01"}
    # attrs validators run in __init__, so their message (which names the field) is reported at the map.
    with pytest.raises(ConversionError, match=r"^invalid value: 'port' must be in range\(1, 65536\) \(got 0\) @ \$$"):
        codec.load({"port": 0})
    with pytest.raises(ConversionError, match=r"^expected an integer, got bool @ \$.port$"):
        codec.load({"port": True})
    with pytest.raises(ConversionError, match=r"^expected an ISO 8601 date, got 'soon' @ \$.when$"):
        codec.load({"port": 1, "when": "soon"})
    with pytest.raises(ConversionError, match=r"^expected a map \(Validated\), got str @ \$$"):
        codec.load("port=1")


@attrs.frozen
class Scalars:
    name: str
    count: int
    ratio: float
    flag: bool
    blob: bytes
    port: int = attrs.field(validator=attrs.validators.gt(0), kw_only=True)


@attrs.frozen
class OnlyScalars:
    name: str
    count: int
    ratio: float
    flag: bool
    blob: bytes


@pytest.mark.parametrize("cls", [Scalars, OnlyScalars])
def test_classes_of_scalars_load_as_strictly_as_any_other(cls: type) -> None:
    # OnlyScalars takes the generated path for classes of required scalars; Scalars the general one.
    codec = Codec(converter_for("msgpack"), cls)
    generated = codec.structure.__code__.co_filename.startswith("<rpcnet structure")
    assert generated is (cls is OnlyScalars)
    extra = {"port": 1} if cls is Scalars else {}
    good = {"name": "a", "count": 2, "ratio": 1, "flag": False, "blob": bytearray(b"x"), "unknown": [1], **extra}
    loaded = codec.load(good)
    assert loaded == cls("a", 2, 1.0, False, b"x", **extra)
    assert type(loaded.ratio) is float and type(loaded.blob) is bytes
    for field, value, message in [
        ("name", 1, r"expected a string, got int @ \$.name"),
        ("count", True, r"expected an integer, got bool @ \$.count"),
        ("count", 1.5, r"expected an integer, got float @ \$.count"),
        ("ratio", "1", r"expected a number, got str @ \$.ratio"),
        ("flag", 1, r"expected a boolean, got int @ \$.flag"),
        ("blob", "x", r"expected bytes, got str @ \$.blob"),
    ]:
        with pytest.raises(ConversionError, match=f"^{message}$"):
            codec.load({**good, field: value})
    with pytest.raises(ConversionError, match=r"^required field missing @ \$.flag$"):
        codec.load({k: v for k, v in good.items() if k != "flag"})
    with pytest.raises(ConversionError, match=rf"^expected a map \({cls.__name__}\), got list @ \$$"):
        codec.load([good])


def test_json_schema_of_attrs_and_plain_types() -> None:
    assert json_schema(ProfileV2) == {
        "$ref": "#/$defs/ProfileV2",
        "$defs": {
            "ProfileV2": {
                "type": "object",
                "title": "ProfileV2",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer"},
                    "email": {"type": "string", "default": "unknown@example.org"},
                    "languages": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name", "age"],
            }
        },
    }
    assert json_schema(dict[str, list[int] | None]) == {
        "type": "object",
        "additionalProperties": {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]},
    }
    assert json_schema(dt.datetime) == {"type": "string", "format": "date-time"}


# -- reflection ---------------------------------------------------------------------------------


@attrs.define
class Boom(ServiceError):
    code: ClassVar[StatusCode] = StatusCode.ABORTED
    where: str


class Reflected(Service, Protocol, name="r.Reflected", errors=[Boom]):
    """What reflection shows."""

    @rpcmethod(idempotent=True)
    async def get(self, request: ProfileV1) -> list[ProfileV1]:
        """Get profiles."""
        ...

    def watch(self, request: str) -> AsyncIterator[int]: ...


class ReflectedImpl(Reflected):
    async def get(self, request: ProfileV1) -> list[ProfileV1]:
        return [request]

    async def watch(self, request: str) -> AsyncIterator[int]:
        yield 1


async def test_every_server_describes_its_services(serve: Any) -> None:
    def register(server: RpcServer) -> None:
        server.add_service(ReflectedImpl())
        server.register("plain", lambda request, ctx: None)

    _, client = await serve(register)
    described = await client.call(REFLECTION_METHOD)
    assert described["version"] == 1
    assert described["methods"] == [{"method": "plain", "kind": "unary", "idempotent": False}]
    (service,) = described["services"]
    assert service["name"] == "r.Reflected" and service["doc"] == "What reflection shows."
    assert service["errors"] == {"Boom": {"code": "ABORTED", "fields": {"$ref": "#/$defs/Boom"}}}
    get, watch = service["methods"]
    assert get == {
        "name": "get", "method": "r.Reflected.get", "kind": "unary", "idempotent": True,
        "request": {"$ref": "#/$defs/ProfileV1"},
        "response": {"type": "array", "items": {"$ref": "#/$defs/ProfileV1"}},
        "request_type": "ProfileV1", "response_type": "list[ProfileV1]", "errors": ["Boom"], "doc": "Get profiles.",
    }
    assert (watch["kind"], watch["request"], watch["response"]) == ("server_streaming", {"type": "string"}, {"type": "integer"})
    assert described["$defs"]["ProfileV1"]["required"] == ["name", "age"]
    assert described["$defs"]["Boom"]["properties"] == {"where": {"type": "string"}}


async def test_reflection_can_be_configured_off(serve: Any) -> None:
    _, client = await serve(lambda server: server.add_service(ReflectedImpl()), reflection=False)
    with pytest.raises(UnimplementedError):
        await client.call(REFLECTION_METHOD)
    assert RpcConfig.from_env({"RPCNET_RPC__REFLECTION": "0"}).reflection is False
