"""docs/configuration.md is generated from the config classes and must be current."""

from __future__ import annotations

from pathlib import Path

import attrs

from rpcnet.cluster.reference import field_docs, render_reference
from rpcnet.cluster.settings import SECTIONS

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_is_current() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == render_reference(), (
        "docs/configuration.md is stale: run `.venv/bin/rpcnet config reference > docs/configuration.md`"
    )


def test_every_key_of_every_table_is_in_the_reference_with_its_variable_and_a_meaning() -> None:
    text = render_reference()
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        for field in attrs.fields(cls):
            assert f"| `{field.name}` |" in text
            assert f"`RPCNET_{section.upper()}__{field.name.upper()}" in text
            assert docs.get(field.name), f"[{section}] {field.name} has no #: comment to document it"


def test_the_bundled_strategies_options_are_listed() -> None:
    text = render_reference()
    for title in ("[cluster.options.swim]", "[cluster.options.phi-accrual]", "[rpc.options.quic]",
                  "[cluster.options.event-loop-lag]", "[workers.options.round-robin]"):
        assert f"### `{title}`" in text
    assert "| `threshold` | number | `8` |" in text


def test_field_docs_reads_the_comments_above_each_field() -> None:
    @attrs.frozen
    class Example:
        #: First line,
        #: second line.
        documented: int = 1
        undocumented: int = 2

    assert field_docs(Example) == {"documented": "First line, second line."}
