"""Bundled rpcnet plugin `rpcnet_swim` (registered through the `rpcnet` entry-point group)."""
