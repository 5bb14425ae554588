"""Calibration of merges: each merged model's mean prediction entropy next to its error rate, per task.

AdaMerging's premise (Yang et al., ICLR 2024, Fig. 2) is that the two rise together, so that minimising
the entropy on unlabeled test images lowers the error; `entropy_error` measures that on a zoo across a
sweep of one merge parameter, and `pearson` condenses it into one correlation.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..inference import task_logits
from ..methods.adaptive import softmax_entropy
from ..result import MergeResult
from ..sweep import sweep
from ..taskvec import TaskVectors


def entropy_rows(zoo: Any, result: MergeResult, split: str, tasks: list[str], limit: int | None,
                 device: str | torch.device) -> pd.DataFrame:
    """A sweep's score: `task, entropy, error` of one merge, the mean prediction entropy (nats) and the error rate
    (fraction) of its merged model on each task."""
    weights, rows = result.state_dict(), []
    for task in tasks:
        logits, labels = task_logits(zoo, weights, task, split, limit, device)
        rows.append({"task": task, "entropy": float(softmax_entropy(logits).mean()),
                     "error": float((logits.argmax(-1) != labels).float().mean())})
    return pd.DataFrame(rows, columns=["task", "entropy", "error"])


def entropy_error(zoo: Any, tv: TaskVectors, values: Sequence[float], *, method: str = "task_arithmetic",
                  param: str = "scale", split: str = "test", tasks: list[str] | None = None,
                  limit: int | None = None, engine: str = "serial", **params: Any) -> pd.DataFrame:
    """`value, task, entropy, error` for each swept value of `param` (default: task arithmetic's lambda) and
    task: the mean prediction entropy (nats) and the error rate (fraction) of the merged model on `split`
    (an `explorer.sweep` run on `engine`, default this process, scored by `entropy_rows`)."""
    if not len(values):
        raise ValueError("entropy_error() needs at least one value, e.g. values=[0.0, 0.5, 1.0]")
    done = sweep(tv, method, {param: list(values)}, zoo=zoo, split=split, tasks=tasks, limit=limit, engine=engine,
                 score=entropy_rows, **params)
    frame = done.table.rename(columns={param: "value"}).astype({"value": float})[["value", "task", "entropy", "error"]]
    frame.attrs.update(method=method, param=param, split=split)
    return frame


def pearson(frame: pd.DataFrame, x: str = "entropy", y: str = "error") -> float:
    """Pearson correlation between two columns of a frame (NaN when either is constant)."""
    a, b = frame[x].to_numpy(float), frame[y].to_numpy(float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
