"""Shared by every test directory; keep it to what all of them need."""

from __future__ import annotations

import os

from hypothesis import settings

# Wall-clock deadlines flake on a loaded 2-core CI machine; the examples
# themselves are what is under test. CI gets more examples.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, max_examples=300)
settings.load_profile("ci" if os.environ.get("CI") else "default")
