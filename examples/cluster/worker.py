"""The demo's worker, run from this directory: `python examples/cluster/worker.py --help`.

The program ships in the package as :mod:`rpcnet.demo.worker` (`python -m
rpcnet.demo.worker`), so `rpcnet demo` runs from an installed wheel too.
This directory is put on `sys.path` first, so `--plugin drain_check:plugin`
finds the example health check next to it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rpcnet.demo.worker import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
