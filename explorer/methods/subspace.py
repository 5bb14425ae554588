"""Subspace merges without data: TSV-Merge, Iso-C, Iso-CTS and CART work on the singular vectors of each
layer's task matrices instead of on single weights (each exact to its paper's official code).

Each merge is `theta_0 + scale * direction`; the direction depends on the SVDs (cached per TaskVectors, see
`spectral`) and on the shape parameters only, so moving `scale` re-merges as fast as Task Arithmetic.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from ..result import MergeResult
from ..taskvec import TaskVectors
from . import params
from .blocks import scaled
from .registry import Param, register
from .spectral import (
    SVD,
    cached_factor,
    cached_merge,
    is_linear_weight,
    is_matrix,
    low_rank,
    map_threads,
    orthogonalised,
    polar,
    sum_svd,
    svd,
    task_blocks,
    task_svd,
)

RANK_MODE = Param("rank_mode", str, "auto", "how many singular components each task keeps per matrix: auto = "
                  "1/T of the rank (the paper's rule), fixed = the `rank` fraction", choices=("auto", "fixed"),
                  paper="auto")
TSV_RANK = Param("rank", float, 0.125, "with rank_mode=fixed: the fraction of each task's singular components "
                 "kept per matrix (T x rank > 1 lets the tasks' subspaces overlap)", low=0.0, high=1.0, step=0.005)
COMMON = Param("common", float, 0.8, "fraction of each matrix's rank given to the common subspace (the top singular "
               "vectors of the summed task matrices); the rest is split evenly between the tasks",
               low=0.0, high=1.0, step=0.01, paper=0.8)
CART_RANK = Param("rank", float, 0.12, "fraction of the rank kept of each task's deviation from the average "
                  "(the paper: 0.12 for 8 tasks, 0.16 for 14, 0.32 for 20)", low=0.0, high=1.0, step=0.01, paper=0.12)


def _per_param(tv: TaskVectors, matrix: Callable[[str], Tensor]) -> dict[str, Tensor]:
    """`matrix(name)` for every matrix parameter (layers in parallel on CPU), the mean over tasks for the others."""
    names = [n for n in tv.keys() if is_matrix(tv, n)]
    done = dict(zip(names, map_threads(matrix, names, tv.device)))
    return {n: done[n] if n in done else d.mean(dim=0) for n, d in tv.items()}


def _tsv_k(r: int, num_tasks: int, rank_mode: str, rank: float) -> int:
    return int(r * (1.0 / num_tasks if rank_mode == "auto" else rank))


def tsv_direction(tv: TaskVectors, rank_mode: str = "auto", rank: float = 0.125) -> dict[str, Tensor]:
    """TSV's unscaled merged task vector: per matrix, each task's top-k singular triplets concatenated and
    orthogonalised (polar of the stacked U's and V's); every other parameter averaged."""
    def matrix(name: str) -> Tensor:
        k = _tsv_k(min(tv[name].shape[1:]), tv.num_tasks, rank_mode, rank)
        return orthogonalised(task_blocks(task_svd(tv, name), k)).to(tv[name].dtype)

    return cached_merge(tv, ("tsv", rank if rank_mode == "fixed" else "auto"), lambda: _per_param(tv, matrix))


@register("tsv", params.scale(1.0, paper="chosen on validation in 0.1-3.0"), RANK_MODE, TSV_RANK,
          title="TSV-Merge (Task Singular Vectors)",
          paper="Gargiulo et al., Task Singular Vectors: Reducing Task Interference in Model Merging, CVPR 2025",
          formula="per matrix: U_t S_t V_t^T = svd(tau_t); keep k = r/T; U = [U_1k..U_Tk], V = [V_1k..V_Tk], "
                  "S = diag(S_1k..S_Tk); theta = theta_0 + lambda * polar(U) S polar(V)^T (other params: mean)",
          summary="Keep each task's top singular directions per layer and orthogonalise them across tasks, which "
                  "removes the interference that overlapping subspaces cause.")
def tsv(tv: TaskVectors, *, scale: float, rank_mode: str, rank: float) -> MergeResult:
    return MergeResult(tv, scaled(tsv_direction(tv, rank_mode, rank), scale))


def iso_c_direction(tv: TaskVectors) -> dict[str, Tensor]:
    """Iso-C's unscaled vector: per matrix the summed task matrix with its spectrum flattened to its mean."""
    def matrix(name: str) -> Tensor:
        f = sum_svd(tv, name)
        return (f.S.mean() * (f.U @ f.Vh)).to(tv[name].dtype)

    return cached_merge(tv, ("iso_c",), lambda: _per_param(tv, matrix))


@register("iso_c", params.scale(1.0, paper="chosen on validation in 0.1-3.0"),
          title="Iso-C (isotropic merging in the common subspace)",
          paper="Marczak et al., No Task Left Behind: Isotropic Model Merging with Common and Task-Specific "
                "Subspaces, ICML 2025",
          formula="per matrix: U S V^T = svd(sum_t tau_t); theta = theta_0 + lambda * mean(S) U V^T "
                  "(other params: mean over tasks)",
          summary="Sum the task matrices, then flatten the spectrum: every direction of the sum gets the same "
                  "singular value, so no task's dominant directions drown the others.")
def iso_c(tv: TaskVectors, *, scale: float) -> MergeResult:
    return MergeResult(tv, scaled(iso_c_direction(tv), scale))


