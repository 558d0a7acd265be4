"""Side-by-side RPC benchmark: rpcnet (on QUIC and on TCP) against grpc.aio, raw aioquic, and TLS and plain TCP floors.

Every run starts a fresh server process and a separate client process for one
(target, scenario) pair; this driver only launches them and collects the
client's result, so it takes no CPU from either side while they measure.
Runs are interleaved (every target of a scenario, then the next scenario, then
the next repetition) so a slow patch of the machine hits all targets alike.
Each pair is repeated ``--repeat`` times and the run with the median
requests/s is reported, together with the ratio rpcnet / each baseline.

    python benchmarks/rpc_bench.py                      # everything, a few minutes
    python benchmarks/rpc_bench.py --quick              # smoke run
    python benchmarks/rpc_bench.py --scenarios unary64_c64 --targets rpcnet,raw_aioquic,grpc_aio
    python benchmarks/rpc_bench.py --json > result.json

Numbers are measured, never asserted: the goals are printed as met or not.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from devcerts import write_dev_certs  # noqa: E402
from scenarios import DEFAULT_CREDIT, DEFAULT_SCENARIOS, SCENARIOS  # noqa: E402
from targets import TARGETS  # noqa: E402

WORKER = BENCH_DIR / "worker.py"
SUBJECT = "rpcnet"
BASELINES = tuple(t for t in TARGETS if t != SUBJECT)


@attrs.frozen(kw_only=True)
class Goal:
    """``subject``'s ``metric`` divided by ``baseline``'s, from the same run, must be
    at least ``minimum`` (throughput) or at most ``maximum`` (latency); with
    neither, the ratio is only reported."""

    scenario: str
    baseline: str
    minimum: float | None = None
    maximum: float | None = None
    subject: str = SUBJECT
    metric: str = "requests_per_s"


GOALS = (
    Goal(scenario="unary64_c64", baseline="raw_aioquic", minimum=0.8),
    Goal(scenario="unary64_c64", baseline="grpc_aio", minimum=3.0),
    # The tcp transport (issue 14): bulk at least grpc.aio's, many small calls
    # well above rpcnet on QUIC, a lone call close to the TLS floor.
    Goal(scenario="unary_1mib", baseline="grpc_aio", minimum=1.0, subject="rpcnet_tcp"),
    Goal(scenario="stream_throughput", baseline="grpc_aio", minimum=1.0, subject="rpcnet_tcp"),
    Goal(scenario="unary64_c64", baseline="rpcnet", minimum=1.5, subject="rpcnet_tcp"),
    Goal(scenario="unary64_c1", baseline="tls_tcp", maximum=1.5, subject="rpcnet_tcp", metric="p50_us"),
    Goal(scenario="unary64_c64", baseline="rpcnet_qh3", subject="rpcnet_tcp"),  # reported, no bound
    # The qh3 backend (issue 13): well above rpcnet on aioquic, close to qh3
    # without a framework, a lone call as fast as raw qh3's.
    Goal(scenario="unary64_c64", baseline="rpcnet", minimum=2.5, subject="rpcnet_qh3"),
    Goal(scenario="unary64_c64", baseline="raw_qh3", minimum=0.7, subject="rpcnet_qh3"),
    Goal(scenario="unary_1mib", baseline="rpcnet", minimum=3.0, subject="rpcnet_qh3"),
    Goal(scenario="unary_1mib", baseline="raw_qh3", minimum=0.8, subject="rpcnet_qh3"),
    Goal(scenario="stream_throughput", baseline="rpcnet", minimum=3.0, subject="rpcnet_qh3"),
    Goal(scenario="stream_throughput", baseline="raw_qh3", minimum=0.8, subject="rpcnet_qh3"),
    Goal(scenario="unary64_c1", baseline="raw_qh3", maximum=1.2, subject="rpcnet_qh3", metric="p50_us"),
)

#: Printed beside the goals: what the floors cost, for the scenarios that have goals.
FLOORS = ("tls_tcp", "plain_tcp")


@attrs.frozen(kw_only=True)
class CreditGoal:
    """rpcnet with many more callers than stream credit, against itself with few.

    Every call succeeds (a failed call fails the run); requests/s is at least
    ``minimum`` times the reference's; the client's peak RSS is at most the
    reference's plus 2 x credit x payload (a request encoded, and its copy in
    the transport's send buffer, per call that holds a stream).
    """

    scenario: str
    reference: str
    minimum: float


CREDIT_GOALS = (CreditGoal(scenario="unary256k_c1000", reference="unary256k_c16", minimum=0.9),)


@attrs.define
class Outcome:
    """Every run of one (scenario, target) pair."""

    scenario: str
    target: str
    runs: list[dict[str, Any]] = attrs.field(factory=list)
    failures: list[str] = attrs.field(factory=list)
    unavailable: str | None = None

    @property
    def status(self) -> str:
        if self.unavailable is not None:
            return "unavailable"
        return "ok" if self.runs else "failed"

    @property
    def median(self) -> dict[str, Any] | None:
        """The run whose requests/s is the median (the lower one of two middles)."""
        if not self.runs:
            return None
        ordered = sorted(self.runs, key=lambda run: run["requests_per_s"])
        return ordered[(len(ordered) - 1) // 2]

    def as_json(self) -> dict[str, Any]:
        reason = self.unavailable if self.unavailable is not None else ("; ".join(self.failures) or None)
        return {
            "scenario": self.scenario,
            "target": self.target,
            "status": self.status,
            "reason": reason,
            "median": self.median,
            "runs": self.runs,
            "failed_runs": len(self.failures),
        }


class RunFailed(Exception):
    pass


class TargetUnavailableHere(Exception):
    pass


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _last_line(text: str) -> str:
    """The last line of a log: for a traceback, the exception itself."""
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else "no output"


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        process.kill()
        await process.wait()


async def run_once(target: str, scenario: str, options: argparse.Namespace, tls_dir: str) -> dict[str, Any]:
    """Start a server, run one client against it, stop the server; return the client's result."""
    common = [target, "--tls-dir", tls_dir, "--host", options.host]
    if options.uvloop:
        common.append("--uvloop")
    server_cpu = ["--cpu", str(options.cpus[0])] if options.pin else []
    client_cpu = ["--cpu", str(options.cpus[1])] if options.pin else []
    env = dict(os.environ)
    if options.quic_options:
        env["RPCNET_BENCH_QUIC_OPTIONS"] = json.dumps(options.quic_options)
    if SCENARIOS[scenario].max_datagram is not None:
        env["RPCNET_BENCH_MAX_DATAGRAM"] = str(SCENARIOS[scenario].max_datagram)
    with tempfile.TemporaryFile(mode="w+") as server_errors:
        server = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), "server", *common, *server_cpu, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=server_errors,
        )
        try:
            assert server.stdout is not None

            def server_log() -> str:
                server_errors.seek(0)
                return _tail(server_errors.read())

            try:
                line = (await asyncio.wait_for(server.stdout.readline(), timeout=options.startup_timeout)).decode()
            except TimeoutError:
                raise RunFailed(
                    f"server did not report READY within {options.startup_timeout:g} s:\n{server_log()}"
                ) from None
            if line.startswith("UNAVAILABLE"):
                raise TargetUnavailableHere(line.partition(" ")[2].strip())
            if not line.startswith("READY"):
                await server.wait()
                log = server_log()
                raise RunFailed(f"server exited with status {server.returncode}: {_last_line(log)}\n{log}")
            port = line.split()[1]

            client = await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), "client", *common, *client_cpu,
                "--port", port, "--scenario", scenario,
                "--warmup", str(options.warmup), "--duration", str(options.duration),
                "--server-pid", str(server.pid),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=env,
            )
            # Callers finish the call they are in after the window: with many
            # more callers than stream credit that takes a while.
            budget = options.warmup + options.duration + options.startup_timeout + 30 + SCENARIOS[scenario].concurrency / 4
            try:
                out, err = await asyncio.wait_for(client.communicate(), timeout=budget)
            except TimeoutError:
                client.kill()
                await client.wait()
                raise RunFailed(f"client did not finish within {budget:g} s") from None
            lines = out.decode().splitlines()
            for text in lines:
                if text.startswith("RESULT "):
                    result = json.loads(text[len("RESULT "):])
                    break
                if text.startswith("UNAVAILABLE"):
                    raise TargetUnavailableHere(text.partition(" ")[2].strip())
            else:
                log = _tail(err.decode())
                detail = f"client exited with status {client.returncode}: {_last_line(log)}"
                if server.returncode is not None:
                    detail += f" (server exited with status {server.returncode})"
                raise RunFailed(f"{detail}\n{log}\n{server_log()}".rstrip())
        finally:
            await _stop(server)
    return result


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_all(options: argparse.Namespace) -> list[Outcome]:
    outcomes = {
        (s, t): Outcome(scenario=s, target=t)
        for s in options.scenarios
        for t in options.targets
        if SCENARIOS[s].runs_on(t)
    }
    unavailable: dict[str, str] = {}
    total = len(outcomes) * options.repeat
    done = 0
    with tempfile.TemporaryDirectory(prefix="rpcnet-bench-") as tls_dir:
        write_dev_certs(tls_dir)
        for repetition in range(1, options.repeat + 1):
            for scenario in options.scenarios:
                for target in options.targets:
                    if (scenario, target) not in outcomes:
                        continue
                    done += 1
                    outcome = outcomes[(scenario, target)]
                    label = f"[{done}/{total}] {scenario:<18} {target:<12} run {repetition}/{options.repeat}"
                    if target in unavailable:
                        outcome.unavailable = unavailable[target]
                        continue
                    try:
                        result = await run_once(target, scenario, options, tls_dir)
                    except TargetUnavailableHere as exc:
                        unavailable[target] = str(exc)
                        outcome.unavailable = str(exc)
                        _progress(f"{label}: unavailable: {exc}")
                        continue
                    except RunFailed as exc:
                        outcome.failures.append(str(exc))
                        _progress(f"{label}: FAILED: {exc}")
                        continue
                    result["repetition"] = repetition
                    outcome.runs.append(result)
                    _progress(
                        f"{label}: {_fmt(result['requests_per_s'])} req/s, "
                        f"p50 {_fmt(result['p50_us'])} us, p99 {_fmt(result['p99_us'])} us"
                    )
    for target, reason in unavailable.items():
        for scenario in options.scenarios:
            if (scenario, target) in outcomes:
                outcomes[(scenario, target)].unavailable = reason
    return list(outcomes.values())


