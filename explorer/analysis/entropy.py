"""Prediction entropy against error, the premise of AdaMerging (Yang et al., ICLR 2024, Fig. 2): a merged model that
is less sure of its predictions (higher Shannon entropy of its softmax) makes more mistakes, so the entropy on
unlabeled test images can stand in for the error rate when merging coefficients are learned."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from torch import Tensor

from ..merging import merge
from ..methods.adaptive import softmax_entropy  # the very quantity AdaMerging minimises
from ..result import MergeResult
from ..taskvec import TaskVectors

COLUMNS = ["task", "entropy", "accuracy", "error"]


def _weights(result: MergeResult | Mapping[str, Tensor], task: str) -> Mapping[str, Tensor]:
    """The full state dict scored on `task`: a plain state dict, the merged model, or a per-task method's own model."""
    if not isinstance(result, MergeResult):
        return result
    return result.state_dict(task=task) if result.per_task else result.state_dict()


def prediction_entropy(zoo: Any, result: MergeResult | Mapping[str, Tensor], *, split: str = "test",
                       tasks: list[str] | None = None, limit: int | None = None) -> pd.DataFrame:
    """Per task, the mean Shannon entropy (nats) of the model's softmax predictions and its top-1 accuracy on the
    first `limit` images of `split`: `task, entropy, accuracy, error` (error = 1 - accuracy, as `ex.evaluate`)."""
    from ..evaluate import task_logits  # loaded on first use: evaluation pulls in the model code

    tasks = list(tasks or (result.tasks if isinstance(result, MergeResult) else zoo.tasks))
    rows = []
    for task in tasks:
        logits, labels = task_logits(zoo, _weights(result, task), task, split, limit)
        accuracy = int((logits.argmax(-1) == labels).sum()) / max(1, len(labels))  # as task_accuracy counts
        rows.append((task, float(softmax_entropy(logits).mean()), accuracy, 1.0 - accuracy))
    return pd.DataFrame(rows, columns=COLUMNS)


def entropy_error(zoo: Any, tv: TaskVectors, values: Sequence[float], *, method: str = "task_arithmetic",
                  param: str = "scale", split: str = "test", limit: int | None = None, **params: Any) -> pd.DataFrame:
    """Mean prediction entropy and error rate per task as one merge parameter varies (default: Task Arithmetic's
    lambda): `value, task, entropy, accuracy, error`, one point of AdaMerging's entropy-vs-error figure per row."""
    if not len(values):
        raise ValueError("entropy_error() needs at least one value, e.g. values=[0.0, 0.1, ..., 1.0]")
    if param in params:
        raise ValueError(f"{param!r} is the swept parameter; give its values in `values`, not as a keyword")
    frames = [prediction_entropy(zoo, merge(tv, method, zoo=zoo, **{param: v}, **params), split=split,
                                 tasks=tv.tasks, limit=limit).assign(value=float(v)) for v in values]
    frame = pd.concat(frames, ignore_index=True)[["value", *COLUMNS]]
    frame.attrs.update(method=method, param=param)
    return frame


def pearson(frame: pd.DataFrame, x: str = "entropy", y: str = "error") -> float:
    """Pearson correlation between two columns of a table (by default entropy and error); NaN if one is constant."""
    a, b = frame[x].to_numpy(dtype=float), frame[y].to_numpy(dtype=float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
