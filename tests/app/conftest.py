"""A tiny zoo registered with the dashboard's cache, and clean caches around every test."""
from __future__ import annotations

import pytest

from explorer.app import cache
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (one_thread: autouse fixture)

ZOO = "tiny-app"


@pytest.fixture
def zoo() -> TinyZoo:
    """A 3-task TinyZoo registered as "tiny-app" (40 test images per task)."""
    z = TinyZoo()
    cache.register_zoo(ZOO, z)
    yield z
    for store in (cache.ZOOS, cache.TASK_VECTORS, cache.ZOO_FIGURES, cache.RESULTS, cache.RUNS, cache.FINGERPRINTS,
                  cache.PROBLEMS):
        store.clear()
