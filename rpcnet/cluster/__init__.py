"""Cluster support: gossip transport and, built on it, the cluster facade."""

from __future__ import annotations

from .client import ClusterClient, ConnectionPool, RetryBudget, RetryPolicy, WorkerResult
from .config import ClusterConfig
from .gossip import GossipEndpoint, GossipStats
from .keyring import Keyring
from .node import Cluster, Subscription

__all__ = [
    "Cluster",
    "ClusterConfig",
    "ClusterClient",
    "ConnectionPool",
    "RetryPolicy",
    "RetryBudget",
    "WorkerResult", "Subscription", "GossipEndpoint", "GossipStats", "Keyring"]
