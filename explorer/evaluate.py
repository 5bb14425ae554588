"""Evaluation: per-task accuracy of base, experts and merged models, as the merging papers report it.

The accuracy itself comes from `explorer.inference` (one encoder module per zoo and device, weights supplied
functionally, images and reference accuracies cached); this module lays the scores out per task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pandas as pd
import torch
from torch import Tensor

from .checks import check_finite
from .device import resolve_device
from .inference import eval_data, reference_accuracies, task_accuracies, task_accuracy, task_logits
from .result import MergeResult
from .security.attack import attack_table
from .zoo.base import Zoo

__all__ = ["COLUMNS", "Scores", "evaluate", "eval_data", "percent", "reference_accuracies", "task_accuracy",
           "task_logits"]
COLUMNS = ["task", "base", "expert", "merged", "normalized"]


def percent(frame: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A copy of a scores table for people: the accuracy columns (base, expert, merged, normalized) as text in %."""
    shown = [c for c in COLUMNS[1:] if c in frame.columns]
    return frame.assign(**{c: [f"{100 * v:.{digits}f}" for v in frame[c]] for c in shown})


@dataclass
class Scores:
    """Per-task accuracies: `table` has one row per task (task, base, expert, merged, normalized, as
    fractions) and `mean` is a pandas Series of the column averages (index base, expert, merged, normalized).
    `attack` holds the attack success rate (task, base, expert, merged) of each task with a backdoor trigger."""

    table: pd.DataFrame
    split: str = "test"
    limit: int | None = None
    attack: pd.DataFrame | None = None

    @property
    def mean(self) -> pd.Series:
        return self.table[COLUMNS[1:]].mean()

    def __repr__(self) -> str:
        m = self.mean
        return (f"Scores({self.split}, {len(self.table)} tasks, mean accuracy %: base {100 * m['base']:.1f}, "
                f"expert {100 * m['expert']:.1f}, merged {100 * m['merged']:.1f}, "
                f"normalized {100 * m['normalized']:.1f})")


def evaluate(zoo: Zoo, result_or_state_dict: MergeResult | Mapping[str, Tensor], split: str = "test",
             tasks: list[str] | None = None, limit: int | None = None,
             device: str | torch.device = "auto") -> Scores:
    """Accuracy of a merged model on each task next to the base and the expert; normalized = merged / expert.

    A per-task MergeResult (TALL masks, EMR) is evaluated with `result.state_dict(task=t)` on task t; a result with
    an add-on (Surgery, Twin-Merging, WEMoE) runs it: with task t's module, or routing each image.
    `limit` takes the first `limit` images of each task's split.
    """
    if not isinstance(zoo, Zoo):
        raise TypeError(f"evaluate() needs a Zoo (from ex.load_zoo) first, got {type(zoo).__name__}")
    result = result_or_state_dict
    is_result = isinstance(result, MergeResult)
    if not is_result and not isinstance(result, Mapping):
        raise TypeError(f"evaluate() takes a MergeResult or a state dict, got {type(result).__name__}")
    if not is_result:
        check_finite("state dict", result, "the weights to evaluate hold non-finite values (NaN or Inf)",
                     "A model with NaN/Inf weights has no meaningful accuracy.")
    tasks = list(tasks or (result.tasks if is_result else zoo.tasks))
    for task in tasks:
        zoo.check_task(task)
    zoo.check_evaluable(tasks, split)  # one error naming all that is missing (heads, data, model definition)
    dev = resolve_device(device)
    shared = None if is_result and result.per_task else (result.state_dict() if is_result else result)
    addon = result.addon if is_result else None
    together = task_accuracies(zoo, shared, tasks, split, limit, dev) if shared is not None and addon is None else {}
    rows = []
    for task in tasks:
        weights = shared if shared is not None else result.state_dict(task=task)
        base, expert = reference_accuracies(zoo, task, split, limit, dev)
        merged = together[task] if task in together else task_accuracy(zoo, weights, task, split, limit, dev, addon)
        rows.append((task, base, expert, merged, merged / expert if expert > 0 else float("nan")))
    attack = attack_table(zoo, tasks, lambda t: shared if shared is not None else result.state_dict(task=t), split,
                          limit, dev)
    return Scores(pd.DataFrame(rows, columns=COLUMNS), split, limit, attack)
