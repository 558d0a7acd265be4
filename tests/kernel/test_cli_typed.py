"""``rpcnet describe`` and ``rpcnet call`` against the calculator example, over QUIC with TLS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rpcnet import RpcConfig, RpcServer, TlsConfig
from rpcnet.cli import main
from tests.examples import load_example

calculator = load_example("typed/calculator.py")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rpcnet.certs import write_dev_certs

    directory = tmp_path_factory.mktemp("certs")
    write_dev_certs(directory, server_names=["127.0.0.1"], client_names=["client"], days=30)
    return directory


@pytest.fixture
async def address(certs: Path) -> Any:
    tls = TlsConfig(cert_file=certs / "server.pem", key_file=certs / "server.key", ca_file=certs / "ca.pem")
    server = RpcServer(RpcConfig(transport="quic", tls=tls))
    server.add_service(calculator.CalculatorService())
    host, port = await server.start(("127.0.0.1", 0))
    yield f"{host}:{port}"
    await server.stop(grace=0)


async def rpcnet(*args: str, input: str | None = None) -> Result:
    # The CLI runs its own event loop, so it runs on a thread while the server serves on this one.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), input=input, catch_exceptions=False)


async def test_describe_lists_services_methods_and_types(address: str, certs: Path) -> None:
    result = await rpcnet("describe", address, "--certs", str(certs))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "service calc.Calculator  -- Arithmetic on two operands, and sums of streams.",
        "  calc.Calculator.add(Operands) -> Result  [idempotent]",
        "  calc.Calculator.multiply(Operands) -> Result  [idempotent]",
        "  calc.Calculator.divide(Operands) -> Result  [idempotent; raises DivisionByZero]",
        "  calc.Calculator.sum(stream float) -> Result",
        "  calc.Calculator.running_total(stream float) -> stream Result",
        "types",
        "  Operands {a: float, b: float}",
        "  Result {value: float}",
        "  DivisionByZero {dividend: float}",
    ]
    as_json = await rpcnet("describe", address, "--certs", str(certs), "--json")
    described = json.loads(as_json.output)
    assert described["$defs"]["Operands"]["required"] == ["a", "b"]


async def test_call_every_kind(address: str, certs: Path) -> None:
    tls = ("--certs", str(certs))
    unary = await rpcnet("call", address, "calc.Calculator.add", '{"a": 2, "b": 3}', *tls)
    assert (unary.exit_code, unary.output) == (0, '{"value":5.0}\n')
    summed = await rpcnet("call", address, "calc.Calculator.sum", *tls, input="1\n2\n3.5\n")
    assert (summed.exit_code, summed.output) == (0, '{"value":6.5}\n')
    running = await rpcnet("call", address, "calc.Calculator.running_total", *tls, input="1\n2\n3\n")
    assert running.output.splitlines() == ['{"value":1.0}', '{"value":3.0}', '{"value":6.0}']


async def test_call_errors_are_one_line(address: str, certs: Path) -> None:
    tls = ("--certs", str(certs))
    typed = await rpcnet("call", address, "calc.Calculator.divide", '{"a": 1, "b": 0}', *tls)
    assert typed.exit_code == 1
    assert typed.output == (
        "Error: calc.Calculator.divide failed: INVALID_ARGUMENT: cannot divide 1.0 by zero "
        '{"type":"DivisionByZero","fields":{"dividend":1.0}}\n'
    )
    invalid = await rpcnet("call", address, "calc.Calculator.add", '{"a": "x"}', *tls)
    assert invalid.output == (
        "Error: calc.Calculator.add failed: INVALID_ARGUMENT: invalid request for calc.Calculator.add: "
        "expected a number, got str @ $.a; required field missing @ $.b\n"
    )
    unknown = await rpcnet("call", address, "calc.Calculator.nope", "{}", *tls)
    assert unknown.output == f"Error: {address} serves no method 'calc.Calculator.nope' (see `rpcnet describe {address}`)\n"
    bad_json = await rpcnet("call", address, "calc.Calculator.add", "{a", *tls)
    assert bad_json.exit_code == 2 and bad_json.output.splitlines()[-1].startswith("Error: REQUEST is not valid JSON: ")
    streamed_arg = await rpcnet("call", address, "calc.Calculator.sum", "1", *tls)
    assert streamed_arg.output.splitlines()[-1] == (
        "Error: calc.Calculator.sum is client_streaming: its requests come from stdin, one JSON value per line"
    )
    for result in (typed, invalid, unknown, bad_json, streamed_arg):
        assert "Traceback" not in result.output


async def test_describe_without_reflection(certs: Path) -> None:
    tls = TlsConfig(cert_file=certs / "server.pem", key_file=certs / "server.key", ca_file=certs / "ca.pem")
    server = RpcServer(RpcConfig(transport="quic", tls=tls, reflection=False))
    host, port = await server.start(("127.0.0.1", 0))
    try:
        result = await rpcnet("describe", f"{host}:{port}", "--certs", str(certs))
    finally:
        await server.stop(grace=0)
    assert result.output == f"Error: {host}:{port} does not answer reflection (it is configured off)\n"
