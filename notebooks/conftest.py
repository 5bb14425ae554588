"""`make test` executes each notebook (nbmake) in quick mode (`EXPLORER_QUICK=1`, see `explorer/quick.py`): every
cell runs the same calls on a few steps and 64 images per split, so CI checks that the notebooks work in a minute,
not ten. Their committed outputs come from full runs (`make notebooks`) and are checked by
tests/test_notebook_outputs.py."""
from __future__ import annotations

import os

from explorer import quick


def pytest_runtest_setup(item) -> None:
    os.environ[quick.ENV] = "1"  # the notebook's kernel starts from this environment
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"  # a kernel per core: two OpenMP teams on one core spin 5x slower


def pytest_runtest_teardown(item, nextitem) -> None:
    os.environ.pop(quick.ENV, None)
