"""Security studies on a zoo, as tables: does a backdoor survive merging, and does a MergeLock-protected expert
wreck every merge it joins (and how much an unlock attempt recovers)? Plots draw them; the app and notebook show them.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd
import torch
from torch import Tensor

from ..evaluate import evaluate
from ..inference import task_accuracy
from ..merging import merge
from ..security import protect, unlock_expert
from ..taskvec import task_vectors
from ..tuning import select
from ..zoo.base import Zoo

SCALES = [round(0.1 * i, 1) for i in range(1, 11)]  # Task Arithmetic's lambda grid, chosen on validation


def backdoor_survival(zoo: Zoo, merges: Mapping[str, dict], device: str | torch.device = "auto") -> pd.DataFrame:
    """Per merge (name -> ex.merge keyword arguments, `method` included) and backdoored task: clean accuracy and
    attack success of the merge, with the backdoored expert's and the base's beside them (fractions)."""
    tv, rows = task_vectors(zoo, device=device), []
    for name, kwargs in merges.items():
        scores = evaluate(zoo, merge(tv, zoo=zoo, **kwargs), device=device)
        if scores.attack is None:
            raise ValueError(f"zoo {zoo.name!r} has no backdoored expert: load one, e.g. "
                             "load_zoo('demo', experts={'digits': 'backdoored'})")
        acc = scores.table.set_index("task")
        for _, a in scores.attack.iterrows():
            rows.append({"merge": name, "task": a["task"], "accuracy": acc.loc[a["task"], "merged"],
                         "average_accuracy": scores.mean["merged"], "attack_success": a["merged"],
                         "expert_attack_success": a["expert"], "base_attack_success": a["base"]})
    return pd.DataFrame(rows)


def _with_expert(zoo: Zoo, task: str, weights: Mapping[str, Tensor], device) -> object:
    return task_vectors(zoo.base_state_dict(), {t: weights if t == task else zoo.expert_state_dict(t)
                                                for t in zoo.tasks}, device=device)


def mergelock_study(zoo: Zoo, task: str, seed: int = 0, unlock_methods: tuple[str, ...] = ("lstsq", "kabsch"),
                    scales: list[float] = SCALES, device: str | torch.device = "auto",
                    protected: bool = True) -> pd.DataFrame:
    """Task Arithmetic (lambda chosen on validation) with `task`'s expert clean, MergeLock-protected, and unlocked
    by each method: one row each with the expert alone, lambda, the merge on `task` and on the other tasks (test).
    protected=False gives the clean row alone."""
    base_acc = task_accuracy(zoo, zoo.base_state_dict(), task, device=device)
    variants = {"clean": zoo.expert_state_dict(task)}
    if protected:
        variants["protected"] = locked = protect(zoo, task, seed=seed)
        variants.update({f"unlocked ({m})": unlock_expert(zoo, locked, m) for m in unlock_methods})
    rows = []
    for name, weights in variants.items():
        sel = select(_with_expert(zoo, task, weights, device), "task_arithmetic", {"scale": scales}, zoo=zoo,
                     device=device)
        table = sel.scores.table.set_index("task")
        rows.append({"expert": name, "expert_alone": task_accuracy(zoo, weights, task, device=device),
                     "scale": sel.params["scale"], "merged_task": table.loc[task, "merged"],
                     "merged_others": table.drop(index=task)["merged"].mean(), "base": base_acc})
    return pd.DataFrame(rows)


def protected_task_vectors(zoo: Zoo, task: str, seed: int = 0, device: str | torch.device = "auto"):
    """The zoo's task vectors with `task`'s expert MergeLock-protected: for the cosine-map and layer-norm views."""
    return _with_expert(zoo, task, protect(zoo, task, seed=seed), device)
