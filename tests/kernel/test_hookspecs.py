"""Meta-tests: every hook spec is documented where users look and has a test.

Adding a hook to ``rpcnet/hookspecs.py`` makes these fail until its docstring
says when it is called and what it returns, ``docs/plugins.md`` and
``CONTRIBUTING.md`` show its signature, and ``test_hooks.py`` has a
``test_hook_<name>``.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pluggy
import pytest

from rpcnet import hookspecs
from rpcnet.plugins import hook_names, make_plugin_manager
from rpcnet.registry import KINDS

ROOT = Path(__file__).resolve().parents[2]
HOOKS = hook_names()


def signature(name: str) -> str:
    """``rpcnet_register_transports(register)``: the call shape users write."""
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"{name}({', '.join(params)})"


def test_the_hook_list_is_complete():
    pm = pluggy.PluginManager("rpcnet")
    pm.add_hookspecs(hookspecs)
    assert sorted(HOOKS) == sorted(name for name in dir(pm.hook) if not name.startswith("_"))


@pytest.mark.parametrize("name", HOOKS)
def test_hook_docstring_says_when_called_and_what_it_returns(name):
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert name.startswith("rpcnet_")
    assert "Called" in doc, f"{name}: the docstring must say when it is called"
    assert re.search(r"\breturns?\b", doc, re.IGNORECASE), f"{name}: the docstring must say what it returns"
    firstresult = spec.rpcnet_spec["firstresult"]
    if firstresult:
        assert "first non-None" in doc, f"{name}: say that it stops at the first non-None result"
    else:
        assert "collect-all" in doc, f"{name}: say that every implementation is called (collect-all)"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_fully_typed(name):
    spec = getattr(hookspecs, name)
    annotations = spec.__annotations__
    assert "return" in annotations
    assert set(inspect.signature(spec).parameters) <= set(annotations)


def test_every_strategy_kind_has_a_registration_hook_and_back():
    registration = [name for name in HOOKS if name.startswith("rpcnet_register_")]
    assert sorted(KINDS.values()) == sorted(registration)


@pytest.mark.parametrize("document", ["docs/plugins.md", "CONTRIBUTING.md"])
@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_documented_with_its_signature(document, name):
    text = (ROOT / document).read_text(encoding="utf-8")
    assert signature(name) in text, f"{document} must show {signature(name)}"


def test_the_hook_reference_documents_no_hook_that_does_not_exist():
    text = (ROOT / "docs/plugins.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#+ .*?`(rpcnet_\w+)\(", text, re.MULTILINE))
    assert documented == set(HOOKS)


def _test_function_names() -> set[str]:
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return names


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test(name):
    assert f"test_hook_{name}" in _test_function_names(), f"write test_hook_{name} in tests/kernel/test_hooks.py"


def test_a_plugin_manager_knows_every_spec():
    host = make_plugin_manager(entry_points=False)
    for name in HOOKS:
        assert getattr(host.pm.hook, name).spec is not None
