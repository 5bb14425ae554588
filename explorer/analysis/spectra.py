"""Spectral views of task vectors: each task's singular values per matrix, effective rank and top-k energy, how much
the tasks' top singular subspaces overlap (interference that weight cosine hides), and TSV's singular task
interference before and after orthogonalisation. The SVDs are the ones the subspace merges cache.
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor

from ..methods.spectral import cached_factor, is_matrix, map_threads, polar, task_blocks, task_svd
from ..result import MergeResult
from ..taskvec import TaskVectors
from ._common import check_by, groups, square, tidy_pairs


def matrix_names(tv: TaskVectors) -> list[str]:
    """The parameters the subspace merges treat as matrices (2-D per task), in model order."""
    return [n for n in tv.keys() if is_matrix(tv, n)]


def _check_matrix(tv: TaskVectors, name: str) -> None:
    if name not in tv:
        raise KeyError(f"no parameter {name!r}; matrices of these task vectors: {matrix_names(tv)[:6]} ...")
    if not is_matrix(tv, name):
        raise ValueError(f"parameter {name!r} has shape {tuple(tv[name].shape[1:])}, not a matrix; pick one of "
                         f"{matrix_names(tv)[:6]} ...")


def default_k(tv: TaskVectors, r: int) -> int:
    """The top-k a task keeps by TSV's rule, r / T (at least 1)."""
    return max(1, r // tv.num_tasks)


def spectrum(tv: TaskVectors, name: str, result: MergeResult | None = None) -> pd.DataFrame:
    """Singular values of parameter `name` for each task (columns; plus "merged" when `result` is given), by
    component (index 1..r), largest first."""
    _check_matrix(tv, name)
    values = {t: s.double().cpu().numpy() for t, s in zip(tv.tasks, task_svd(tv, name).S)}
    if result is not None:
        values["merged"] = torch.linalg.svdvals(result.delta[name].float()).double().cpu().numpy()
    frame = pd.DataFrame(values)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="component")
    return frame


def effective_rank(s: Tensor) -> float:
    """Roy & Vetterli's effective rank exp(H(p)), p_i = s_i / sum s: r for a flat spectrum, 1 for rank one."""
    s = s.double()
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


def spectral_summary(tv: TaskVectors, result: MergeResult | None = None, top: float | None = None) -> pd.DataFrame:
    """Per matrix and task (and the merge): `param, layer, task, rank, effective_rank, top_k, energy_top` where
    energy_top is the share of squared singular values in the top k (k = top * r, default r / T). The tasks' rows
    are computed once per task vectors (a slider moves only the merge's)."""
    tasks = cached_factor(tv, ("spectral_summary", top), lambda: _summary_rows(tv, top))
    rows = []
    for name, (layer, r, k, task_rows) in tasks.items():
        rows += task_rows
        if result is not None:
            rows.append(_summary_row(name, layer, "merged", r, k, torch.linalg.svdvals(result.delta[name].float())))
    return pd.DataFrame(rows, columns=["param", "layer", "task", "rank", "effective_rank", "top_k", "energy_top"])


def _summary_rows(tv: TaskVectors, top: float | None) -> dict[str, tuple]:
    """{matrix: (layer, rank, top k, the tasks' rows)} for `spectral_summary`."""
    _with_svds(tv, matrix_names(tv))
    out = {}
    for name in matrix_names(tv):
        S = task_svd(tv, name).S
        r = S.shape[-1]
        k = default_k(tv, r) if top is None else max(1, int(top * r))
        layer = tv.info[name].layer
        out[name] = (layer, r, k, [_summary_row(name, layer, task, r, k, s) for task, s in zip(tv.tasks, S)])
    return out


def _summary_row(name: str, layer: str, task: str, r: int, k: int, s: Tensor) -> tuple:
    energy = s.double().pow(2)
    share = float(energy[:k].sum() / energy.sum()) if energy.sum() > 0 else math.nan
    return (name, layer, task, r, effective_rank(s), k, share)