def ratios(outcomes: list[Outcome]) -> dict[str, dict[str, float | None]]:
    """rpcnet's median requests/s divided by each baseline's, per scenario."""
    medians = {(o.scenario, o.target): o.median for o in outcomes}
    table: dict[str, dict[str, float | None]] = {}
    for scenario in dict.fromkeys(o.scenario for o in outcomes):
        subject = medians.get((scenario, SUBJECT))
        row: dict[str, float | None] = {}
        for baseline in BASELINES:
            if (scenario, baseline) not in medians:
                continue
            other = medians[(scenario, baseline)]
            ok = subject is not None and other is not None and other["requests_per_s"] > 0
            row[baseline] = subject["requests_per_s"] / other["requests_per_s"] if ok else None
        table[scenario] = row
    return table


def paired_ratios(outcomes: list[Outcome]) -> dict[str, dict[str, float | None]]:
    """Median over repetitions of rpcnet / baseline, each from runs made back to back.

    Less swayed than the ratio of medians when the machine's load changes
    between repetitions.
    """
    runs = {(o.scenario, o.target): {r["repetition"]: r["requests_per_s"] for r in o.runs} for o in outcomes}
    table: dict[str, dict[str, float | None]] = {}
    for scenario in dict.fromkeys(o.scenario for o in outcomes):
        subject = runs.get((scenario, SUBJECT), {})
        row: dict[str, float | None] = {}
        for baseline in BASELINES:
            if (scenario, baseline) not in runs:
                continue
            other = runs[(scenario, baseline)]
            pairs = sorted(subject[rep] / other[rep] for rep in subject.keys() & other.keys() if other[rep] > 0)
            row[baseline] = pairs[(len(pairs) - 1) // 2] if pairs else None
        table[scenario] = row
    return table


#: The typed layer may cost at most this share of rpcnet's requests/s (typed twin / untyped scenario).
TYPED_MINIMUM = 0.9


def typed_overhead(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """rpcnet's typed scenarios against their untyped twins, same run: the ratio of
    medians, and the median of the per-repetition ratios."""
    by_pair = {(o.scenario, o.target): o for o in outcomes}
    report = []
    for outcome in outcomes:
        untyped_name = SCENARIOS[outcome.scenario].untyped
        if untyped_name is None or outcome.target != SUBJECT or (untyped_name, SUBJECT) not in by_pair:
            continue
        untyped = by_pair[(untyped_name, SUBJECT)]
        ratio = None
        if outcome.median is not None and untyped.median is not None:
            ratio = outcome.median["requests_per_s"] / untyped.median["requests_per_s"]
        plain = {r["repetition"]: r["requests_per_s"] for r in untyped.runs}
        pairs = sorted(r["requests_per_s"] / plain[r["repetition"]] for r in outcome.runs if r["repetition"] in plain)
        report.append({
            "typed": outcome.scenario,
            "untyped": untyped_name,
            "ratio": ratio,
            "paired_median": pairs[(len(pairs) - 1) // 2] if pairs else None,
            "minimum": TYPED_MINIMUM,
            "met": None if ratio is None else ratio >= TYPED_MINIMUM,
        })
    return report


def goals(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Each goal whose two targets were part of the run, with its ratio and verdict."""
    by_pair = {(o.scenario, o.target): o for o in outcomes}
    report = []
    for goal in GOALS:
        subject, baseline = by_pair.get((goal.scenario, goal.subject)), by_pair.get((goal.scenario, goal.baseline))
        if subject is None or baseline is None:
            continue  # that scenario or one of the targets was not part of this run
        ours, theirs = subject.median, baseline.median
        ratio = None
        if ours is not None and theirs is not None and ours.get(goal.metric) is not None and theirs.get(goal.metric):
            ratio = ours[goal.metric] / theirs[goal.metric]
        if ratio is None or (goal.minimum is None and goal.maximum is None):
            met = None
        elif goal.minimum is not None:
            met = ratio >= goal.minimum
        else:
            met = goal.maximum is not None and ratio <= goal.maximum
        report.append({**attrs.asdict(goal), "ratio": ratio, "met": met})
    return report


def credit_goals(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    medians = {o.scenario: o.median for o in outcomes if o.target == SUBJECT}
    report = []
    for goal in CREDIT_GOALS:
        if goal.scenario not in medians or goal.reference not in medians:
            continue
        run, reference = medians[goal.scenario], medians[goal.reference]
        entry: dict[str, Any] = {**attrs.asdict(goal), "ratio": None, "peak_rss_mib": None, "rss_bound_mib": None}
        if run is not None and reference is not None:
            allowance = 2 * DEFAULT_CREDIT * SCENARIOS[goal.scenario].payload_size / (1 << 20)
            entry["ratio"] = run["requests_per_s"] / reference["requests_per_s"]
            entry["peak_rss_mib"] = run.get("client_peak_rss_mib")
            if reference.get("client_peak_rss_mib") is not None:
                entry["rss_bound_mib"] = reference["client_peak_rss_mib"] + allowance
        if run is None:
            entry["met"] = False  # the run failed: some call did not succeed
        elif reference is None or entry["rss_bound_mib"] is None or entry["peak_rss_mib"] is None:
            entry["met"] = None
        else:
            entry["met"] = entry["ratio"] >= goal.minimum and entry["peak_rss_mib"] <= entry["rss_bound_mib"]
        report.append(entry)
    return report


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("rpcnet", "aioquic", "grpcio", "uvloop"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _checkout() -> dict[str, Any] | None:
    """The commit measured and whether the tree had uncommitted changes (None outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BENCH_DIR, capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def report_json(outcomes: list[Outcome], options: argparse.Namespace) -> dict[str, Any]:
    ratio_table = ratios(outcomes)
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            # Other work on the machine shows here; ratios hold up better than absolute numbers.
            "load_average_before": list(getattr(options, "load_before", ())),
            "load_average_after": list(os.getloadavg()),
            "versions": _versions(),
            "checkout": _checkout(),
            "event_loop": "uvloop" if options.uvloop else "asyncio",
            "pinned": options.pin,
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "repeat": options.repeat,
            "quic_options": options.quic_options,
        },
        "scenarios": {name: attrs.asdict(SCENARIOS[name]) for name in options.scenarios},
        "results": [o.as_json() for o in outcomes],
        "ratios": ratio_table,
        "paired_ratios": paired_ratios(outcomes),
        "goals": goals(outcomes),
        "credit_goals": credit_goals(outcomes),
        "typed_overhead": typed_overhead(outcomes),
    }


def report_table(outcomes: list[Outcome], options: argparse.Namespace) -> str:
    ratio_table = ratios(outcomes)
    header = (
        f"{'target':<12} {'req/s':>10} {'p50 us':>9} {'p99 us':>9} {'MiB/s':>8} {'msg/s':>9} "
        f"{'srv us/call':>11} {'cli us/call':>11} {'cli MiB':>8} {'rpcnet/x':>9}"
    )
    loop = "uvloop" if options.uvloop else "asyncio"
    lines = [
        f"median of {options.repeat} run(s), {options.duration:g} s each after {options.warmup:g} s warm-up; "
        f"{loop} loop; server and client in separate processes"
        f"{f', pinned to CPUs {options.cpus[0]} and {options.cpus[1]}' if options.pin else ''}",
    ]
    before = getattr(options, "load_before", None)
    if before is not None:
        lines.append(
            f"load average (1 min) before {before[0]:.2f}, after {os.getloadavg()[0]:.2f}: "
            "other work on the machine moves absolute numbers more than ratios"
        )
    for scenario in options.scenarios:
        lines += ["", f"{scenario}: {SCENARIOS[scenario].description}", header]
        for outcome in (o for o in outcomes if o.scenario == scenario):
            median = outcome.median
            if median is None:
                reason = outcome.unavailable or (outcome.failures[-1].splitlines()[0] if outcome.failures else "")
                lines.append(f"{outcome.target:<12} {outcome.status}: {reason}")
                continue
            ratio = ratio_table[scenario].get(outcome.target)
            ratio_text = "" if outcome.target == SUBJECT else (f"{ratio:.2f}x" if ratio is not None else "n/a")
            lines.append(
                f"{outcome.target:<12} {_fmt(median['requests_per_s']):>10} {_fmt(median['p50_us']):>9} "
                f"{_fmt(median['p99_us']):>9} {_fmt(median['mib_per_s'], 1):>8} {_fmt(median['messages_per_s']):>9} "
                f"{_fmt(median['server_cpu_us_per_call'], 1):>11} {_fmt(median['client_cpu_us_per_call'], 1):>11} "
                f"{_fmt(median.get('client_peak_rss_mib')):>8} {ratio_text:>9}"
            )
    goal_report = goals(outcomes)
    medians = {(o.scenario, o.target): o.median for o in outcomes}
    if goal_report:
        lines += ["", "goals (subject / baseline, medians of the same run):"]
    for goal in goal_report:
        verdict = "not measured" if goal["met"] is None else ("met" if goal["met"] else "NOT met")
        measured = "-" if goal["ratio"] is None else f"{goal['ratio']:.2f}x"
        if goal["minimum"] is not None:
            bound = f">= {goal['minimum']:g}x"
        elif goal["maximum"] is not None:
            bound = f"<= {goal['maximum']:g}x"
        else:
            bound, verdict = "(reported)", "no bound" if goal["ratio"] is not None else "not measured"
        what = "req/s" if goal["metric"] == "requests_per_s" else goal["metric"].replace("_us", " latency")
        cpu = ""
        ours, theirs = medians.get((goal["scenario"], goal["subject"])), medians.get((goal["scenario"], goal["baseline"]))
        if ours is not None and theirs is not None:
            cpu = (
                f"; server CPU us/call {_fmt(ours['server_cpu_us_per_call'], 1)} against "
                f"{_fmt(theirs['server_cpu_us_per_call'], 1)}"
            )
        lines.append(
            f"  {goal['scenario']}: {goal['subject']} / {goal['baseline']} {what} {bound}: {measured} ({verdict}){cpu}"
        )
    floors = [t for t in FLOORS if t in options.targets]
    if goal_report and floors:
        lines += ["", "against the floors (server CPU us per call; p50 us):"]
        for scenario in dict.fromkeys(g["scenario"] for g in goal_report):
            cells = []
            for target in options.targets:
                median = medians.get((scenario, target))
                if median is not None:
                    cells.append(
                        f"{target} {_fmt(median['server_cpu_us_per_call'], 1)}; {_fmt(median['p50_us'])}"
                    )
            lines.append(f"  {scenario}: " + ", ".join(cells))
    credit_report = credit_goals(outcomes)
    if credit_report:
        lines += ["", "credit goals (rpcnet against itself, same run):"]
    for goal in credit_report:
        verdict = "not measured" if goal["met"] is None else ("met" if goal["met"] else "NOT met")
        ratio = "-" if goal["ratio"] is None else f"{goal['ratio']:.2f}x"
        rss = "-" if goal["peak_rss_mib"] is None else f"{goal['peak_rss_mib']:.0f} MiB"
        bound = "-" if goal["rss_bound_mib"] is None else f"{goal['rss_bound_mib']:.0f} MiB"
        lines.append(
            f"  {goal['scenario']}: every call succeeds, req/s >= {goal['minimum']:g}x {goal['reference']}'s: "
            f"{ratio}; client peak RSS {rss} <= {bound} ({verdict})"
        )
    typed = typed_overhead(outcomes)
    if typed:
        lines += ["", f"typed layer (rpcnet typed req/s / untyped req/s, same run; goal >= {TYPED_MINIMUM:g}):"]
    for row in typed:
        verdict = "not measured" if row["met"] is None else ("met" if row["met"] else "NOT met")
        measured = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        paired = "-" if row["paired_median"] is None else f"{row['paired_median']:.3f}"
        lines.append(f"  {row['typed']} / {row['untyped']}: {measured} (paired median {paired}) ({verdict})")
    return "\n".join(lines)


def _names(values: list[str], known: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [n for value in values for n in value.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; available: {', '.join(known)}")
    return list(dict.fromkeys(names))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=list(DEFAULT_SCENARIOS), metavar="NAME",
                        help=f"scenarios to run, space- or comma-separated (default: {', '.join(DEFAULT_SCENARIOS)}; "
                        f"also: {', '.join(n for n in SCENARIOS if n not in DEFAULT_SCENARIOS)})")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), metavar="NAME",
                        help=f"targets to run (default: all: {', '.join(TARGETS)})")
    parser.add_argument("--duration", type=float, help="seconds measured per run (default 3; --quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring (default 1; --quick 0.3)")
    parser.add_argument("--repeat", type=int, help="runs per target and scenario; the median is reported (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: short windows, one repetition")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--output", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--uvloop", action="store_true", help="run every process, of every target, on uvloop")
    parser.add_argument("--pin", action="store_true", help="pin the server to CPU 0 and the client to CPU 1")
    parser.add_argument("--host", default="127.0.0.1", help="address the servers bind to (default 127.0.0.1)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds a server gets to report ready")
    parser.add_argument("--quic-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a QUIC transport option for the rpcnet targets (both sides), e.g. listener_read_batch=8; "
                        "VALUE is read as JSON, else as a string; repeatable")
    options = parser.parse_args(argv)
    options.quic_options = {}
    for item in options.quic_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--quic-option takes KEY=VALUE, got {item!r}")
        try:
            options.quic_options[key] = json.loads(value)
        except ValueError:
            options.quic_options[key] = value
    options.scenarios = _names(options.scenarios, list(SCENARIOS), "scenario")
    options.targets = _names(options.targets, TARGETS, "target")
    defaults = (1.0, 0.3, 1) if options.quick else (3.0, 1.0, 3)
    for name, default in zip(("duration", "warmup", "repeat"), defaults, strict=True):
        if getattr(options, name) is None:
            setattr(options, name, default)
    if options.duration <= 0 or options.warmup < 0 or options.repeat < 1:
        parser.error("--duration must be > 0, --warmup >= 0 and --repeat >= 1")
    if options.uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            parser.error("--uvloop needs uvloop: pip install uvloop")
    if options.pin:
        if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
            parser.error("--pin needs Linux and at least two usable CPUs")
        options.cpus = sorted(os.sched_getaffinity(0))[:2]
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    options.load_before = os.getloadavg()
    outcomes = asyncio.run(run_all(options))
    report = report_json(outcomes, options)
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps(report, indent=2) + "\n")
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        print(report_table(outcomes, options))
    measured = any(o.runs for o in outcomes)
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())
