"""Cluster support: gossip transport and, built on it, the cluster facade."""

from __future__ import annotations

from .client import ClusterClient, ConnectionPool, RetryBudget, RetryPolicy, WorkerResult
from .config import ClusterConfig
from .gossip import GossipEndpoint, GossipStats
from .keyring import Keyring
from .node import Cluster, Subscription, enable_cluster
from .settings import NodeConfig, ServiceConfig, WorkersConfig, load_node_config

__all__ = [
    "Cluster",
    "enable_cluster",
    "ClusterConfig",
    "ClusterClient",
    "ConnectionPool",
    "RetryPolicy",
    "RetryBudget",
    "WorkerResult", "Subscription", "GossipEndpoint", "GossipStats", "Keyring",
    "NodeConfig",
    "ServiceConfig",
    "WorkersConfig",
    "load_node_config",
]