def _with_svds(tv: TaskVectors, names: list[str]) -> None:
    """Compute (and cache) the tasks' SVDs of `names`, layers in parallel on CPU: the slow part of every view here."""
    map_threads(lambda n: task_svd(tv, n), names, tv.device)


def _overlap_matrix(tv: TaskVectors, name: str, k: int | None) -> Tensor:
    """[T, T]: the mean squared cosine of the principal angles between tasks' top-k left singular subspaces,
    ||U_a^T U_b||_F^2 / k (1 = same subspace, k/m for random ones, 0 = orthogonal), from one Gram matrix of the
    tasks' concatenated top-k vectors."""
    U = task_svd(tv, name).U
    T, m, r = U.shape
    k = default_k(tv, r) if k is None else max(1, min(k, r))
    stacked = U[:, :, :k].permute(1, 0, 2).reshape(m, T * k)
    gram = (stacked.transpose(0, 1) @ stacked).reshape(T, k, T, k)
    return gram.double().pow(2).sum(dim=(1, 3)) / k


def _chance(tv: TaskVectors, name: str, k: int | None) -> float:
    """The overlap two random k-dimensional subspaces of R^m have on average: k / m."""
    m, r = tv[name].shape[1], min(tv[name].shape[1:])
    return (default_k(tv, r) if k is None else max(1, min(k, r))) / m


def subspace_overlap(tv: TaskVectors, k: int | None = None, by: str | None = None) -> pd.DataFrame:
    """How much the tasks' top-k singular subspaces overlap, averaged over matrices: T x T for the whole model
    (by=None), else tidy `layer|kind, task_a, task_b, overlap`. k defaults to r / T per matrix (TSV's share).
    The whole-model frame's attrs give what it is computed over and the chance level (k / m, random subspaces)."""
    check_by(by)
    _with_svds(tv, matrix_names(tv))
    per_group, chance = {}, []
    for group, names in groups(tv, by).items():
        names = [n for n in names if is_matrix(tv, n)]
        if names:
            per_group[group] = sum(_overlap_matrix(tv, n, k) for n in names) / len(names)
            chance += [_chance(tv, n, k) for n in names]
    if not per_group:
        raise ValueError("these task vectors have no matrix parameter (2-D per task): no singular subspaces to compare")
    if by is not None:
        return tidy_pairs(per_group, tv.tasks, by, "overlap")
    frame = square(per_group["all"], tv.tasks)
    frame.attrs["over"] = f"top-{'r/T' if k is None else k} left singular subspaces of {len(chance)} matrices"
    frame.attrs["chance"] = sum(chance) / len(chance)
    return frame


def _sti(U: Tensor, S: Tensor, V: Tensor) -> float:
    """||(U^T U - I) diag(S) (V^T V - I)||_1 (entrywise), TSV's singular task interference of concatenated bases."""
    eye = torch.eye(U.shape[1], dtype=U.dtype, device=U.device)
    return float((((U.T @ U - eye) * S) @ (V.T @ V - eye)).abs().double().sum())


def interference(tv: TaskVectors, k: int | None = None) -> pd.DataFrame:
    """Singular task interference per matrix: `param, layer, before, after, relative_before` with the tasks' top-k
    (default r / T) singular vectors concatenated as they are (before) and orthogonalised as TSV does (after);
    relative_before divides by the sum of the kept singular values, so matrices of different size compare. Computed
    in the task vectors' dtype: in float32, "after" is float32 round-off (about 1e-6 of "before"), not exactly 0."""
    def row(name: str) -> tuple:
        factors = task_svd(tv, name)
        kk = default_k(tv, factors.S.shape[-1]) if k is None else max(1, min(k, factors.S.shape[-1]))
        blocks = task_blocks(factors, kk)
        U, S, V = blocks.U, blocks.S, blocks.Vh.T
        before = _sti(U, S, V)
        after = _sti(polar(U), S, polar(V.T).T)
        total = float(S.double().sum())
        return name, tv.info[name].layer, kk, before, after, before / total if total > 0 else 0.0

    names = matrix_names(tv)
    rows = map_threads(row, names, tv.device)
    return pd.DataFrame(rows, columns=["param", "layer", "top_k", "before", "after", "relative_before"])

