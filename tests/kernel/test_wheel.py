"""The demo from an installed wheel: built from the tree, installed into a clean
virtualenv, run from a directory outside the checkout (what a new user does)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("RPCNET_", "PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | extra


def _copy_tree(target: Path) -> None:
    """The files git would ship (tracked, or new and not ignored): no build or venv debris."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the rpcnet wheel (and its dependencies) installed; its bin directory."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files ship")
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    _copy_tree(source)
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, env=_clean_env(), timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("rpcnet-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    installed = subprocess.run([str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check", "install", "-q",
                                str(wheel)], capture_output=True, text=True, env=_clean_env(), timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return bin_dir


def test_the_wheel_ships_the_demo_programs_and_nothing_from_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c",
         "import rpcnet, rpcnet.demo.worker, rpcnet.demo.director; print(rpcnet.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, env=_clean_env(), timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout


def test_rpcnet_demo_runs_from_the_wheel_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed / "rpcnet"), "demo", "--duration", "10"],
        cwd=tmp_path, capture_output=True, text=True, env=_clean_env(), timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    summary = result.stdout[result.stdout.index("\nsummary\n"):]
    assert "calls ok" in summary and "failed 0" in summary, summary
    assert "OK: no call failed" in summary, summary
