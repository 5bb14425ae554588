"""Sparsifying merges: TIES, DARE, magnitude pruning and Model Breadcrumbs."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor

from ..result import MergeResult
from ..taskvec import TaskVectors
from . import blocks, params
from .blocks import masked_task_sum, per_task, rescale, ties_vector
from .compose import compose
from .engine import jit, kernels
from .engine.fused import Drop, band_sum_one, drop_one, masked_sums, ties_fused, ties_streamed
from .engine.kernels import PackedMask, Scratch, applies, fused
from .registry import Param, register
from .spectral import cached_factor


def _ties_stream(deltas: Mapping[str, Tensor], p: dict[str, Any]) -> Iterator[tuple[str, Tensor]]:
    """TIES parameter by parameter: the engine's per-tensor merge, as `ties_vector` runs it in memory."""
    for name, merged in ties_streamed(deltas, p["density"], p["sign"], p["aggregate"], p["scope"]):
        yield name, p["scale"] * merged


@register("ties", params.density(0.2), params.scale(1.0, paper=1.0), params.SIGN, params.aggregate("mean"),
          params.SCOPE, title="TIES-Merging", stream=_ties_stream,
          paper="Yadav et al., TIES-Merging: Resolving Interference When Merging Models, NeurIPS 2023",
          formula="tau_hat_t = topk(tau_t, k); gamma = sign(sum_t tau_hat_t); "
                  "tau_m = disjoint_mean/sum{tau_hat_t : sign(tau_hat_t) = gamma}; theta = theta_0 + lambda * tau_m",
          summary="Trim each task vector to its largest entries, elect one sign per weight, and merge only the "
                  "entries that agree (aggregate=sum wants lambda around 0.3, mean around 1).")
def ties(tv: TaskVectors, *, density: float, scale: float, sign: str, aggregate: str, scope: str) -> MergeResult:
    merged, kept = ties_vector(tv.deltas, density, sign, aggregate, scope, ordered_magnitudes(tv))
    return MergeResult(tv, rescale(merged, scale), masks=per_task(kept, tv.tasks))


ORDERED_MAX = 1 << 26  # task-vector entries (tasks x parameters) up to which the sorted magnitudes are kept (256 MB)


def ordered_magnitudes(tv: TaskVectors) -> Callable[[], Tensor] | None:
    """Each task's |tau| over the whole task vector, sorted once per task vectors and kept (float32 [T, D]), so
    that TIES' and magnitude pruning's global threshold for any density is a look-up; None for zoos too big to
    keep a sorted copy (the selection pass then runs each time)."""
    if tv.numel() * tv.num_tasks > ORDERED_MAX:
        return None

    def ordered() -> Tensor:
        return cached_factor(tv, "ordered magnitudes", lambda: torch.cat(
            [d.reshape(tv.num_tasks, -1).float().abs() for d in tv.deltas.values()], dim=1).sort(dim=1).values)
    return ordered


