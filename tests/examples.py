"""Load the example scripts (examples/ is not a package) as modules, for tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(relative: str) -> ModuleType:
    """``load_example("typed/calculator.py")``: imported once, registered under ``examples_<stem>``."""
    name = "examples_" + relative.replace("/", "_").removesuffix(".py")
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / relative)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # attrs and typing resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return module
