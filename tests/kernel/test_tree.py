"""CONTRIBUTING's table of where the tests are stays true as the tree changes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _table() -> dict[str, list[str]]:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    body = text.split("<!-- tests-table -->", 1)[1].split("<!-- /tests-table -->", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        rows[cells[0].strip("`")] = re.findall(r"`(tests/[^`]+|examples/[^`]+)`", cells[1])
    return rows


def _sources() -> set[str]:
    found = set()
    for top in ("rpcnet", "plugins"):
        for path in (ROOT / top).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            # Package markers that only re-export, and the `python -m` shim, hold no logic.
            if path.name == "__main__.py" or (path.name == "__init__.py" and "def " not in path.read_text()):
                continue
            found.add(relative)
    return found


def test_every_source_module_says_where_its_tests_are():
    missing = sorted(_sources() - set(_table()))
    assert missing == [], f"add these to the table in CONTRIBUTING.md: {missing}"


def test_the_table_names_only_files_that_exist():
    table = _table()
    gone = sorted(source for source in table if not (ROOT / source).exists())
    assert gone == [], f"these sources are no longer in the tree: {gone}"
    for source, tests in table.items():
        assert tests or "every" in source, f"{source}: no test module named"
        for test in tests:
            target = ROOT / test
            assert target.exists(), f"{source}: {test} does not exist"
