"""Helpers for kernel tests: a clean plugin environment and fake distributions."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rpcnet import plugins as plugin_module


@pytest.fixture(autouse=True)
def _no_rpcnet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's RPCNET_* variables must not change what kernel tests see."""
    import os

    for key in list(os.environ):
        if key.startswith("RPCNET_"):
            monkeypatch.delenv(key)


FakeDist = Callable[..., importlib.metadata.Distribution]


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDist]:
    """Write a real ``*.dist-info`` (METADATA + entry_points.txt) and its
    modules under a temporary directory, and return it as a Distribution.

    The directory is *not* put on ``sys.path`` for metadata discovery: tests
    choose which entry points exist by patching
    ``importlib.metadata.entry_points`` (see :func:`only_entry_points`). It is
    on ``sys.path`` for imports, so ``ep.load()`` runs the module's code.
    """
    created: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, entry_points: dict[str, str], modules: dict[str, str] | None = None,
             version: str = "1.0") -> importlib.metadata.Distribution:
        info = tmp_path / "meta" / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{plugin_module.ENTRY_POINT_GROUP}]\n{lines}")
        for module, source in (modules or {}).items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            created.append(module)
        importlib.invalidate_caches()
        return importlib.metadata.PathDistribution(info)

    yield make
    for module in created:
        sys.modules.pop(module, None)


@pytest.fixture
def only_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make ``importlib.metadata.entry_points`` return just these
    distributions' entry points (in this order) instead of the installed ones."""

    def install(*dists: importlib.metadata.Distribution) -> None:
        eps = [ep for dist in dists for ep in dist.entry_points]

        def entry_points(**params: str) -> importlib.metadata.EntryPoints:
            return importlib.metadata.EntryPoints(eps).select(**params)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    return install


LB_PLUGIN = """
from rpcnet import hookimpl

class {cls}:
    name = "{strategy}"

@hookimpl
def rpcnet_register_load_balancers(register):
    register("{strategy}", {cls})
"""


@pytest.fixture
def lb_module() -> Callable[..., str]:
    """Source of a plugin module registering load balancer ``strategy``."""

    def source(strategy: str, cls: str = "Balancer") -> str:
        return LB_PLUGIN.format(strategy=strategy, cls=cls)

    return source
