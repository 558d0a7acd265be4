"""A health-check plugin: ``drain-file`` reports unhealthy while a file exists.

Operators drain a worker by creating the file (clients stop choosing it
within about a health interval plus a gossip round) and put it back into
rotation by removing it. Load it into the example worker with::

    python examples/cluster/worker.py --plugin drain_check:plugin \\
        --health-check drain-file --health-option drain-file.path=/tmp/drain-worker-1
"""

from __future__ import annotations

import os
from typing import ClassVar

import attrs

from rpcnet import hookimpl
from rpcnet.health import HealthCheck, HealthResult
from rpcnet.hookspecs import Register


@attrs.frozen(kw_only=True)
class DrainFileOptions:
    #: The file whose presence drains the node.
    path: str = "drain"


class DrainFile(HealthCheck):
    name: ClassVar[str] = "drain-file"
    Options: ClassVar[type] = DrainFileOptions

    def __init__(self, options: DrainFileOptions | None = None) -> None:
        super().__init__(options or DrainFileOptions())

    def check(self) -> HealthResult:
        if os.path.exists(self.options.path):
            return HealthResult.unhealthy(f"drained: {self.options.path} exists")
        return HealthResult.healthy(f"{self.options.path} absent")


class _Plugin:
    @hookimpl
    def rpcnet_register_health_checks(self, register: Register) -> None:
        register(DrainFile.name, DrainFile)


#: Pass as ``--plugin drain_check:plugin``.
plugin = _Plugin()
