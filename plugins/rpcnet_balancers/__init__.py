"""Bundled rpcnet plugin `rpcnet_balancers` (registered through the `rpcnet` entry-point group)."""
