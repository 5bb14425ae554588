"""The Security tab's handlers: backdoored experts through merging, and MergeLock with its unlock attempt.

Numbers come from `explorer.analysis.threats`, figures from `explorer.plots`; this module only picks the zoo and
formats the tables for the page.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import plots as P
from ..analysis import cosine, layer_norms
from ..analysis.threats import backdoor_survival, mergelock_study, protected_task_vectors
from . import cache

BACKDOORED_ZOO = "demo-backdoored"  # the demo zoo with every stored backdoored expert in place of the clean one
MERGES = {"task_arithmetic (λ 0.3)": {"method": "task_arithmetic", "scale": 0.3},
          "ties (density 0.2, λ 0.4)": {"method": "ties", "density": 0.2, "scale": 0.4}}
LOCK_SCALES = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0]  # a shorter lambda grid than the notebook's, for a live page
UNLOCKS = ("none", "lstsq", "kabsch")


def expert_label(zoo_name: str, task: str) -> str:
    """How the expert picker names a task's expert: flagged when the zoo's expert is backdoored."""
    return f"{task} ⚠ backdoored" if cache.zoo(zoo_name).backdoor(task) is not None else task


def _percent(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{c: (100 * frame[c]).round(1) for c in frame.columns if frame[c].dtype.kind == "f"
                           and c != "scale"})


def backdoor_view(zoo_name: str = BACKDOORED_ZOO) -> tuple[pd.DataFrame, go.Figure]:
    """Task Arithmetic and TIES on a zoo with backdoored experts (default: the demo zoo's): accuracy and attack
    success (%)."""
    frame = backdoor_survival(cache.zoo(zoo_name), MERGES)
    return _percent(frame), P.backdoor_survival(frame)


def mergelock_view(task: str, protect: bool, unlock: str, seed: int = 0, scales: list[float] = LOCK_SCALES,
                   zoo_name: str = "demo") -> tuple:
    """Task Arithmetic (lambda on validation) with `task`'s expert clean, protected (when `protect`) and unlocked
    (when `unlock` is not "none"); the cosine map and layer norms of the task vectors as merged."""
    if unlock not in UNLOCKS:
        raise ValueError(f"unlock attempt must be one of {UNLOCKS}, got {unlock!r}")
    zoo = cache.zoo(zoo_name)
    methods = () if unlock == "none" else (unlock,)
    frame = mergelock_study(zoo, task, seed, methods, scales, protected=protect)
    tv = protected_task_vectors(zoo, task, seed) if protect else cache.vectors(zoo_name, list(zoo.tasks))
    state = "protected" if protect else "clean"
    return (_percent(frame), P.mergelock_study(frame),
            P.cosine_map(cosine(tv), title=f"Cosine similarity of task vectors ({task} {state})"),
            P.layer_norms(layer_norms(tv), title=f"Task-vector norm per layer ({task} {state})"))

