"""Calculator: a typed service with a typed error (division by zero).

    python examples/typed/calculator.py            # server and client in one process (memory transport)
    python examples/typed/calculator.py --serve 127.0.0.1:7000 --certs ./certs
                                                   # a QUIC server for `rpcnet describe` / `rpcnet call`
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar, Protocol

import attrs

from rpcnet import RpcClient, RpcConfig, RpcServer, Service, ServiceError, StatusCode, TlsConfig, rpcmethod


@attrs.frozen
class Operands:
    a: float
    b: float


@attrs.frozen
class Result:
    value: float


@attrs.define
class DivisionByZero(ServiceError):
    """The divisor was zero."""

    code: ClassVar[StatusCode] = StatusCode.INVALID_ARGUMENT
    message_template: ClassVar[str] = "cannot divide {dividend} by zero"
    dividend: float


class Calculator(Service, Protocol, name="calc.Calculator"):
    """Arithmetic on two operands, and sums of streams."""

    @rpcmethod(idempotent=True)
    async def add(self, request: Operands) -> Result: ...

    @rpcmethod(idempotent=True)
    async def multiply(self, request: Operands) -> Result: ...

    @rpcmethod(idempotent=True, errors=[DivisionByZero])
    async def divide(self, request: Operands) -> Result: ...

    async def sum(self, numbers: AsyncIterator[float]) -> Result:
        """Client streaming: the sum of every number sent."""
        ...

    def running_total(self, numbers: AsyncIterator[float]) -> AsyncIterator[Result]:
        """Bidirectional: the total so far, after each number."""
        ...


class CalculatorService(Calculator):
    async def add(self, request: Operands) -> Result:
        return Result(request.a + request.b)

    async def multiply(self, request: Operands) -> Result:
        return Result(request.a * request.b)

    async def divide(self, request: Operands) -> Result:
        if request.b == 0:
            raise DivisionByZero(dividend=request.a)
        return Result(request.a / request.b)

    async def sum(self, numbers: AsyncIterator[float]) -> Result:
        return Result(sum([n async for n in numbers]))

    async def running_total(self, numbers: AsyncIterator[float]) -> AsyncIterator[Result]:
        total = 0.0
        async for number in numbers:
            total += number
            yield Result(total)


async def numbers(*values: float) -> AsyncIterator[float]:
    for value in values:
        yield value


async def use(calc: Calculator) -> list[str]:
    lines = [
        f"2 + 3 = {(await calc.add(Operands(2, 3))).value}",
        f"4 * 2.5 = {(await calc.with_options(timeout=1.0).multiply(Operands(4, 2.5))).value}",
        f"sum(1..4) = {(await calc.sum(numbers(1, 2, 3, 4))).value}",
        f"running totals: {[r.value async for r in calc.running_total(numbers(1, 2, 3))]}",
    ]
    try:
        await calc.divide(Operands(1, 0))
    except DivisionByZero as error:
        lines.append(f"1 / 0 -> {type(error).__name__}(dividend={error.dividend}): {error}")
    return lines


async def main() -> list[str]:
    config = RpcConfig(transport="memory")
    server = RpcServer(config)
    server.add_service(CalculatorService())
    address = await server.start(("calculator", 0))
    try:
        async with RpcClient(address, config) as client:
            return await use(Calculator.client(client))
    finally:
        await server.stop()


async def serve(listen: str, certs: Path) -> None:
    tls = TlsConfig(cert_file=certs / "server.pem", key_file=certs / "server.key", ca_file=certs / "ca.pem")
    server = RpcServer(RpcConfig(transport="quic", tls=tls))
    server.add_service(CalculatorService())
    host, port = await server.start(listen)
    print(f"serving calc.Calculator on {host}:{port}", flush=True)
    await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", metavar="HOST:PORT", help="serve over QUIC instead of running the demo")
    parser.add_argument("--certs", type=Path, default=Path("certs"), help="directory from `rpcnet certs` (with --serve)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.certs))
    else:
        print("\n".join(asyncio.run(main())))
    sys.exit(0)
