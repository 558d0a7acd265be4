"""Typed values <-> the serializers' value model, and their JSON Schema.

The typed service layer (:mod:`rpcnet.rpc.services`) sends attrs classes and
plain types (str, int, float, bool, bytes, None, lists, dicts with str keys,
Optional/unions, Literal, enums, datetimes and dates). This module turns them
into the values every serializer carries (maps, lists, scalars, bytes) and
back, through cattrs' preconfigured converters: the msgpack one for
``msgpack`` (and serializers it does not know), the orjson one for ``json``.

On top of the preconfigured converters, the value model is made the same for
every serializer and strict for peers:

- scalars are checked, not coerced: ``"5"`` is not an int, ``1.5`` is not
  an int, ``1`` is not a bool;
- bytes travel as bytes (the json serializer writes them ``{"$bytes": ...}``);
- datetimes and dates travel as ISO 8601 strings, enums as their values;
- unknown fields of a map are ignored and missing ones take their defaults,
  so two versions of a definition talk to each other.

A :class:`Codec` holds the hooks of one type, compiled once; a request that
does not fit raises :class:`ConversionError` whose message names the field
(``$.items[2].price``) and the problem.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

import attrs
import cattrs
from cattrs.fns import identity as _cattrs_identity
from cattrs.preconf.msgpack import make_converter as make_msgpack_converter
from cattrs.preconf.orjson import make_converter as make_orjson_converter

__all__ = ["Codec", "ConversionError", "check_type", "converter_for", "json_schema", "type_name"]


class ConversionError(ValueError):
    """A value does not fit its declared type; the message names the field and the problem."""


class _Mismatch(TypeError):
    """Raised by the strict scalar hooks; its message is what the caller reads."""


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _strict_int(value: Any, _: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise _Mismatch(f"expected an integer, got {_describe(value)}")


def _strict_float(value: Any, _: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _Mismatch(f"expected a number, got {_describe(value)}")


def _strict_str(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    raise _Mismatch(f"expected a string, got {_describe(value)}")


def _strict_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Mismatch(f"expected a boolean, got {_describe(value)}")


def _strict_bytes(value: Any, _: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise _Mismatch(f"expected bytes, got {_describe(value)}")


def _structure_datetime(value: Any, _: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Mismatch(f"expected an ISO 8601 date-time, got {value!r}") from None
    raise _Mismatch(f"expected an ISO 8601 date-time string, got {_describe(value)}")


def _structure_date(value: Any, _: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise _Mismatch(f"expected an ISO 8601 date, got {value!r}") from None
    raise _Mismatch(f"expected an ISO 8601 date string, got {_describe(value)}")


def _is_enum(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, enum.Enum)


def _enum_structure(cls: type[enum.Enum]) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise _Mismatch(f"expected one of {allowed} ({cls.__name__}), got {value!r}") from None

    return structure


def _attrs_mapping_check(converter: cattrs.Converter) -> None:
    """An attrs class arrives as a map: say so instead of cattrs' 'not iterable'."""

    def factory(cls: type) -> Callable[[Any, Any], Any]:
        inner: Callable[[Any, Any], Any] = converter.gen_structure_attrs_fromdict(cls)

        def structure(value: Any, target: Any) -> Any:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise _Mismatch(f"expected a map ({cls.__name__}), got {_describe(value)}")
            return inner(value, target)

        return structure

    converter.register_structure_hook_factory(attrs.has, factory)


