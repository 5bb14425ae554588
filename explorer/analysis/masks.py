"""Masks of a masking merge (TIES, DARE, magnitude, Breadcrumbs, TALL masks, Consensus, EMR): density,
pairwise overlap, and how many tasks keep each parameter (0 = catastrophic, 1 = selfish, >= 2 = shared)."""
from __future__ import annotations

import pandas as pd
import torch

from ..result import MergeResult
from ._common import check_by, cross, groups, square, tidy_pairs

CATEGORIES = {0: "catastrophic", 1: "selfish"}  # n_tasks >= 2: "shared" (TALL-masks paper's names)


def mask_tasks(result: MergeResult) -> list[str]:
    """The tasks that have masks, in the task-vector order; a clear error if the method kept none."""
    if not result.masks:
        raise ValueError(f"the {result.method or 'given'} result has no masks; use a masking method such as "
                         "ties, dare, magnitude, breadcrumbs, tall_masks, consensus or emr")
    known = [t for t in result.tasks if t in result.masks]
    return known + [t for t in result.masks if t not in known]


def _stacked(result: MergeResult, tasks: list[str], name: str) -> torch.Tensor:
    """Parameter `name`'s masks for `tasks` as bool [T, n]."""
    return torch.stack([result.masks[t][name].reshape(-1).bool() for t in tasks])


def _masked_groups(result: MergeResult, by: str | None) -> dict[str, list[str]]:
    """Groups of the parameters that carry masks (every task has the same masked names)."""
    check_by(by)
    first = result.masks[mask_tasks(result)[0]]
    return {g: [n for n in names if n in first] for g, names in groups(result.tv, by).items()
            if any(n in first for n in names)}


def mask_density(result: MergeResult, by: str | None = None) -> pd.DataFrame:
    """Per task, the kept fraction of masked parameters: `task, kept, total, density` (by="layer"/"kind" prepends
    that column)."""
    tasks = mask_tasks(result)
    rows = []
    for group, names in _masked_groups(result, by).items():
        kept = sum(_stacked(result, tasks, n).sum(1) for n in names)  # [T]
        total = sum(result.masks[tasks[0]][n].numel() for n in names)
        rows += [(group, t, int(k), total, int(k) / total) for t, k in zip(tasks, kept.tolist())]
    frame = pd.DataFrame(rows, columns=[by or "group", "task", "kept", "total", "density"])
    return frame.drop(columns="group") if by is None else frame


def _intersections(result: MergeResult, tasks: list[str], by: str | None) -> dict[str, torch.Tensor]:
    """{group: [T, T] count of parameters kept by both tasks}."""
    out = {}
    for group, names in _masked_groups(result, by).items():
        out[group] = sum(cross(m, m) for m in (_stacked(result, tasks, n) for n in names))
    return out


def mask_overlap(result: MergeResult, metric: str = "jaccard", by: str | None = None) -> pd.DataFrame:
    """Pairwise mask overlap: metric "intersection" (count kept by both) or "jaccard" (|A & B| / |A | B|).
    T x T for by=None, else tidy `layer|kind, task_a, task_b, <metric>`. Jaccard of two empty masks is NaN."""
    if metric not in ("intersection", "jaccard"):
        raise ValueError(f"metric={metric!r} is not supported; use 'intersection' or 'jaccard'")
    tasks = mask_tasks(result)
    values = _intersections(result, tasks, by)
    if metric == "jaccard":
        for group, inter in values.items():
            kept = inter.diagonal()
            values[group] = inter / (kept[:, None] + kept[None, :] - inter)
    return square(values["all"], tasks) if by is None else tidy_pairs(values, tasks, by, metric)


def mask_usage(result: MergeResult, by: str | None = None) -> pd.DataFrame:
    """Histogram of how many tasks' masks keep each parameter: `n_tasks, count, fraction, category` with n_tasks
    0..T (category catastrophic / selfish / shared); by="layer" (or "kind") adds that column, fractions per group."""
    tasks = mask_tasks(result)
    rows = []
    for group, names in _masked_groups(result, by).items():
        counts = sum(torch.bincount(_stacked(result, tasks, n).sum(0), minlength=len(tasks) + 1) for n in names)
        total = int(counts.sum())
        rows += [(group, k, int(c), int(c) / total, CATEGORIES.get(k, "shared")) for k, c in enumerate(counts.tolist())]
    frame = pd.DataFrame(rows, columns=[by or "group", "n_tasks", "count", "fraction", "category"])
    return frame.drop(columns="group") if by is None else frame


def selfish_weights(result: MergeResult) -> pd.DataFrame:
    """Per task, the entries its mask keeps and how many of them no other task keeps (selfish, TALL-masks paper):
    `task, kept, selfish, selfish_fraction` with selfish_fraction = selfish / kept (NaN for an empty mask)."""
    tasks = mask_tasks(result)
    kept, selfish = torch.zeros(len(tasks), dtype=torch.long), torch.zeros(len(tasks), dtype=torch.long)
    for names in _masked_groups(result, None).values():
        for name in names:
            masks = _stacked(result, tasks, name)  # [T, n]
            alone = masks & (masks.sum(0) == 1)  # kept by this task and by no other
            kept, selfish = kept + masks.sum(1), selfish + alone.sum(1)
    rows = [(t, int(k), int(s), int(s) / int(k) if k else float("nan"))
            for t, k, s in zip(tasks, kept.tolist(), selfish.tolist())]
    return pd.DataFrame(rows, columns=["task", "kept", "selfish", "selfish_fraction"])
