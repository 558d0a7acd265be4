"""The example scripts (memory transport, plugin system) must keep working and exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPCNET_")}
    return subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_plugins_demo_selects_p2c_by_name_and_balances():
    result = run_example("plugins_demo.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Selected load balancer 'p2c': rpcnet_p2c.PowerOfTwoChoices" in result.stdout
    assert "swamped  in_flight=40  picked    0 times" in result.stdout
    assert "Did you mean 'p2c'?" in result.stdout


def test_memory_demo_runs_calls_and_counts_them_in_a_plugin():
    result = run_example("memory_demo.py")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "greet      -> {'text': 'hello, rpcnet', 'from': 'server-1', 'payload': b'\\x02\\x01\\x00'}" in out
    assert "countdown  -> [5, 4, 3, 2, 1]" in out
    assert "lookup     -> NotFoundError: no record 'alice' details={'key': 'alice'}" in out
    assert "client lookup     NOT_FOUND" in out and "server lookup     NOT_FOUND" in out
    assert "300 calls balanced by 'p2c'" in out


def test_demo_summary_says_when_the_client_saw_the_restarted_worker():
    from rpcnet.demo import DemoSummary

    def line(rejoin_event):
        summary = DemoSummary(
            duration=40.0, strategies=("round-robin",), ok=10, failed=0, errors=[], victim="worker-2",
            detection=3.5, rejoin_event=rejoin_event, back_in_rotation=0.2,
            per_strategy={"round-robin": {"worker-1": 10}}, percentiles={"round-robin": (0.005, 0.006)},
            retries=0, ejections=0,
        )
        return next(text for text in summary.render().splitlines() if "restarted on the same addresses" in text)

    assert "saw it join 0.12 s after it was ready" in line(0.12)
    # A restarted node announces itself while starting, so the event can come first.
    assert "saw it join 0.30 s before it was ready" in line(-0.3)
    assert "never saw it join" in line(None)


def test_memory_demo_runs_without_the_example_plugin():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPCNET_")} | {"RPCNET_DISABLED_PLUGINS": "p2c"}
    result = subprocess.run([sys.executable, str(EXAMPLES / "memory_demo.py")], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the p2c example plugin is not installed" in result.stdout
    assert "300 calls balanced by 'least-connections'" in result.stdout


def test_a_short_demo_only_drives_traffic_and_says_so():
    from rpcnet.demo import DemoSummary

    summary = DemoSummary(
        duration=10.0, strategies=("round-robin",), ok=10, failed=0, errors=[], victim=None, detection=None,
        rejoin_event=None, back_in_rotation=None, per_strategy={"round-robin": {"worker-1": 10}},
        percentiles={"round-robin": (0.005, 0.006)}, retries=0, ejections=0, kill=False,
    )
    assert summary.exit_code == 0
    assert "no worker was killed: runs of at least 20 s kill one and restart it" in summary.render()
    assert summary.render().rstrip().endswith("OK: no call failed")


def test_the_demo_programs_run_as_modules_of_the_package():
    from rpcnet.demo import program_command

    assert program_command("worker")[1:] == ["-m", "rpcnet.demo.worker"]
    result = subprocess.run([*program_command("director"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "director" in result.stdout


def _readme_programs() -> list[str]:
    import re

    text = (EXAMPLES.parent / "README.md").read_text()
    return [block for block in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "asyncio.run(main())" in block]


def test_the_readme_snippets_run_as_written(tmp_path):
    programs = _readme_programs()
    assert len(programs) >= 2, "the tour and the cluster snippet at least"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPCNET_")}
    outputs = []
    for index, program in enumerate(programs):
        path = tmp_path / f"snippet{index}.py"
        path.write_text(program)
        result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=60,
                                cwd=tmp_path, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout.strip())
    assert "hello, rpcnet" in outputs, outputs
    assert outputs[-1] == "an answer to 'hi'", "the cluster snippet"
