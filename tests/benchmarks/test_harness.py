"""The benchmark harness runs end to end and reports what it measured.

Only the shape of the report is checked: speed is measured by the harness,
never asserted by a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "rpc_bench.py"
SCENARIOS = ("unary64_c1", "unary64_c64", "unary_1mib", "stream_throughput")


@pytest.fixture(scope="module")
def quick_tcp_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("bench") / "report.json"
    completed = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--targets", "tcp", "--json", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert json.loads(output.read_text()) == report
    return report


@pytest.mark.timeout(240)
def test_quick_run_reports_every_scenario_for_the_chosen_target(quick_tcp_report: dict) -> None:
    assert set(quick_tcp_report) == {"meta", "scenarios", "results", "ratios", "goals"}
    assert set(quick_tcp_report["scenarios"]) == set(SCENARIOS)
    results = quick_tcp_report["results"]
    assert [(r["scenario"], r["target"]) for r in results] == [(s, "tcp") for s in SCENARIOS]
    assert quick_tcp_report["meta"]["repeat"] == 1


@pytest.mark.timeout(240)
def test_each_run_measured_calls_and_latencies(quick_tcp_report: dict) -> None:
    for result in quick_tcp_report["results"]:
        assert result["status"] == "ok", result["reason"]
        assert len(result["runs"]) == 1
        median = result["median"]
        assert median["requests"] > 0
        assert median["requests_per_s"] > 0
        assert 0 < median["p50_us"] <= median["p99_us"]
        assert median["mib_per_s"] > 0
        assert median["messages_per_s"] >= median["requests_per_s"]


@pytest.mark.timeout(240)
def test_ratios_are_unmeasured_without_rpcnet_and_goals_need_their_baseline(quick_tcp_report: dict) -> None:
    assert quick_tcp_report["ratios"] == {scenario: {"tcp": None} for scenario in SCENARIOS}
    # The goals compare rpcnet with raw aioquic and grpc.aio, neither of which ran.
    assert quick_tcp_report["goals"] == []


def test_unknown_target_is_refused_with_the_available_names() -> None:
    completed = subprocess.run(
        [sys.executable, str(HARNESS), "--targets", "nope"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode != 0
    assert "unknown target nope" in completed.stderr
    assert "raw_aioquic" in completed.stderr