def _configure(converter: cattrs.Converter) -> cattrs.Converter:
    for cls, hook in (
        (int, _strict_int),
        (float, _strict_float),
        (str, _strict_str),
        (bool, _strict_bool),
        (bytes, _strict_bytes),
        (dt.datetime, _structure_datetime),
        (dt.date, _structure_date),
    ):
        converter.register_structure_hook(cls, hook)
    # cattrs' own identity (not a lambda): generated unstructure functions
    # then read the field directly instead of calling a hook.
    converter.register_unstructure_hook(bytes, _cattrs_identity)
    converter.register_unstructure_hook(dt.datetime, lambda value: value.isoformat())
    converter.register_unstructure_hook(dt.date, lambda value: value.isoformat())
    converter.register_structure_hook_factory(_is_enum, _enum_structure)
    converter.register_unstructure_hook_factory(_is_enum, lambda cls: lambda value: value.value)
    _attrs_mapping_check(converter)
    return converter


@functools.cache
def converter_for(serializer: str) -> cattrs.Converter:
    """The converter matched to a serializer by name: orjson's for ``json``, msgpack's otherwise."""
    make = make_orjson_converter if serializer == "json" else make_msgpack_converter
    converter = _configure(make(forbid_extra_keys=False))
    # Its twin without detailed validation: the same hooks, so it accepts and
    # rejects the same values, but its generated functions call the class
    # directly instead of gathering each field's errors. Values are loaded
    # with the twin; only a value it rejects is loaded again by ``converter``,
    # whose error names the field.
    fast = _configure(make(forbid_extra_keys=False, detailed_validation=False))
    fast.register_structure_hook_factory(lambda cls: _scalar_fields(cls) is not None, _scalar_structure)
    _FAST_TWINS[id(converter)] = (converter, fast)
    return converter


#: Scalars whose strict hooks return a value of exactly this type unchanged.
_EXACT_SCALARS = (str, int, float, bool, bytes)


def _scalar_fields(cls: Any) -> tuple[attrs.Attribute, ...] | None:  # type: ignore[type-arg]
    """The fields of an attrs class that only has required scalar fields, passed
    by position under their own names; None for any other class."""
    if not isinstance(cls, type) or not attrs.has(cls):
        return None
    parameters: Any = getattr(cls, "__parameters__", None)
    if parameters:  # a generic class: its field types are type variables
        return None
    attrs.resolve_types(cls)
    fields: tuple[attrs.Attribute, ...] = attrs.fields(cls)  # type: ignore[type-arg]
    for field in fields:
        if (
            not field.init
            or field.kw_only
            or field.default is not attrs.NOTHING
            or field.alias != field.name
            or field.type not in _EXACT_SCALARS
        ):
            return None
    return fields


def _scalar_structure(cls: type) -> Callable[[Any, Any], Any]:
    """One generated function for a class of required scalar fields: the map
    check, each field of exactly its type taken as it is (what the strict
    hook would return), any other value through the strict hook, then the
    class. It raises anything on a bad value; the detailed converter then
    says what is wrong."""
    fields = _scalar_fields(cls)
    assert fields is not None
    namespace: dict[str, Any] = {"cls": cls, "Mapping": Mapping}
    hooks = {str: _strict_str, int: _strict_int, float: _strict_float, bool: _strict_bool, bytes: _strict_bytes}
    arguments = []
    for index, field in enumerate(fields):
        namespace[f"t{index}"] = field.type
        namespace[f"h{index}"] = hooks[field.type]  # type: ignore[index]
        arguments.append(f"v if type(v := o[{field.name!r}]) is t{index} else h{index}(v, t{index})")
    source = (
        "def structure(o, _):\n"
        "    if type(o) is not dict and not isinstance(o, Mapping):\n"
        "        raise TypeError('not a map')\n"
        f"    return cls({', '.join(f'({a})' for a in arguments)})\n"
    )
    exec(compile(source, f"<rpcnet structure {cls.__module__}.{cls.__qualname__}>", "exec"), namespace)
    structure: Callable[[Any, Any], Any] = namespace["structure"]
    return structure


#: id(converter_for(...)) -> (that converter, its twin without detailed validation).
_FAST_TWINS: dict[int, tuple[cattrs.Converter, cattrs.Converter]] = {}


