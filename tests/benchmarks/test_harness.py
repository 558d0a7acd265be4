"""The benchmark harness runs end to end and reports what it measured.

Only the shape of the report is checked: speed is measured by the harness,
never asserted by a test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "rpc_bench.py"
SCENARIOS = ("unary64_c1", "unary64_c64", "unary_1mib", "stream_throughput")
#: Default scenarios only the rpcnet target runs.
TYPED_SCENARIOS = ("typed_unary64_c64", "typed_stream_throughput")


@pytest.fixture(scope="module")
def quick_tcp_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("bench") / "report.json"
    completed = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--targets", "plain_tcp", "--json", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert json.loads(output.read_text()) == report
    return report


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_run_reports_every_scenario_for_the_chosen_target(quick_tcp_report: dict) -> None:
    assert set(quick_tcp_report) == {
        "meta", "scenarios", "results", "ratios", "paired_ratios", "goals", "credit_goals", "typed_overhead"
    }
    assert set(quick_tcp_report["scenarios"]) == set(SCENARIOS) | set(TYPED_SCENARIOS)
    results = quick_tcp_report["results"]
    assert [(r["scenario"], r["target"]) for r in results] == [(s, "plain_tcp") for s in SCENARIOS]
    assert quick_tcp_report["meta"]["repeat"] == 1


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ratios_are_unmeasured_without_rpcnet_and_goals_need_their_baseline(quick_tcp_report: dict) -> None:
    assert quick_tcp_report["ratios"] == {scenario: {"plain_tcp": None} for scenario in SCENARIOS}
    assert quick_tcp_report["paired_ratios"] == {scenario: {"plain_tcp": None} for scenario in SCENARIOS}
    # Every goal compares two targets other than plain_tcp, none of which ran.
    assert quick_tcp_report["goals"] == []
    assert quick_tcp_report["typed_overhead"] == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_typed_scenarios_run_beside_their_untyped_twins_on_rpcnet(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--targets", "rpcnet,plain_tcp", "--json",
         "--scenarios", "unary64_c64,typed_unary64_c64"],
        capture_output=True, text=True, timeout=180,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    # The typed scenario runs on rpcnet only; the untyped one on both.
    assert [(r["scenario"], r["target"], r["status"]) for r in report["results"]] == [
        ("unary64_c64", "rpcnet", "ok"), ("unary64_c64", "plain_tcp", "ok"), ("typed_unary64_c64", "rpcnet", "ok"),
    ]
    (row,) = report["typed_overhead"]
    assert (row["typed"], row["untyped"], row["minimum"]) == ("typed_unary64_c64", "unary64_c64", 0.9)
    assert row["ratio"] > 0 and row["met"] == (row["ratio"] >= 0.9)


def test_unknown_target_is_refused_with_the_available_names() -> None:
    completed = subprocess.run(
        [sys.executable, str(HARNESS), "--targets", "nope"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode != 0
    assert "unknown target nope" in completed.stderr
    assert "raw_aioquic" in completed.stderr


def _load_harness():
    spec = importlib.util.spec_from_file_location("rpc_bench", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outcome(harness, scenario: str, target: str, rates: list[float]):
    outcome = harness.Outcome(scenario=scenario, target=target)
    outcome.runs = [{"repetition": i, "requests_per_s": rate} for i, rate in enumerate(rates, start=1)]
    return outcome


def test_the_reported_run_is_the_median_by_requests_per_second() -> None:
    harness = _load_harness()
    assert _outcome(harness, "s", "plain_tcp", [30.0, 10.0, 20.0]).median["requests_per_s"] == 20.0
    # Of two middles, the lower one: an even count never flatters a target.
    assert _outcome(harness, "s", "plain_tcp", [40.0, 10.0, 30.0, 20.0]).median["requests_per_s"] == 20.0
    assert harness.Outcome(scenario="s", target="plain_tcp").median is None


def test_ratios_divide_rpcnet_by_each_baseline_and_goals_compare_them_with_the_minimum() -> None:
    harness = _load_harness()
    outcomes = [
        _outcome(harness, "unary64_c64", "rpcnet", [90.0, 100.0, 80.0]),
        _outcome(harness, "unary64_c64", "raw_aioquic", [100.0, 125.0, 150.0]),
        _outcome(harness, "unary64_c64", "grpc_aio", [30.0, 20.0, 25.0]),
    ]
    ratios = harness.ratios(outcomes)
    assert ratios == {"unary64_c64": {"raw_aioquic": 90.0 / 125.0, "grpc_aio": 90.0 / 25.0}}
    # Paired by repetition: 0.9, 0.8, 0.533 -> median 0.8; 3.0, 5.0, 3.2 -> 3.2.
    paired = harness.paired_ratios(outcomes)
    assert paired["unary64_c64"]["raw_aioquic"] == pytest.approx(0.8)
    assert paired["unary64_c64"]["grpc_aio"] == pytest.approx(3.2)
    verdicts = {(g["baseline"], g["met"]) for g in harness.goals(outcomes)}
    assert verdicts == {("raw_aioquic", False), ("grpc_aio", True)}


def test_ratios_are_none_when_rpcnet_measured_nothing() -> None:
    harness = _load_harness()
    missing = harness.Outcome(scenario="unary64_c64", target="rpcnet", unavailable="not built")
    outcomes = [missing, _outcome(harness, "unary64_c64", "grpc_aio", [10.0])]
    assert harness.ratios(outcomes) == {"unary64_c64": {"grpc_aio": None}}
    assert harness.paired_ratios(outcomes) == {"unary64_c64": {"grpc_aio": None}}
    assert harness.goals(outcomes) == [
        {"scenario": "unary64_c64", "baseline": "grpc_aio", "minimum": 3.0, "maximum": None,
         "subject": "rpcnet", "metric": "requests_per_s", "ratio": None, "met": None}
    ]


def test_tcp_goals_compare_rpcnet_tcp_with_their_own_baselines_and_latency_must_stay_below() -> None:
    harness = _load_harness()

    def outcome(scenario: str, target: str, rate: float, p50: float):
        found = harness.Outcome(scenario=scenario, target=target)
        found.runs = [{"repetition": 1, "requests_per_s": rate, "p50_us": p50}]
        return found

    outcomes = [
        outcome("unary64_c64", "rpcnet", 100.0, 10.0),
        outcome("unary64_c64", "rpcnet_tcp", 140.0, 8.0),
        outcome("unary64_c1", "rpcnet_tcp", 10.0, 140.0),
        outcome("unary64_c1", "tls_tcp", 30.0, 100.0),
    ]
    report = {(g["scenario"], g["subject"], g["baseline"]): (g["ratio"], g["met"]) for g in harness.goals(outcomes)}
    assert report == {
        ("unary64_c64", "rpcnet_tcp", "rpcnet"): (pytest.approx(1.4), False),
        ("unary64_c1", "rpcnet_tcp", "tls_tcp"): (pytest.approx(1.4), True),
    }


def test_a_goal_without_a_bound_reports_its_ratio_and_no_verdict() -> None:
    harness = _load_harness()

    def outcome(target: str, rate: float):
        found = harness.Outcome(scenario="unary64_c64", target=target)
        found.runs = [{"repetition": 1, "requests_per_s": rate, "p50_us": 1.0}]
        return found

    report = {
        (g["subject"], g["baseline"]): (g["ratio"], g["met"])
        for g in harness.goals([outcome("rpcnet_tcp", 300.0), outcome("rpcnet_qh3", 200.0)])
    }
    assert report == {("rpcnet_tcp", "rpcnet_qh3"): (pytest.approx(1.5), None)}
