"""The bundled serializers: ``msgpack`` (the default) and ``json`` (orjson).

Both round-trip ``None``, bools, ints, floats, str, bytes, lists and dicts
(tuples come back as lists), enforce a size limit in both directions, and
raise :class:`~rpcnet.errors.SerializationError` with a clear message on bad
input.
"""

from __future__ import annotations

import base64
import threading
from typing import Any, ClassVar

import msgpack
import orjson

from ..errors import SerializationError
from ..hookspecs import Register, hookimpl
from ..serializers import Serializer, SerializerOptions

__all__ = ["MsgpackSerializer", "JsonSerializer"]


def _reject_ext(code: int, data: bytes) -> Any:
    raise SerializationError(
        f"msgpack: extension type {code} is not accepted (only the timestamp extension -1 is)"
    )


#: A Packer that produced more than this is dropped rather than kept for reuse.
_KEEP_PACKER_BELOW = 64 * 1024


class MsgpackSerializer(Serializer):
    name: ClassVar[str] = "msgpack"

    def __init__(self, options: SerializerOptions | None = None) -> None:
        super().__init__(options)
        # msgpack.packb builds a Packer per call, which costs ten times the
        # packing of a small message. A spare Packer per thread is reused
        # instead: taken out while it packs (a Packer may run Python code
        # mid-pack, e.g. a tzinfo, which could pack again), and kept only
        # after small values, since its buffer never shrinks.
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def dumps(self, value: Any) -> bytes:
        local = self._local.__dict__
        packer = local.pop("packer", None) or msgpack.Packer(use_bin_type=True, datetime=True)
        try:
            data = packer.pack(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"msgpack: cannot encode {type(value).__name__}: {exc}") from exc
        if len(data) <= _KEEP_PACKER_BELOW:
            local["packer"] = packer
        if len(data) > self.max_size:
            self._check_size(len(data), "encoded")
        return data

    def loads(self, data: bytes) -> Any:
        if type(data) is not bytes:  # the usual type, without a call
            _check_bytes_like(self.name, data)
        if len(data) > self.max_size:
            self._check_size(len(data), "received")
        try:
            return msgpack.unpackb(
                data,
                raw=False,
                ext_hook=_reject_ext,
                timestamp=3,
                strict_map_key=False,
            )
        except SerializationError:
            raise
        except msgpack.ExtraData as exc:
            raise SerializationError(f"msgpack: {len(exc.extra)} trailing bytes after the value") from None
        except msgpack.StackError:
            raise SerializationError("msgpack: malformed data (nested too deeply)") from None
        except msgpack.FormatError:
            raise SerializationError("msgpack: malformed data (invalid type byte)") from None
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
            raise SerializationError(f"msgpack: malformed data ({type(exc).__name__}: {exc})") from None


def _check_bytes_like(serializer: str, data: Any) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(
            f"{serializer}: loads() takes bytes, got {type(data).__name__}; encode text before decoding it"
        )


_BYTES_KEY = "$bytes"


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        raise TypeError("sets are not JSON; pass a list")
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


def _revive(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _BYTES_KEY in value and isinstance(value[_BYTES_KEY], str):
            try:
                return base64.b64decode(value[_BYTES_KEY], validate=True)
            except ValueError as exc:
                raise SerializationError(f"json: invalid base64 in {_BYTES_KEY!r}: {exc}") from None
        return {k: _revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


class JsonSerializer(Serializer):
    """JSON via orjson. ``bytes`` travel as ``{"$bytes": "<base64>"}``.

    So a dict whose only key is ``"$bytes"`` with a string value is reserved:
    it decodes as bytes. Integers must fit in 64 bits (larger ones are refused
    when encoding); non-string dict keys are sent as strings.
    """

    name: ClassVar[str] = "json"

    def dumps(self, value: Any) -> bytes:
        try:
            data = orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise SerializationError(f"json: cannot encode {type(value).__name__}: {exc}") from exc
        if len(data) > self.max_size:
            self._check_size(len(data), "encoded")
        return data

    def loads(self, data: bytes) -> Any:
        if type(data) is not bytes:  # the usual type, without a call
            _check_bytes_like(self.name, data)
        if len(data) > self.max_size:
            self._check_size(len(data), "received")
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(f"json: malformed data ({exc})") from None
        if isinstance(value, (dict, list)):
            try:
                return _revive(value)
            except RecursionError:
                raise SerializationError("json: malformed data (nested too deeply)") from None
        return value


@hookimpl
def rpcnet_register_serializers(register: Register) -> None:
    register(MsgpackSerializer.name, MsgpackSerializer)
    register(JsonSerializer.name, JsonSerializer)

