"""Compare two revisions of rpcnet on the same benchmark, interleaved.

A change that should not move performance (a refactoring) is checked by
running ``rpc_bench.py`` from both revisions back to back: each repetition
runs the base, then the head, so a slow patch of a shared machine hits both
alike. Every revision is exported with ``git archive`` into a temporary
directory and imported from there (``PYTHONPATH``), with the dependencies of
the current ``.venv``.

    python benchmarks/compare_revisions.py 8afe30e HEAD --repeat 3
    python benchmarks/compare_revisions.py main~5 main --scenarios unary64_c64 --targets rpcnet

It prints, per scenario and target, the median throughput of each revision
and head/base, and whether that stays within ``--tolerance`` (10% by
default). Numbers are measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIOS = ("unary64_c1", "unary64_c64", "unary_1mib", "stream_throughput")
#: What "throughput" means per scenario: requests for small calls, bytes for bulk.
BULK = ("unary_1mib", "stream_throughput")


def export(revision: str, into: Path) -> Path:
    """The tree of ``revision`` as plain files under ``into``."""
    target = into / revision.replace("/", "_")
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    archive_path = into / f"{target.name}.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(target, filter="data")
    return target


def run_once(tree: Path, options: argparse.Namespace) -> dict[tuple[str, str, str], float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(tree / "plugins")]))
    probe = "import rpcnet, rpcnet_quic; print(rpcnet.__file__); print(rpcnet_quic.__file__)"
    loaded = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, cwd=tree)
    if not all(Path(line).is_relative_to(tree) for line in loaded.stdout.split()):
        raise SystemExit(f"{tree.name}: rpcnet was imported from elsewhere: {loaded.stdout.split()}")
    command = [
        sys.executable, str(tree / "benchmarks" / "rpc_bench.py"), "--repeat", "1", "--json",
        "--duration", str(options.duration), "--scenarios", *options.scenarios, "--targets", *options.targets,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    if result.returncode != 0:
        raise SystemExit(f"rpc_bench.py in {tree.name} failed:\n{result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    figures = {}
    for outcome in report["results"]:
        median = outcome.get("median")
        if outcome["status"] != "ok" or not median:
            continue
        key = "mib_per_s" if outcome["scenario"] in BULK else "requests_per_s"
        figures[(outcome["scenario"], outcome["target"], "throughput")] = float(median[key])
        # CPU per call moves far less than throughput when the machine is shared.
        for side in ("server", "client"):
            cpu = median.get(f"{side}_cpu_us_per_call")
            if cpu is not None:
                figures[(outcome["scenario"], outcome["target"], f"{side} cpu")] = float(cpu)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("head")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--scenarios", nargs="+", default=list(DEFAULT_SCENARIOS))
    parser.add_argument("--targets", nargs="+", default=["rpcnet"])
    parser.add_argument("--tolerance", type=float, default=0.10)
    options = parser.parse_args()

    samples: dict[str, dict[tuple[str, str, str], list[float]]] = {options.base: {}, options.head: {}}
    with tempfile.TemporaryDirectory(prefix="rpcnet-compare-") as scratch:
        trees = {rev: export(rev, Path(scratch)) for rev in (options.base, options.head)}
        for repetition in range(options.repeat):
            for revision in (options.base, options.head):
                print(f"run {repetition + 1}/{options.repeat}: {revision}", file=sys.stderr)
                for key, value in run_once(trees[revision], options).items():
                    samples[revision].setdefault(key, []).append(value)

    print(f"median of {options.repeat} interleaved run(s), {options.duration:g} s each; head/base")
    print(f"{'scenario':<18} {'target':<12} {'figure':<11} {'base':>10} {'head':>10} {'head/base':>10}  within {options.tolerance:.0%}")
    for key in sorted(samples[options.base]):
        base = statistics.median(samples[options.base][key])
        head_values = samples[options.head].get(key)
        if not head_values:
            continue
        head = statistics.median(head_values)
        ratio = head / base if base else float("nan")
        scenario, target, figure = key
        unit = ("MiB/s" if scenario in BULK else "req/s") if figure == "throughput" else "us/call"
        verdict = "yes" if abs(ratio - 1) <= options.tolerance else "NO"
        print(f"{scenario:<18} {target:<12} {figure:<11} {base:>10.1f} {head:>10.1f} {ratio:>9.2f}x  {verdict} ({unit})")


if __name__ == "__main__":
    main()
