"""The typed examples in examples/typed/ run and print what they promise."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.examples import load_example


async def test_greeting() -> None:
    assert await load_example("typed/greeting.py").main() == ["Hello, rpcnet!", "Bonjour, Ada?"]


async def test_echo() -> None:
    assert await load_example("typed/echo.py").main() == [
        "echo(b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07') == payload: True",
        "echo: one",
        "echo: two",
        "echo: three",
    ]


async def test_calculator_with_its_typed_error() -> None:
    assert await load_example("typed/calculator.py").main() == [
        "2 + 3 = 5.0",
        "4 * 2.5 = 10.0",
        "sum(1..4) = 10.0",
        "running totals: [1.0, 3.0, 6.0]",
        "1 / 0 -> DivisionByZero(dividend=1.0): INVALID_ARGUMENT: cannot divide 1.0 by zero",
    ]


async def test_file_transfer_of_a_real_file(tmp_path: Path) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(300_000))  # several chunks and a partial one
    work = tmp_path / "work"
    work.mkdir()
    lines = await load_example("typed/file_transfer.py").transfer(source, work)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert lines == [
        f"uploaded payload.bin: 300000 bytes, sha256 {digest[:16]}... (matches the local file)",
        "downloaded 300000 bytes, sha256 matches",
        "missing.bin -> NoSuchFile(name='missing.bin')",
    ]
    assert (work / "server" / "payload.bin").read_bytes() == source.read_bytes()
    assert (work / "downloaded-payload.bin").read_bytes() == source.read_bytes()


async def test_concurrency_runs_calls_side_by_side() -> None:
    lines = await load_example("typed/concurrency.py").main(calls=20, milliseconds=50)
    # Every call waits on the server at once: the server saw all twenty running together.
    assert lines[1] == "at most 20 ran at once on the server; every id answered: True"
