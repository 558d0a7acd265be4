"""The conformance suite runs by transport name, as a third party runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run_suite(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Outside this repository (no pyproject, no conftest): strict asyncio
    # mode and nothing of ours but the installed package.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "rpcnet.testing.transport_conformance", "--pyargs", "rpcnet.testing.transport_conformance",
         "-p", "no:cacheprovider", "-q", *args],
        cwd=directory, capture_output=True, text=True, timeout=120,
    )


def test_the_suite_runs_for_a_transport_named_on_the_command_line(tmp_path: Path) -> None:
    result = _run_suite(
        tmp_path, "--rpcnet-transport=memory", "-k", "credit_comes_back or messages_sent_before_an_error"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_without_a_transport_name_it_says_how_to_give_one(tmp_path: Path) -> None:
    result = _run_suite(tmp_path, "-k", "credit_comes_back", "-rs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--rpcnet-transport=NAME" in result.stdout