def _fast_twin(converter: cattrs.Converter) -> cattrs.Converter | None:
    entry = _FAST_TWINS.get(id(converter))
    return entry[1] if entry is not None and entry[0] is converter else None


def _format(exc: BaseException, target: Any) -> str:
    if isinstance(exc, _Mismatch):
        return str(exc)
    if isinstance(exc, (ValueError, TypeError)) and exc.args and isinstance(exc.args[0], str):
        # attrs validators and converters raise these with a message of their own
        # (validators add the attribute and the value as further args).
        return f"{cattrs.v.format_exception(exc, target)}: {exc.args[0]}"
    return cattrs.v.format_exception(exc, target)


def _explain(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="$", format_exception=_format))
    return f"{_format(exc, None)} @ $"


class Codec:
    """Compiled hooks for one type on one converter: ``load`` (value model -> typed)
    and ``dump`` (typed -> value model).

    ``structure(value, type)`` is the fastest hook that loads a valid value;
    it raises anything on an invalid one, and then ``load`` (which raises
    :class:`ConversionError` naming the field) tells why. Callers on a hot
    path call ``structure`` in a ``try`` and fall back to ``load``.
    """

    __slots__ = ("type", "load", "dump", "check", "structure")

    def __init__(self, converter: cattrs.Converter, tp: Any) -> None:
        self.type = tp
        if tp is None or tp is type(None):
            self.load: Callable[[Any], Any] = _load_none
            self.structure: Callable[[Any, Any], Any] = _structure_none
            self.dump: Callable[[Any], Any] = _identity
            self.check: type | None = None
            return
        if tp is Any:
            self.load = self.dump = _identity
            self.structure = _structure_any
            self.check = None
            return
        detailed = converter.get_structure_hook(tp)
        fast = _fast_twin(converter)
        structure = detailed if fast is None else fast.get_structure_hook(tp)

        def load(value: Any) -> Any:
            try:
                return structure(value, tp)
            except Exception:
                pass
            try:
                return detailed(value, tp)
            except Exception as exc:
                raise ConversionError(_explain(exc)) from None

        self.load = load
        self.structure = structure
        self.dump = (converter if fast is None else fast).get_unstructure_hook(tp)
        #: attrs classes are checked before they are dumped (a wrong object fails clearly).
        self.check = tp if attrs.has(tp) else None

    def dump_checked(self, value: Any, what: str) -> Any:
        check = self.check
        if check is not None and not isinstance(value, check):
            raise TypeError(f"{what} takes {check.__name__}, got {type(value).__name__}")
        return self.dump(value)


def _identity(value: Any) -> Any:
    return value


def _load_none(value: Any) -> None:
    if value is not None:
        raise ConversionError(f"expected null, got {_describe(value)} @ $")
    return None


def _structure_none(value: Any, _: Any) -> None:
    return _load_none(value)


def _structure_any(value: Any, _: Any) -> Any:
    return value


# -- which types are supported ---------------------------------------------------

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    bytes: {
        "type": "object",
        "description": "bytes; msgpack carries them natively, JSON as {\"$bytes\": base64}",
        "properties": {"$bytes": {"type": "string", "contentEncoding": "base64"}},
        "required": ["$bytes"],
        "additionalProperties": False,
    },
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    type(None): {"type": "null"},
    None: {"type": "null"},
}

_LISTS = (list, Sequence, tuple)
_DICTS = (dict, Mapping)


def type_name(tp: Any) -> str:
    """A short readable name: ``AddRequest``, ``list[int]``, ``str | None``."""
    if tp is None or tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    union = _union_args(tp)
    if union is not None:
        return " | ".join(type_name(arg) for arg in union)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{getattr(origin, '__name__', repr(origin))}[{inner}]"
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def check_type(tp: Any, where: str) -> None:
    """Raise TypeError naming ``where`` when ``tp`` is not a supported type."""
    _walk(tp, where, set())


