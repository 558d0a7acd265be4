"""Bundled rpcnet plugin `rpcnet_quic` (registered through the `rpcnet` entry-point group)."""