def _drop(tv: TaskVectors, drop: float, rescale: str, seed: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """DARE's random drop: each entry of each tensor is dropped with probability p, the rest divided by 1-p. The
    uniforms are torch.rand's from a generator seeded with `seed`, tensor after tensor; on CPU float32 the compiled
    stream (`jit.TorchStream`) draws the same values inside the drop's own loop."""
    gen = torch.Generator(device=tv.device).manual_seed(seed)
    factor = _factor(drop, rescale)
    deltas = list(tv.deltas.values())
    kept_masks, dropped = {}, {}
    if _streamed(tv):
        stream = jit.TorchStream(gen)
        for name, d in tv.deltas.items():
            out, packed = stream.drop(d.reshape(d.shape[0], -1), drop, factor)
            dropped[name], kept_masks[name] = out.reshape(d.shape), PackedMask(packed, d.shape[0], d.shape[1:])
        return dropped, kept_masks
    use, scratch = applies(deltas), Scratch(deltas)
    for name, d in tv.deltas.items():
        draw = torch.rand(d.shape, generator=gen, out=scratch.like(d))  # [T, ...], the same draw as a fresh tensor
        dropped[name], kept_masks[name] = drop_one(d, draw, drop, factor, use)
    return dropped, kept_masks


def _factor(drop: float, rescale: str) -> float:
    return 1.0 / (1.0 - drop) if rescale == "inverse" else 1.0


def _streamed(tv: TaskVectors) -> bool:
    """Whether DARE draws with the compiled stream: numba, CPU float32, contiguous."""
    deltas = list(tv.deltas.values())
    return jit.available(*deltas) and all(d.is_contiguous() for d in deltas)


def _dare_ties(tv: TaskVectors, drop: float, rescale: str, seed: int, density: float,
               aggregate: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """compose(dropped, "ties") without the dropped task vectors: the stream draws the keep masks only and TIES
    reads x * 1{kept} * factor as it reads x (`fused.Drop`), the same bits as dropping first."""
    stream = jit.TorchStream(torch.Generator(device=tv.device).manual_seed(seed))
    keep = {name: stream.keep(d.reshape(d.shape[0], -1), drop) for name, d in tv.deltas.items()}
    return ties_fused(tv.deltas, density, "mass", aggregate, "global", Drop(keep, _factor(drop, rescale)))


@register("dare", Param("drop", float, 0.5, "p: probability that each entry of each task vector is dropped",
                        low=0.0, high=0.99, step=0.01, paper=0.5),
          Param("rescale", str, "inverse", "divide the surviving entries by 1-p (inverse) or leave them (none)",
                choices=("inverse", "none"), paper="inverse"),
          Param("base", str, "task_arithmetic", "the merge applied to the dropped task vectors",
                choices=("task_arithmetic", "ties"), paper="task_arithmetic"),
          params.scale(0.3, paper=0.3),
          params.density(1.0, "ties base only: fraction of each dropped task vector kept by magnitude (1 = no trim)",
                         paper=None),
          params.aggregate("sum"),
          Param("seed", int, 0, "random seed of the drop masks", low=0, high=2**31 - 1, step=1, paper=None),
          title="DARE (Drop And REscale)",
          paper="Yu et al., Language Models are Super Mario, ICML 2024",
          formula="tau~_t = tau_t * (1 - m_t) / (1 - p), m_t ~ Bernoulli(p); then task arithmetic or TIES on tau~",
          summary="Randomly drop a fraction p of every task vector's entries and rescale the rest, then merge.")
def dare(tv: TaskVectors, *, drop: float, rescale: str, base: str, scale: float, density: float, aggregate: str,
         seed: int) -> MergeResult:
    if base == "ties" and _streamed(tv) and applies(list(tv.deltas.values())):
        merged, masks = _dare_ties(tv, drop, rescale, seed, density, aggregate)
    else:
        dropped, kept = _drop(tv, drop, rescale, seed)
        merged, agree = compose(dropped, base, density=density, aggregate=aggregate)
        masks = kept if agree is None else agree  # TIES keeps only non-zero entries, all inside the drop mask
    return MergeResult(tv, blocks.rescale(merged, scale), masks=per_task(masks, tv.tasks), info={"seed": seed})


def _magnitude_stream(deltas: Mapping[str, Tensor], p: dict[str, Any]) -> Iterator[tuple[str, Tensor]]:
    """Magnitude pruning parameter by parameter: the engine's masked sums, as `masked_task_sum` runs them."""
    for name, total, _ in masked_sums(deltas, p["density"], p["scope"]):
        yield name, p["scale"] * total


@register("magnitude", params.density(0.2), params.SCOPE, params.scale(0.3, paper=None),
          title="Magnitude pruning + Task Arithmetic", stream=_magnitude_stream,
          paper="Yadav et al., TIES-Merging, NeurIPS 2023 (the trim step alone, their ablation baseline)",
          formula="theta = theta_0 + lambda * sum_t topk(tau_t, k)",
          summary="Keep each task vector's largest entries by magnitude, then add the pruned vectors.")
def magnitude(tv: TaskVectors, *, density: float, scope: str, scale: float) -> MergeResult:
    total, masks = masked_task_sum(tv.deltas, density, scope, ordered_magnitudes(tv))
    return MergeResult(tv, rescale(total, scale), masks=per_task(masks, tv.tasks))


def _band_sorted(a: Tensor, n_remove: int, n_keep: int) -> Tensor:
    """The breadcrumb mask of rows `a [..., n]` of magnitudes by one sorted topk: ranks (n_remove, n_remove+n_keep]
    in topk's order (among equal magnitudes at the outlier boundary, that order decides)."""
    mask = torch.zeros_like(a, dtype=torch.bool)
    order = a.topk(n_remove + n_keep, dim=-1).indices  # largest first
    return mask.scatter_(-1, order[..., n_remove:], True)


def _band_topk(d: Tensor, n_remove: int, n_keep: int, scratch: Scratch | None = None) -> Tensor:
    """The band mask of rows `d [..., n]` by torch.topk: an unsorted topk finds the top n_remove+n_keep (the same set
    as the sorted one) and a second, small one the outliers among them; rows with a tie across the outlier boundary
    take the sorted topk's choice. |d| goes into `scratch` where one is given."""
    mask = torch.zeros_like(d, dtype=torch.bool)
    a = d.abs() if scratch is None else torch.abs(d, out=scratch.like(d))
    values, index = a.topk(n_remove + n_keep, dim=-1, sorted=False)
    band = torch.ones_like(values, dtype=torch.bool)
    if n_remove > 0:
        outliers, where = values.topk(n_remove, dim=-1, sorted=False)
        band.scatter_(-1, where, False)
        tied = outliers.amin(dim=-1) == values.masked_fill(~band, -torch.inf).amax(dim=-1)
    mask.scatter_(-1, index, band)
    if n_remove > 0 and bool(tied.any()):
        mask[tied] = _band_sorted(a[tied], n_remove, n_keep)
    return mask


def _band_counts(n: int, keep: float, remove: float) -> tuple[int, int]:
    """(outliers removed, entries kept) of a row of n: floor(remove*n) and floor(keep*n), at most what is left."""
    n_remove = int(n * remove)
    return n_remove, min(int(n * keep), n - n_remove)


def _band(d: Tensor, n_remove: int, n_keep: int, scratch: Scratch | None) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """The band of one stacked tensor `[T, ..., n]` (n_keep > 0) as (x, outer, inner) with outer <= |x| < inner the
    mask (edges `[T, ..., 1]`), where the compiled selection (`jit.band_edges`) applies: x is d, or a copy (in
    `scratch` where given) in which the entries tied at an edge that topk leaves out are 0, for the rows topk decides.
    Else (no numba, small tensors, an inf or NaN, a tie at magnitude 0) the bool mask by topk."""
    if not (jit.available(d) and d.is_contiguous() and d.numel() >= kernels.MIN_NUMEL):
        return _band_topk(d, n_remove, n_keep, scratch)
    rows = d.reshape(-1, d.shape[-1])
    outer, inner, done = jit.band_edges(rows, n_remove, n_keep)
    x = d
    if not bool(done.all()):
        rest = (~done).nonzero().squeeze(1)
        sub = rows[rest]
        kept = _band_topk(sub, n_remove, n_keep)
        a = sub.abs()
        low = a.masked_fill(~kept, torch.inf).amin(dim=1)
        high = torch.nextafter(a.masked_fill(~kept, -torch.inf).amax(dim=1), torch.tensor(torch.inf))
        if not bool(torch.isfinite(sub).all()) or bool((low == 0).any()):
            return _band_topk(d, n_remove, n_keep, scratch)
        left_out = (a >= low.unsqueeze(1)) & (a < high.unsqueeze(1)) & ~kept
        x = d.clone() if scratch is None else scratch.like(d).copy_(d)
        x.view(rows.shape)[rest] = sub.masked_fill_(left_out, 0.0)
        outer[rest], inner[rest] = low, high
    return x, outer.reshape(*d.shape[:-1], 1), inner.reshape(*d.shape[:-1], 1)


def _breadcrumb_band(d: Tensor, keep: float, remove: float,
                     scratch: Scratch | None) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """`_band` of one stacked tensor, or its whole mask where there is no band to find: a `[T]` tensor (0-d
    parameters, kept whole, as the official code) or rows that keep nothing."""
    if d.dim() == 1:
        return torch.ones_like(d, dtype=torch.bool)
    n_remove, n_keep = _band_counts(d.shape[-1], keep, remove)
    if n_keep <= 0:
        return torch.zeros_like(d, dtype=torch.bool)
    return _band(d, n_remove, n_keep, scratch)


def _band_mask(band: Tensor | tuple[Tensor, Tensor, Tensor], d: Tensor, scratch: Scratch | None) -> Tensor:
    """The bool mask of a band given as a mask or as (x, outer, inner)."""
    if not isinstance(band, tuple):
        return band
    x, outer, inner = band
    a = x.abs() if scratch is None else torch.abs(x, out=scratch.like(d))
    return (a >= outer) & (a < inner)


def breadcrumb_mask(d: Tensor, keep: float, remove: float, scratch: Scratch | None = None) -> Tensor:
    """Per row along the last dimension of one stacked tensor `[T, ..., n]`: drop the top floor(remove*n)
    entries by |tau| and keep the next floor(keep*n) (among equal magnitudes at an edge, torch.topk's choice).
    1-D tensors are one row; 0-d ones are kept whole."""
    return _band_mask(_breadcrumb_band(d, keep, remove, scratch), d, scratch)


def breadcrumb_sum(d: Tensor, keep: float, remove: float,
                   scratch: Scratch | None = None) -> tuple[Tensor, Tensor | PackedMask]:
    """sum_t m_t * tau_t of one stacked tensor and its breadcrumb masks m (`breadcrumb_mask`): one fused pass where
    the compiled selection gave the band's edges, else the mask then a masked sum (no masked copy kept)."""
    band = _breadcrumb_band(d, keep, remove, scratch)
    if isinstance(band, tuple) and fused(d.reshape(d.shape[0], -1)):
        return band_sum_one(*band)
    mask = _band_mask(band, d, scratch)
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    total = torch.where(mask, d, zero, out=d.new_empty(d.shape) if scratch is None else scratch.like(d)).sum(dim=0)
    return total, mask


def breadcrumb_sums(deltas: Mapping[str, Tensor], keep: float, remove: float,
                    scratch: Scratch | None = None) -> Iterator[tuple[str, Tensor, Tensor | PackedMask]]:
    """(name, sum_t m_t * tau_t, m) tensor by tensor (`breadcrumb_sum`): no masked copy of every task vector."""
    for name in deltas:
        yield name, *breadcrumb_sum(deltas[name], keep, remove, scratch)


def _breadcrumbs_stream(deltas: Mapping[str, Tensor], p: dict[str, Any]) -> Iterator[tuple[str, Tensor]]:
    """Model Breadcrumbs parameter by parameter: the same per-tensor sums as in memory."""
    for name, total, _ in breadcrumb_sums(deltas, p["keep"], p["remove"]):
        yield name, p["scale"] * total


@register("breadcrumbs", Param("keep", float, 0.15, "beta: fraction of each row kept after the outliers",
                               low=0.0, high=1.0, step=0.01, paper=0.15),
          Param("remove", float, 0.01, "gamma: fraction of each row's largest entries removed as outliers",
                low=0.0, high=0.5, step=0.001, paper=0.006),
          params.scale(0.4, paper=0.2),
          title="Model Breadcrumbs", stream=_breadcrumbs_stream,
          paper="Davari & Belilovsky, Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse Masks, ECCV 2024",
          formula="per row: m_t keeps the |tau_t| ranks (gamma*n, (gamma+beta)*n]; "
                  "theta = theta_0 + alpha * sum_t m_t * tau_t",
          summary="Per row of each tensor, drop the few largest entries (outliers) and the small ones, keeping a "
                  "middle band of magnitudes, then add the masked task vectors.")
def breadcrumbs(tv: TaskVectors, *, keep: float, remove: float, scale: float) -> MergeResult:
    masks, total = {}, {}
    for name, s, mask in breadcrumb_sums(tv.deltas, keep, remove, Scratch(list(tv.deltas.values()))):
        total[name], masks[name] = s, mask
    return MergeResult(tv, rescale(total, scale), masks=per_task(masks, tv.tasks))