def _walk(tp: Any, where: str, seen: set[Any]) -> None:
    if tp in _SCALARS or tp is Any or _is_enum(tp):
        return
    if attrs.has(tp):
        if tp in seen:
            return
        seen.add(tp)
        attrs.resolve_types(tp)
        for field in attrs.fields(tp):
            _walk(field.type, f"{where} (field {tp.__name__}.{field.name})", seen)
        return
    union = _union_args(tp)
    if union is not None:
        for arg in union:
            _walk(arg, where, seen)
        return
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return
    if origin in _LISTS:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"{where}: {type_name(tp)} is not supported; use tuple[X, ...] or list[X]")
        if not args:
            raise TypeError(f"{where}: {type_name(tp)} needs an item type, e.g. list[int]")
        _walk(args[0], where, seen)
        return
    if origin in _DICTS:
        if len(args) != 2:
            raise TypeError(f"{where}: {type_name(tp)} needs key and value types, e.g. dict[str, int]")
        if args[0] is not str:
            raise TypeError(f"{where}: {type_name(tp)} has {type_name(args[0])} keys; keys must be str (JSON objects have string keys)")
        _walk(args[1], where, seen)
        return
    raise TypeError(
        f"{where}: {type_name(tp)} is not supported; use an attrs class, str, int, float, bool, bytes, "
        "None, list[X], dict[str, X], X | None, Literal, an enum, datetime or date"
    )


# -- JSON Schema ------------------------------------------------------------------


class SchemaBuilder:
    """JSON Schema (2020-12) of supported types; attrs classes and enums go into ``defs``."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self._names: dict[Any, str] = {}

    def _def_name(self, cls: type) -> str:
        name = self._names.get(cls)
        if name is None:
            name = cls.__name__
            if name in self.defs or name in self._names.values():
                name = f"{cls.__module__}.{cls.__qualname__}"
            self._names[cls] = name
        return name

    def schema(self, tp: Any) -> dict[str, Any]:
        if tp in _SCALARS:
            return dict(_SCALARS[tp])
        if tp is Any:
            return {}
        if _is_enum(tp):
            return self._named(tp, lambda: {"enum": [member.value for member in tp], "title": tp.__name__})
        if attrs.has(tp):
            return self._named(tp, lambda: self._attrs(tp))
        union = _union_args(tp)
        if union is not None:
            return {"anyOf": [self.schema(arg) for arg in union]}
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is Literal:
            return {"enum": [a.value if isinstance(a, enum.Enum) else a for a in args]}
        if origin in _LISTS:
            return {"type": "array", "items": self.schema(args[0])}
        if origin in _DICTS:
            return {"type": "object", "additionalProperties": self.schema(args[1])}
        raise TypeError(f"no JSON Schema for {type_name(tp)}")

    def _named(self, cls: type, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        name = self._def_name(cls)
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: recursive types refer to themselves
            self.defs[name] = build()
        return {"$ref": f"#/$defs/{name}"}

    def _attrs(self, cls: type) -> dict[str, Any]:
        attrs.resolve_types(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            if not field.init:
                continue
            prop = self.schema(field.type)
            if field.default is attrs.NOTHING:
                required.append(field.name)
            elif not isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                default = field.default
                if isinstance(default, enum.Enum):
                    default = default.value
                if default is None or isinstance(default, (str, int, float, bool)):
                    prop["default"] = default
            properties[field.name] = prop
        schema: dict[str, Any] = {"type": "object", "title": cls.__name__, "properties": properties}
        if required:
            schema["required"] = required
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(f"{cls.__name__}("):  # attrs' generated docstring says nothing
            schema["description"] = doc.split("\n\n")[0]
        return schema


def json_schema(tp: Any) -> dict[str, Any]:
    """A standalone JSON Schema of ``tp`` (definitions inlined under ``$defs``)."""
    builder = SchemaBuilder()
    schema = builder.schema(tp)
    if builder.defs:
        schema["$defs"] = builder.defs
    return schema