def iso_cts_sizes(r: int, num_tasks: int, common: float) -> tuple[int, int]:
    """(c, d): the common subspace's size and each task's, with T d + c = r, as the official code computes them
    (Python's round, i.e. banker's rounding). Where that rounding would leave c < 0 (tiny `common`), the tasks
    get r // T each instead, so the slices stay valid."""
    c = int(r * common)
    task_total = round((r - c) / num_tasks) * num_tasks
    c = r - task_total
    if c < 0:
        c = r - (r // num_tasks) * num_tasks
    return c, (r - c) // num_tasks


def _residual_svd(d: Tensor, total: SVD, c: int) -> SVD:
    """The SVD of each task's matrix with the common output subspace projected out, (I - U_c U_c^T) tau_t. When the
    sum's U is square (m <= n), its last m - c columns span the complement exactly, so the residual is
    U_rest (U_rest^T tau_t) and only the small [m - c, n] factor is decomposed (5x fewer rows at ViT-B/32)."""
    m = d.shape[1]
    if total.U.shape[1] == m:
        rest = total.U[:, c:]
        small = svd(rest.transpose(0, 1) @ d)
        return SVD(rest @ small.U, small.S, small.Vh)
    Uc = total.U[:, :c]
    return svd(d - Uc @ (Uc.transpose(0, 1) @ d))


def iso_cts_direction(tv: TaskVectors, common: float = 0.8) -> dict[str, Tensor]:
    """Iso-CTS' unscaled vector: the top of the sum's spectrum (common) plus each task's top directions outside
    the common left subspace, orthogonalised together, with one flattened singular value."""
    def matrix(name: str) -> Tensor:
        d = tv[name]
        r = min(d.shape[1:])
        c, k = iso_cts_sizes(r, tv.num_tasks, common)
        total = sum_svd(tv, name)
        Uc = total.U[:, :c]
        own = task_blocks(_residual_svd(d, total, c), k)
        U = own.U.new_empty(d.shape[1], r)
        U[:, :tv.num_tasks * k], U[:, tv.num_tasks * k:] = own.U, Uc
        Vh = own.Vh.new_empty(r, d.shape[2])
        Vh[:tv.num_tasks * k], Vh[tv.num_tasks * k:] = own.Vh, total.Vh[:c]
        s = (own.S.sum() + total.S[:c].sum()) / r
        return (s * (polar(U) @ polar(Vh))).to(d.dtype)

    return cached_merge(tv, ("iso_cts", common), lambda: _per_param(tv, matrix))


@register("iso_cts", params.scale(1.0, paper="chosen on validation in 0.1-3.0"), COMMON,
          title="Iso-CTS (isotropic merging, common and task-specific subspaces)",
          paper="Marczak et al., No Task Left Behind: Isotropic Model Merging with Common and Task-Specific "
                "Subspaces, ICML 2025",
          formula="per matrix: common = top c = common*r singular vectors of sum_t tau_t; each task adds its top "
                  "(r-c)/T vectors of (I - U_c U_c^T) tau_t; theta = theta_0 + lambda * mean(S) polar(U) polar(V)^T",
          summary="Iso-C plus task-specific directions: the common subspace keeps what the tasks share, and each "
                  "task reserves a few directions of its own that the sum would have drowned.")
def iso_cts(tv: TaskVectors, *, scale: float, common: float) -> MergeResult:
    return MergeResult(tv, scaled(iso_cts_direction(tv, common), scale))


def _cart_k(r: int, rank: float) -> int:
    if rank >= 1.0:
        return r
    if rank <= 0.0:
        return 0
    return max(1, int(rank * r))


def _centred_svd(tv: TaskVectors, name: str) -> SVD:
    d = tv[name]
    return cached_factor(tv, ("centred", name), lambda: svd(d - d.mean(dim=0, keepdim=True)))


def cart_parts(tv: TaskVectors, rank: float = 0.12) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """CART's two parts: the average task vector, and the sum over tasks of each task's rank-k deviation from it
    (the blocks' linear weights only; elsewhere the deviations sum to zero)."""
    def deviations(name: str) -> Tensor:
        k = _cart_k(min(tv[name].shape[1:]), rank)
        return low_rank(_centred_svd(tv, name), k).sum(dim=0).to(tv[name].dtype)

    def make() -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        names = [n for n in tv.keys() if is_linear_weight(n) and tv[n].dim() == 3]
        return ({n: d.mean(dim=0) for n, d in tv.items()},
                dict(zip(names, map_threads(deviations, names, tv.device))))

    return cached_merge(tv, ("cart", rank), make)


@register("cart", CART_RANK, params.scale(2.0, paper=2.0),
          title="CART (centred arithmetic with rank reduction)",
          paper="Choi et al., Revisiting Weight Averaging for Model Merging, arXiv 2412.12153",
          formula="tau_avg = (1/T) sum_t tau_t; theta = theta_0 + tau_avg + lambda * sum_t LR_k(tau_t - tau_avg), "
                  "LR_k = best rank-k approximation (the blocks' linear weights; k = rank * r)",
          summary="Start from the weight average and add back a low-rank part of each task's deviation from it: "
                  "the deviations' top singular directions carry the task knowledge, the rest is noise.")
def cart(tv: TaskVectors, *, rank: float, scale: float) -> MergeResult:
    mean, spread = cart_parts(tv, rank)
    delta = {n: m + scale * spread[n] if n in spread else m for n, m in mean.items()}
    return MergeResult(tv, delta)
