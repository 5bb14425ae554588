"""Quick mode (`EXPLORER_QUICK=1`): a smoke-test budget for CI's runs of the notebooks and the zoo card.

The same calls run the same code paths on less work: iterative methods run at most `WORK`'s steps, epochs or
examples, the demo zoo serves at most `IMAGES` images per split, and a swept list of values keeps its first, middle
and last (`thin`: grids, sweeps, the entropy-error lambdas). Numbers then differ from a full run, so a
result made in quick mode says so in `info["quick"]`; never set it for figures you report.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

ENV = "EXPLORER_QUICK"
IMAGES = 64  # images per task and split the demo zoo serves
WORK = {"steps": 5, "adamerging_steps": 5, "epochs": 1, "examples": 32, "probe": 16}  # caps on work parameters


def enabled() -> bool:
    """Whether quick mode is on (read at each call, so a process can switch it for a child)."""
    return os.environ.get(ENV, "") == "1"


def cap_work(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each work parameter (steps, epochs, examples, ...) at most its quick cap, in quick mode."""
    if not enabled():
        return values
    return {k: min(v, WORK[k]) if k in WORK and isinstance(v, int) else v for k, v in values.items()}


def cap_images(n: int) -> int:
    """A split's size in quick mode: at most `IMAGES`."""
    return min(n, IMAGES) if enabled() else n


def thin(values: Sequence) -> list:
    """A swept list of values in quick mode: its first, middle and last value (all of them when there are 3 or
    fewer, or out of quick mode), so a sweep still runs every point's code on a few points."""
    values = list(values)
    if not enabled() or len(values) <= 3:
        return values
    return [values[0], values[len(values) // 2], values[-1]]
