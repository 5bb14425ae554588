"""Building blocks that the merge methods compose. Every block works on stacked task vectors
`deltas: name -> [T, ...]`, so methods are vectorised over tasks and never loop over elements."""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from .engine.fused import Ordered, global_threshold, masked_sum_fused, tall_one, ties_fused
from .engine.kernels import PackedMask, applies, fused
from .engine.thresholds import topk_rows

Stacked = Mapping[str, Tensor]  # name -> [T, ...]


def _rows(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def _broadcast(per_task: Tensor, like: Tensor) -> Tensor:
    """A [T] vector shaped to broadcast against a [T, ...] tensor."""
    return per_task.reshape(-1, *([1] * (like.dim() - 1)))


def _kth_threshold(abs_rows: Tensor, density: float) -> Tensor:
    """Per row, the magnitude at or above which the top `density` fraction lies (TIES' convention:
    the (d - floor(density*d))-th smallest |x|, so ties at the threshold are all kept)."""
    d = abs_rows.shape[1]
    k = d - int(d * density)
    if k <= 0:  # keep everything
        return torch.zeros(abs_rows.shape[0], device=abs_rows.device, dtype=abs_rows.dtype)
    if abs_rows.device.type == "cpu":  # numpy's introselect is ~2x faster than torch.kthvalue on CPU
        rows = abs_rows.float().numpy()
        return torch.from_numpy(np.partition(rows, k - 1, axis=1)[:, k - 1].copy()).to(abs_rows.dtype)
    return abs_rows.float().kthvalue(k, dim=1).values.to(abs_rows.dtype)


def keep_topk(deltas: Stacked, density: float, scope: str = "global") -> dict[str, Tensor]:
    """Masks keeping each task's top-`density` entries by |tau|: over the whole flattened task vector with the
    official TIES code's `>=` threshold (`scope="global"`: ties at the threshold are all kept), or exactly
    int(density * n) entries of each tensor (`scope="tensor"`, as PEFT and mergekit)."""
    if scope not in ("global", "tensor"):
        raise ValueError(f"scope must be 'global' or 'tensor', got {scope!r}")
    if density <= 0:
        return {n: torch.zeros_like(d, dtype=torch.bool) for n, d in deltas.items()}
    if scope == "global":
        if applies(list(deltas.values())):
            thresh = global_threshold(deltas, density)
            return {n: d.abs() >= _broadcast(thresh, d) for n, d in deltas.items()}
        flat = torch.cat([_rows(d).abs() for d in deltas.values()], dim=1)  # [T, D]
        thresh = _kth_threshold(flat, density)
        del flat
        return {n: d.abs() >= _broadcast(thresh, d) for n, d in deltas.items()}
    return {n: topk_rows(_rows(d), density).reshape(d.shape) for n, d in deltas.items()}


def elect_sign(deltas: Stacked, mode: str = "mass", scope: str = "global") -> dict[str, Tensor]:
    """TIES sign election: gamma = sign(sum_t tau_t) ("mass") or sign(sum_t sign(tau_t)) ("count").
    Where the vote is exactly 0: the model's majority sign sign(sum gamma) for scope "global" (the official
    code), +1 for scope "tensor" (PEFT's and mergekit's `where(vote >= 0, 1, -1)`)."""
    if mode not in ("mass", "count"):
        raise ValueError(f"sign must be 'mass' or 'count', got {mode!r}")
    votes = {n: (d if mode == "mass" else d.sign()).sum(dim=0).sign() for n, d in deltas.items()}
    if scope == "global":
        majority = torch.stack([v.sum() for v in votes.values()]).sum().sign()
        return {n: torch.where(v == 0, majority, v) for n, v in votes.items()}
    return {n: torch.where(v == 0, torch.ones_like(v), v) for n, v in votes.items()}


def agree_mask(x: Tensor, sign: Tensor) -> Tensor:
    """[T, ...] bool: entries that are non-zero and share the elected sign (strictly)."""
    return torch.where(sign.unsqueeze(0) > 0, x > 0, x < 0)


def disjoint_merge(x: Tensor, sign: Tensor, aggregate: str = "mean") -> tuple[Tensor, Tensor]:
    """TIES disjoint merge of one stacked tensor: the entries agreeing with the elected sign, summed
    ("sum") or averaged over the agreeing tasks ("mean"). Returns (merged, agree mask [T, ...])."""
    keep = agree_mask(x, sign)
    selected = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
    total = selected.sum(dim=0)
    if aggregate == "sum":
        return total, keep
    if aggregate == "mean":
        return total / keep.sum(dim=0).clamp(min=1).to(x.dtype), keep
    raise ValueError(f"aggregate must be 'mean' or 'sum', got {aggregate!r}")


def apply_masks(deltas: Stacked, masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """deltas * masks, tensor by tensor (masks are bool, same shape)."""
    return {n: torch.where(masks[n], d, torch.zeros((), dtype=d.dtype, device=d.device)) for n, d in deltas.items()}


def ties_vector(deltas: Stacked, density: float, sign: str = "mass", aggregate: str = "mean",
                scope: str = "global", ordered: Ordered | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Trim (top-k), elect sign, disjoint merge. Returns (merged name -> tensor, kept masks name -> [T, ...]).
    Big CPU float32 task vectors take the fused path (`fused.ties_fused`, same bits, a few read passes; `ordered`:
    the sorted magnitudes that give its global threshold at once)."""
    if applies(list(deltas.values())):
        return ties_fused(deltas, density, sign, aggregate, scope, ordered=ordered)
    trimmed = apply_masks(deltas, keep_topk(deltas, density, scope))
    signs = elect_sign(trimmed, sign, scope)
    merged, kept = {}, {}
    for name, x in trimmed.items():
        merged[name], kept[name] = disjoint_merge(x, signs[name], aggregate)
    return merged, kept


def consensus_vector(deltas: Stacked, shared: Mapping[str, Tensor], lam: float,
                     k: int) -> tuple[dict[str, Tensor], dict[str, Tensor | PackedMask]]:
    """Consensus merging: m_cons = 1{sum_t tall_mask_t >= k}, applied to the multi-task vector `shared`.
    Returns (m_cons * shared, the TALL masks name -> [T, ...])."""
    use = applies(list(deltas.values()))
    kept, masks = {}, {}
    for n, d in deltas.items():
        if use and fused(_rows(d)):
            kept[n], masks[n] = tall_one(d, shared[n], _lams(lam, d), k)
        else:
            masks[n] = _tall_plain(d, shared[n], _lams(lam, d))
            kept[n] = (masks[n].sum(dim=0) >= k).to(shared[n].dtype) * shared[n]
    return kept, masks


def ties_split(deltas: Stacked, density: float, sign: str = "mass",
               scope: str = "global") -> dict[str, Tensor]:
    """Each task's trimmed, sign-agreeing entries (`ties_merging_split`): name -> [T, ...]; summing over
    tasks gives the disjoint-sum merge. AdaMerging++ learns coefficients over these."""
    trimmed = apply_masks(deltas, keep_topk(deltas, density, scope))
    signs = elect_sign(trimmed, sign, scope)
    return {n: x * agree_mask(x, signs[n]).to(x.dtype) for n, x in trimmed.items()}


def masked_task_sum(deltas: Stacked, density: float, scope: str = "global",
                    ordered: Ordered | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """sum_t topk(tau_t) and the `keep_topk` masks (magnitude pruning + task arithmetic, unscaled)."""
    if applies(list(deltas.values())):
        return masked_sum_fused(deltas, density, scope, ordered)
    masks = keep_topk(deltas, density, scope)
    return task_sum(apply_masks(deltas, masks)), masks


def task_sum(deltas: Stacked) -> dict[str, Tensor]:
    """tau_MTL = sum_t tau_t."""
    return {n: d.sum(dim=0) for n, d in deltas.items()}


def scaled(vector: Mapping[str, Tensor], scale: float) -> dict[str, Tensor]:
    return {n: scale * v for n, v in vector.items()}


def rescale(vector: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """scale * v, in place, for each v of a vector the caller owns and no one else reads (the same bits as
    `scaled`, with no second vector: fresh memory costs its page faults; scale 1 leaves it as it is)."""
    if scale == 1.0:
        return vector
    for v in vector.values():
        v.mul_(scale)
    return vector


def _lams(lam: Tensor | float, d: Tensor) -> Tensor:
    """TALL's lambda (a scalar or a [T] vector) as a [T] vector in `d`'s dtype."""
    return torch.as_tensor(lam, dtype=d.dtype, device=d.device).expand(d.shape[0])


def _tall_plain(d: Tensor, mtl: Tensor, lam: Tensor) -> Tensor:
    return d.abs() > _broadcast(lam, d) * (mtl.unsqueeze(0) - d).abs()


def tall_mask(deltas: Stacked, mtl: Mapping[str, Tensor], lam: Tensor | float) -> dict[str, Tensor | PackedMask]:
    """TALL masks m_t = |tau_t| > lam_t * |tau_MTL - tau_t| (lam a scalar or a [T] vector); big CPU float32
    tensors in one fused pass, their masks packed."""
    use = applies(list(deltas.values()))
    out: dict[str, Tensor | PackedMask] = {}
    for n, d in deltas.items():
        out[n] = tall_one(d, mtl[n], _lams(lam, d), 0)[1] if use and fused(_rows(d)) else \
            _tall_plain(d, mtl[n], _lams(lam, d))
    return out


class TaskMasks(Mapping[str, Tensor]):
    """Task `index`'s masks, name -> [...], read from stacked `[T, ...]` masks when asked for: a view of a bool
    tensor, or that task's bits of a PackedMask (so a result's masks stay packed until a figure reads them)."""

    def __init__(self, stacked: Mapping[str, Tensor | PackedMask], index: int):
        self.stacked, self.index = stacked, index

    def __getitem__(self, name: str) -> Tensor:
        return self.stacked[name][self.index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.stacked)

    def __len__(self) -> int:
        return len(self.stacked)


def per_task(stacked: Mapping[str, Tensor | PackedMask], tasks: list[str]) -> dict[str, TaskMasks]:
    """name -> [T, ...] into task -> name -> [...], each task's masks read on access."""
    return {t: TaskMasks(stacked, i) for i, t in enumerate(tasks)}


def l1(vector: Mapping[str, Tensor]) -> float:
    """||v||_1 of a whole flattened vector."""
    return float(sum(v.abs().sum(dtype=torch.float64) for v in vector.values()))


def layer_scale(vector: Mapping[str, Tensor], block_of: Mapping[str, int | None], num_blocks: int,
                alpha: float, beta: float) -> tuple[dict[str, Tensor], dict[int | None, float]]:
    """LiNeS: scale block l by alpha + beta * l / (L - 1), everything outside the blocks by alpha.
    Returns (scaled vector, the factor used per block index, None for outside)."""
    denom = max(num_blocks - 1, 1)
    factors: dict[int | None, float] = {None: alpha}
    factors.update({b: alpha + beta * b / denom for b in range(num_blocks)})
    return {n: factors[block_of[n]] * v for n, v in vector.items()}, factors
