"""Addresses as users write them: parse_address and format_address."""

from __future__ import annotations

import pytest

from rpcnet.transport import format_address, parse_address


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("10.0.0.1:7000", ("10.0.0.1", 7000)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:443", ("::1", 443)),
        ("[fe80::1]:65535", ("fe80::1", 65535)),
        (" db.internal:5432 ", ("db.internal", 5432)),
    ],
)
def test_parse_and_format_round_trip(text, address):
    assert parse_address(text) == address
    assert parse_address(format_address(address)) == address
    assert parse_address(address) == address


def test_format_brackets_ipv6_only():
    assert format_address(("::1", 7)) == "[::1]:7"
    assert format_address(("127.0.0.1", 7)) == "127.0.0.1:7"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1", "has no port; write host:port"),
        ("host:http", "has an invalid port 'http'"),
        ("host:70000", "port must be 0-65535"),
        ("[::1]:-1", "port must be 0-65535"),
    ],
)
def test_a_bad_address_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_address(text)
