"""What sparsifying merges do to real task vectors: TIES' three steps on a few entries, and which magnitudes
Model Breadcrumbs keeps (a middle band per row) and drops (small entries and outliers)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..methods.blocks import apply_masks, disjoint_merge, elect_sign, keep_topk
from ..methods.sparse import breadcrumb_mask
from ..taskvec import TaskVectors

TIES_STEPS = ("task vectors", "trim", "elect", "merge")
BANDS = ("small (dropped)", "middle band (kept)", "outliers (dropped)")


def _pick_entries(trimmed: torch.Tensor, entries: int) -> list[int]:
    """The `entries` positions (flattened) that most tasks keep after the trim, in index order among equals."""
    survivors = (trimmed != 0).sum(0)  # [n]
    order = sorted(range(len(survivors)), key=lambda i: (-int(survivors[i]), i))
    return sorted(order[:entries])


def ties_steps(tv: TaskVectors, name: str, entries: int | Sequence[int] = 12, density: float = 0.2) -> pd.DataFrame:
    """TIES (trim, elect sign, disjoint mean) followed on a few entries of parameter `name`, with the trim's top-k
    taken over the whole model as the method does: tidy `step, row, entry, value`. Steps: "task vectors" (tau_t),
    "trim" (tau_hat_t), "elect" (rows "elected sign" = gamma and each task's entries that agree with it, 0 if not),
    "merge" (rows "TIES" = disjoint mean and "plain mean" for contrast). `entries`: a count (the entries most
    tasks keep after the trim) or flattened indices."""
    if name not in tv:
        raise KeyError(f"unknown parameter {name!r}; pick one of tv.keys(), e.g. {tv.keys()[-3]!r}")
    everything = apply_masks(tv.deltas, keep_topk(tv.deltas, density))  # the trim, over the whole model
    gamma = elect_sign(everything)[name].reshape(-1)  # [n]; a zero vote takes the model-wide majority
    x, trimmed = (v.reshape(tv.num_tasks, -1) for v in (tv[name], everything[name]))  # [T, n]
    picked = _pick_entries(trimmed, entries) if isinstance(entries, int) else list(entries)
    x, trimmed, gamma = x[:, picked], trimmed[:, picked], gamma[picked]
    merged, agree = disjoint_merge(trimmed, gamma, "mean")
    rows = {("task vectors", t): x[i] for i, t in enumerate(tv.tasks)}
    rows.update({("trim", t): trimmed[i] for i, t in enumerate(tv.tasks)})
    rows[("elect", "elected sign")] = gamma
    rows.update({("elect", t): torch.where(agree[i], trimmed[i], 0.0) for i, t in enumerate(tv.tasks)})
    rows.update({("merge", "TIES"): merged, ("merge", "plain mean"): x.mean(0)})
    out = [(step, row, e, float(v)) for (step, row), values in rows.items() for e, v in zip(picked, values.tolist())]
    frame = pd.DataFrame(out, columns=["step", "row", "entry", "value"])
    frame.attrs.update(name=name, density=density)
    return frame


def _bands(d: torch.Tensor, keep: float, remove: float) -> torch.Tensor:
    """Per entry of one stacked tensor [T, ..., n]: 0 small (dropped), 1 kept, 2 outlier (dropped) for Breadcrumbs."""
    kept = breadcrumb_mask(d, keep, remove)
    outlier = breadcrumb_mask(d, remove, 0.0) if d.dim() > 1 else torch.zeros_like(kept)  # each row's top `remove`
    return torch.where(outlier, 2, kept.long())


def breadcrumb_bands(tv: TaskVectors, keep: float = 0.15, remove: float = 0.01, bins: int = 60,
                     task: str | None = None) -> pd.DataFrame:
    """Histogram of log10 |tau| over every task (or one `task`) split by what Model Breadcrumbs does with each entry
    (per row: drop the top `remove` fraction as outliers, keep the next `keep`, drop the rest): tidy `band, bin_left,
    bin_right, count, fraction` with fraction = count / all non-zero entries. Zero entries are left out."""
    logs, labels = [], []
    for d in tv.deltas.values():
        if task is not None:
            d = d[tv.task_index(task)].unsqueeze(0)
        band, values = _bands(d, keep, remove).reshape(-1), d.reshape(-1).abs()
        nonzero = values > 0
        logs.append(values[nonzero].double().log10())
        labels.append(band[nonzero])
    logs, labels = torch.cat(logs).numpy(), torch.cat(labels).numpy()
    edges = np.histogram_bin_edges(logs, bins=bins)
    rows = []
    for b, band in enumerate(BANDS):
        counts, _ = np.histogram(logs[labels == b], bins=edges)
        rows += [(band, edges[i], edges[i + 1], int(c), int(c) / len(logs)) for i, c in enumerate(counts)]
    frame = pd.DataFrame(rows, columns=["band", "bin_left", "bin_right", "count", "fraction"])
    frame.attrs.update(keep=keep, remove=remove, task=task or "all tasks")
    return frame
