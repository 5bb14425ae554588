"""`select`: grid-search a method's parameters on validation, then score the best on test (TALL masks, LiNeS)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd
import torch

from .evaluate import Scores, evaluate
from .merging import merge
from .result import MergeResult
from .taskvec import TaskVectors
from .zoo.base import Zoo


@dataclass
class Selection:
    """The outcome of `select`: the best parameters on validation, every grid point's validation
    averages (`table`), and the test Scores and MergeResult of the best choice."""

    method: str
    params: dict[str, Any]
    table: pd.DataFrame
    scores: Scores
    result: MergeResult


def select(tv: TaskVectors, method: str, grid: Mapping[str, list], zoo: Zoo | None = None,
           split: str = "validation", limit: int | None = None, test_split: str = "test",
           device: str | torch.device = "auto", **fixed: Any) -> Selection:
    """Grid-search `method`'s parameters by average normalized accuracy on `split`, then score the best on
    `test_split` (all its images), the protocol of the TALL-masks and LiNeS papers. Ties go to the first
    grid point; `fixed` parameters are passed to every merge."""
    zoo = zoo if zoo is not None else tv.zoo
    if zoo is None:
        raise ValueError("select() needs a zoo: pass zoo=..., or build the task vectors with ex.task_vectors(zoo)")
    if not grid or any(not isinstance(v, (list, tuple)) or not v for v in grid.values()):
        raise ValueError(f"grid must map each parameter to a non-empty list of values, got {grid!r}")
    names, rows, best, best_score = list(grid), [], None, float("-inf")
    for values in itertools.product(*grid.values()):
        point = dict(zip(names, values))
        res = merge(tv, method, zoo=zoo, **fixed, **point)
        mean = evaluate(zoo, res, split, tv.tasks, limit, device).mean
        rows.append({**point, "merged": mean["merged"], "normalized": mean["normalized"]})
        if mean["normalized"] > best_score:
            best, best_score = res, mean["normalized"]
    scores = evaluate(zoo, best, test_split, tv.tasks, None, device)
    return Selection(method, dict(best.params), pd.DataFrame(rows), scores, best)
