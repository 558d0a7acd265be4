"""``mypy --strict`` on the typed API, the typed examples and a typed-client module; and a bad call is a mypy error.

rpcnet ships ``py.typed``. Other rpcnet modules are read as a library would be
(``follow_imports = silent``: their signatures count, their bodies are not
checked here).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TYPED_API = ["rpcnet/rpc/services.py", "rpcnet/rpc/convert.py", "rpcnet/rpc/reflection.py", "rpcnet/cluster/services.py"]
CHECKED = [
    *TYPED_API,
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples" / "typed").glob("*.py")),
    "rpcnet/demo/inference.py",  # the typed service of the demo and the cluster example
    "tests/rpc/test_typed_client.py",
]

CONFIG = """\
[mypy]
strict = True
[mypy-rpcnet.*]
follow_imports = silent
[mypy-{typed}]
follow_imports = normal
"""


def mypy(tmp_path: Path, *files: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "mypy.ini"
    typed = ",".join(f.removesuffix(".py").replace("/", ".") for f in TYPED_API)
    config.write_text(CONFIG.format(typed=typed))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def test_the_typed_api_examples_and_a_typed_client_pass_mypy_strict(tmp_path: Path) -> None:
    assert (ROOT / "rpcnet" / "py.typed").exists()
    result = mypy(tmp_path, *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


BAD = '''\
from __future__ import annotations

from rpcnet import RpcClient
from examples_calculator import Calculator, Operands, Result


async def use(client: RpcClient) -> None:
    calc = Calculator.client(client)
    await calc.add(Operands(a="1", b=2))
    await calc.add(3)
    text: str = await calc.divide(Operands(1, 2))
    await calc.with_options(timeout="soon").multiply(Operands(1, 2))
    await calc.substract(Operands(1, 2))
    result: Result = await calc.add(Operands(1, 2))


class Incomplete(Calculator):
    async def add(self, request: Operands) -> Result:
        return Result(request.a + request.b)


Incomplete()
'''


def test_a_wrong_call_is_a_mypy_error(tmp_path: Path) -> None:
    (tmp_path / "examples_calculator.py").write_text((ROOT / "examples" / "typed" / "calculator.py").read_text())
    (tmp_path / "bad.py").write_text(BAD)
    result = mypy(tmp_path, str(tmp_path / "bad.py"))
    errors = [line.split(": error: ", 1)[1] for line in result.stdout.splitlines() if ": error: " in line and "bad.py" in line]
    assert errors == [
        'Argument "a" to "Operands" has incompatible type "str"; expected "float"  [arg-type]',
        'Argument 1 to "add" of "Calculator" has incompatible type "int"; expected "Operands"  [arg-type]',
        'Incompatible types in assignment (expression has type "Result", variable has type "str")  [assignment]',
        'Argument "timeout" to "with_options" of "Service" has incompatible type "str"; expected "float | None"  [arg-type]',
        '"Calculator" has no attribute "substract"  [attr-defined]',
        'Cannot instantiate abstract class "Incomplete" with abstract attributes "divide", "multiply", "running_total" and "sum"  [abstract]',
    ], result.stdout
