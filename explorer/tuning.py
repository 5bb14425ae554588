"""`select`: grid-search a method's parameters on validation, then score the best on test (TALL masks, LiNeS)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd
import torch

from .evaluate import Scores, evaluate
from .merging import merge
from .result import MergeResult
from .sweep import sweep
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
           device: str | torch.device = "auto", engine: str = "serial", **fixed: Any) -> Selection:
    """Grid-search `method`'s parameters by average normalized accuracy on `split`, then score the best on
    `test_split` (all its images), the protocol of the TALL-masks and LiNeS papers. Ties go to the first
    grid point; `fixed` parameters are passed to every merge; the grid runs as an `explorer.sweep` on `engine`."""
    zoo = zoo if zoo is not None else tv.zoo
    if zoo is None:
        raise ValueError("select() needs a zoo: pass zoo=..., or build the task vectors with ex.task_vectors(zoo)")
    done = sweep(tv, method, grid, zoo=zoo, split=split, limit=limit, engine=engine, device=device, **fixed)
    table = done.summary()[[*done.params, "merged", "normalized"]]
    best = merge(tv, method, zoo=zoo, **fixed, **done.best("normalized"))
    scores = evaluate(zoo, best, test_split, tv.tasks, None, device)
    return Selection(method, dict(best.params), table, scores, best)
