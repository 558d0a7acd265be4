"""Bundled rpcnet plugin ``rpcnet_phi``: the ``phi-accrual`` failure detector."""

from __future__ import annotations

from rpcnet import hookimpl
from rpcnet.hookspecs import Register

from .detector import HeartbeatHistory, PhiAccrualDetector, PhiOptions, phi

__all__ = ["PhiAccrualDetector", "PhiOptions", "HeartbeatHistory", "phi", "rpcnet_register_failure_detectors"]


@hookimpl
def rpcnet_register_failure_detectors(register: Register) -> None:
    register(PhiAccrualDetector.name, PhiAccrualDetector)
