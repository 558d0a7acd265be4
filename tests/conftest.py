"""Shared by every test directory; keep it to what all of them need."""

from __future__ import annotations

from hypothesis import settings

# Wall-clock deadlines flake on a loaded 2-core CI machine; the examples
# themselves are what is under test.
settings.register_profile("rpcnet", deadline=None)
settings.load_profile("rpcnet")
