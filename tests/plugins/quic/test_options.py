"""The plugin registers the ``quic`` strategy, and its options are validated."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest
from rpcnet_quic import QuicOptions, QuicTransport

from rpcnet import make_plugin_manager
from rpcnet.errors import ConfigError
from rpcnet.registry import build_options


def test_quic_is_registered_through_the_entry_point() -> None:
    registry = make_plugin_manager().registry
    assert registry.get("transport", "quic") is QuicTransport
    transport = registry.create("transport", "quic", {"max_streams": 500, "keepalive_interval": None})
    assert isinstance(transport, QuicTransport)
    assert transport.options.max_streams == 500
    assert transport.options.keepalive_interval is None


def _documented(value: object, name: str) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, float):
        return f"{value:g} s"
    if name.endswith(("window", "high_water")):
        for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value % size == 0:
                return f"{value // size} {unit}"
    return str(value)


def test_documented_defaults_are_the_real_ones() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "transport.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", doc, flags=re.M))
    defaults = QuicOptions()
    for field in attrs.fields(QuicOptions):
        assert field.name in table, f"option {field.name} is not documented in docs/transport.md"
        assert table[field.name] == _documented(getattr(defaults, field.name), field.name), field.name


def test_values_from_environment_strings_are_converted() -> None:
    options = build_options("transport", "quic", QuicTransport, {"idle_timeout": "30", "retry": "yes", "keepalive_interval": "off"})
    assert options.idle_timeout == 30.0 and options.retry is True and options.keepalive_interval is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_stream": 10}, "did you mean 'max_streams'"),
        ({"max_streams": 0}, "max_streams must be between 1 and"),
        ({"idle_timeout": -1}, "idle_timeout must be > 0"),
        ({"keepalive_interval": 60, "idle_timeout": 30}, "keepalive_interval .* must be shorter than idle_timeout"),
        ({"max_datagram_size": 500}, "max_datagram_size must be between 1200"),
        ({"congestion_control": "bbr"}, "congestion_control must be one of 'reno', 'cubic'"),
        ({"retry": "maybe"}, "expected a boolean"),
    ],
)
def test_bad_options_say_what_is_wrong(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_options("transport", "quic", QuicTransport, values)
