"""Bundled rpcnet plugin `rpcnet_phi` (registered through the `rpcnet` entry-point group)."""
