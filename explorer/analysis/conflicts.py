"""Conflicts between task vectors: cosine similarity and sign disagreement, whole model, per layer or per kind.

Whole-model results are square T x T DataFrames indexed by task; per-group results are tidy
(`layer, task_a, task_b, cosine`), so any layer's matrix is one `pivot` away.
"""
from __future__ import annotations

import pandas as pd
from torch import Tensor

from ..methods.blocks import keep_topk
from ..taskvec import TaskVectors
from ._common import cross, groups, layer_depth, square, tidy_pairs


def _per_group(tv: TaskVectors, by: str | None, fn) -> dict[str, tuple[Tensor, ...]]:
    """Sum `fn(name, tv[name] as [T, n])` (a tuple of [T, T] float64 tensors) over each group's parameters."""
    out = {}
    for group, names in groups(tv, by).items():
        parts = [fn(n, tv[n].reshape(tv.num_tasks, -1)) for n in names]
        out[group] = tuple(sum(p[i] for p in parts) for i in range(len(parts[0])))
    return out


def _cosine_matrix(dots: Tensor) -> Tensor:
    """Cosine from a Gram matrix of dot products; NaN where a vector is zero."""
    norms = dots.diagonal().sqrt()
    return dots / (norms[:, None] * norms[None, :])


def cosine(tv: TaskVectors, by: str | None = None) -> pd.DataFrame:
    """Cosine similarity of task vectors: T x T for the whole model (by=None), else tidy
    `layer|kind, task_a, task_b, cosine` with every ordered pair of each layer (or parameter kind)."""
    sums = _per_group(tv, by, lambda _, x: (cross(x, x),))
    cos = {g: _cosine_matrix(s[0]) for g, s in sums.items()}
    if by is not None:
        return tidy_pairs(cos, tv.tasks, by, "cosine")
    frame = square(cos["all"], tv.tasks)
    frame.attrs["over"] = f"all {tv.numel():,} entries of each task vector"  # what the figures' subtitles say
    return frame


def _check_topk(topk: float | None) -> None:
    if topk is not None and not 0 < topk <= 1:
        raise ValueError(f"topk={topk!r} must be a fraction in (0, 1], e.g. 0.2 for each task's top 20 % "
                         "entries, or None for all entries")


def _active(tv: TaskVectors, topk: float | None) -> dict[str, Tensor] | None:
    """Each task's top-`topk` entries by magnitude over the whole model (TIES' rule, `keep_topk`), or None = all."""
    _check_topk(topk)
    return None if topk is None else keep_topk(tv.deltas, topk)


def _signs(x: Tensor, keep: Tensor | None) -> tuple[Tensor, Tensor]:
    """(positive, negative) bool [T, n] over the active entries: non-zero and, with a top-k mask, kept by it."""
    active = x != 0 if keep is None else (x != 0) & keep.reshape(x.shape)
    return active & (x > 0), active & (x < 0)


def sign_conflicts(tv: TaskVectors, by: str | None = None, topk: float | None = None) -> pd.DataFrame:
    """Pairwise sign conflict: among entries active in both tasks (non-zero, and with `topk` among each task's
    top-`topk` fraction by magnitude, as TIES trims), the fraction with opposite signs. T x T for by=None, else
    tidy `layer|kind, task_a, task_b, conflict`. NaN where two tasks share no active entry."""
    keep = _active(tv, topk)

    def counts(name: str, x: Tensor) -> tuple[Tensor, Tensor]:
        pos, neg = (s.float() for s in _signs(x, None if keep is None else keep[name]))
        opposite = cross(pos, neg)
        return opposite + opposite.T, cross(pos + neg, pos + neg)

    sums = _per_group(tv, by, counts)
    frac = {g: opposite / both for g, (opposite, both) in sums.items()}
    if by is not None:
        return tidy_pairs(frac, tv.tasks, by, "conflict")
    frame = square(frac["all"], tv.tasks)
    frame.attrs["over"] = ("the entries non-zero in both tasks" if topk is None else
                           f"the entries in both tasks' top {topk:.0%} by magnitude")
    return frame


def sign_disagreement(tv: TaskVectors, by: str | None = "layer", topk: float | None = None) -> pd.DataFrame:
    """Across all tasks at once, per layer (or kind, or "all"): `shared` = fraction of entries active in >= 2
    tasks, `disagreement` = fraction of those where the active tasks do not all agree in sign (TIES' conflicts)."""
    keep, rows = _active(tv, topk), []
    for group, names in groups(tv, by).items():
        numel = shared = clash = 0
        for n in names:
            pos, neg = _signs(tv[n].reshape(tv.num_tasks, -1), None if keep is None else keep[n])
            npos, nneg = pos.sum(0), neg.sum(0)
            numel += npos.numel()
            shared += int((npos + nneg >= 2).sum())
            clash += int(((npos > 0) & (nneg > 0)).sum())
        rows.append((group, shared / numel, clash / shared if shared else float("nan"), numel))
    return pd.DataFrame(rows, columns=[by or "group", "shared", "disagreement", "numel"])


def conflict_profile(tv: TaskVectors, metric: str = "cosine", topk: float | None = None) -> pd.DataFrame:
    """How each pair of tasks relates across depth: tidy `layer, depth, pair, task_a, task_b, <value>` with one
    row per unordered pair and layer; value is `cosine` (metric="cosine") or `conflict` (metric="signs")."""
    if metric not in ("cosine", "signs"):
        raise ValueError(f"metric={metric!r} is not supported; use 'cosine' or 'signs'")
    if metric == "cosine" and topk is not None:
        raise ValueError("topk applies to metric='signs' only; drop topk for the cosine profile")
    frame = cosine(tv, by="layer") if metric == "cosine" else sign_conflicts(tv, by="layer", topk=topk)
    order = {t: i for i, t in enumerate(tv.tasks)}
    frame = frame[frame.task_a.map(order) < frame.task_b.map(order)].reset_index(drop=True)
    frame.insert(1, "depth", frame.layer.map(layer_depth(tv)))
    frame.insert(2, "pair", frame.task_a + " vs " + frame.task_b)
    return frame
