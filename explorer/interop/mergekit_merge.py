"""Run a mergekit `Plan` on state dicts, tensor by tensor, with mergekit's semantics (its generalized task arithmetic:
per-model weights, per-tensor sparsification, sign consensus on the weighted deltas, normalize by agreeing weights).

Where one of our registered methods computes the same numbers (equal weights: task arithmetic; equal weights and
densities, no rescale: TIES with scope "tensor"), its per-tensor streaming hook runs; otherwise the small functions
below do. Random draws (DARE, DELLA) come from torch generators seeded per (seed, tensor, model), not mergekit's."""
from __future__ import annotations

import re
import zlib
from typing import Iterator, Mapping

import torch
from torch import Tensor

from ..methods import registry
from ..methods.engine.thresholds import topk_rows
from .mergekit import Plan, Setting

LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")  # model.layers.3., transformer.h.3., blocks.3.
StateDict = Mapping[str, Tensor]


def num_layers(names: list[str]) -> int:
    """How many numbered layers the tensor names hold (`model.layers.N.`), for gradients."""
    found = {int(m.group(1)) for m in map(LAYER.search, names) if m}
    return max(found) + 1 if found else 0


def layer_position(name: str, layers: int) -> float:
    """Where a gradient is read for this tensor, as mergekit's planner: i/(L-1) in layer i (1 when L = 1), 0 for
    tensors outside the layers (embeddings, final norm, head)."""
    m = LAYER.search(name)
    if not m:
        return 0.0
    return int(m.group(1)) / (layers - 1) if layers > 1 else 1.0


def evaluate(setting: Setting, t: float) -> float | bool:
    """A parameter's value at position t: a scalar as it is, a gradient [v0, ..., vn] interpolated linearly."""
    if not isinstance(setting, list):
        return setting
    scaled = t * (len(setting) - 1)
    i0 = int(scaled)
    i1 = min(len(setting) - 1, i0 + 1)
    return (1 - (scaled - i0)) * setting[i0] + (scaled - i0) * setting[i1]


def l1_rescaled(delta: Tensor, mask: Tensor) -> Tensor:
    """delta * mask scaled back to delta's L1 norm (mergekit's `rescale`), unscaled when either norm is < 1e-7."""
    masked = delta * mask
    before, after = delta.abs().sum(), masked.abs().sum()
    return masked if before < 1e-7 or after < 1e-7 else masked * (before / after)


def _count(n: int, density: float, name: str) -> int:
    k = int(density * n)
    if k <= 0:
        raise ValueError(f"tensor {name!r}: density {density} keeps no entry of its {n}; raise density to at least "
                         f"{1 / n:.3g} (mergekit stops here too)")
    return k


def magnitude_mask(delta: Tensor, density: float, name: str) -> Tensor:
    """Exactly int(density * n) largest |delta| of the whole tensor (mergekit's `magnitude`)."""
    _count(delta.numel(), density, name)
    return topk_rows(delta.reshape(1, -1).float(), density).reshape(delta.shape)


def outlier_mask(delta: Tensor, density: float, gamma: float, name: str) -> Tensor:
    """Breadcrumbs over the whole tensor: drop the int(gamma * n) largest |delta|, keep the next int(density * n)
    (fewer outliers dropped where both do not fit, so density holds)."""
    n = delta.numel()
    keep = _count(n, density, name)
    top = min(int(gamma * n), n - keep)
    order = delta.reshape(-1).float().abs().topk(top + keep).indices  # largest first
    mask = torch.zeros(n, dtype=torch.bool, device=delta.device)
    return mask.scatter_(0, order[top:], True).reshape(delta.shape)


def della_mask(delta: Tensor, density: float, epsilon: float, gen: torch.Generator) -> Tensor:
    """DELLA: keep each entry with probability density - epsilon + 2 epsilon * (its rank in its row) / (n - 1)."""
    if not (0 < density - epsilon and density + epsilon < 1):
        raise ValueError(f"della: density {density} +/- epsilon {epsilon} must stay inside (0, 1); lower epsilon")
    if delta.dim() > 2:
        raise ValueError("della: tensors of more than 2 dimensions are not supported")
    rows = delta.reshape(1, -1) if delta.dim() < 2 else delta
    ranks = rows.float().abs().argsort(dim=1).argsort(dim=1).float()  # 0 .. n-1 per row
    span = (ranks.shape[1] - 1) or 1
    probs = density - epsilon + ranks / span * 2 * epsilon
    return torch.bernoulli(probs.cpu(), generator=gen).to(delta.device).reshape(delta.shape)


def sparsify(delta: Tensor, kind: str | None, p: dict, rescale: bool, gen: torch.Generator, name: str) -> Tensor:
    """One model's delta of one tensor, sparsified as mergekit's `sparsify` (density >= 1: unchanged)."""
    density = p["density"]
    if kind is None or density >= 1:
        return delta
    work = delta  # random draws work in float32 on CPU unless bfloat16, as mergekit's
    if kind == "magnitude":
        mask = magnitude_mask(delta, density, name)
    elif kind == "magnitude_outliers":
        mask = outlier_mask(delta, density, p["gamma"], name)
    else:
        work = delta.float() if delta.device.type == "cpu" and delta.dtype != torch.bfloat16 else delta
        mask = torch.bernoulli(torch.full(delta.shape, float(density)), generator=gen).to(delta.device) \
            if kind == "random" else della_mask(delta, density, p["epsilon"], gen)
    mask = mask.to(work.dtype)
    return (l1_rescaled(work, mask) if rescale else work * mask).to(delta.dtype)


def task_arithmetic_tensor(plan: Plan, base: Tensor, deltas: list[Tensor], weights: list[float]) -> Tensor:
    """mergekit's generalized task arithmetic of one tensor's (sparsified) deltas: weighted deltas, sign consensus
    (the sign of their sum, 0 counting as +), normalize by the weights of the models kept, times lambda."""
    stacked = torch.stack(deltas)
    w = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device).reshape(-1, *[1] * base.dim())
    weighted = stacked * w
    if plan.spec.consensus:
        majority = (weighted.sum(dim=0) >= 0).to(stacked.dtype) * 2 - 1
        mask = (weighted.sign() == majority).to(stacked.dtype)
        mixed, divisor = (weighted * mask).sum(dim=0), (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed, divisor = weighted.sum(dim=0), w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if plan.option("normalize"):
        mixed = mixed / divisor
    return (base + plan.option("lambda") * mixed).to(base.dtype)


def registered(plan: Plan, name: str, base: Tensor, deltas: list[Tensor], params: list[dict]) -> Tensor | None:
    """The tensor by our own method where it equals mergekit's (float32, equal positive weights; TIES: equal
    densities and no rescale), via its per-tensor streaming hook; None where it does not."""
    weights, densities = {p["weight"] for p in params}, {min(p["density"], 1.0) for p in params}
    if plan.method not in ("task_arithmetic", "ties") or len(weights) != 1 or base.dtype != torch.float32:
        return None
    w, lam, normalize, n = weights.pop(), plan.option("lambda"), plan.option("normalize"), len(deltas)
    if w <= 0 or (plan.method == "ties" and (len(densities) != 1 or plan.option("rescale"))):
        return None
    if plan.method == "task_arithmetic":
        method, values = "task_arithmetic", {"scale": lam / n if normalize else lam * w}
    else:
        method, values = "ties", {"density": densities.pop(), "scale": lam if normalize else lam * w, "sign": "mass",
                                  "aggregate": "mean" if normalize else "sum", "scope": "tensor"}
    m = registry.get(method)
    try:
        resolved = m.resolve(values)
    except ValueError:  # a scale outside our declared range: mergekit's own arithmetic below
        return None
    if method == "ties" and resolved["density"] < 1:
        _count(base.numel(), resolved["density"], name)
    _, merged = next(m.stream({name: torch.stack(deltas)}, resolved))
    return base + merged


def _generator(seed: int, name: str, model: str) -> torch.Generator:
    """A generator seeded by (seed, tensor, model), so a tensor's draws do not depend on which came before."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}\0{name}\0{model}".encode()))


def merge_tensor(plan: Plan, name: str, tensors: dict[str, Tensor], base: Tensor | None, t: float,
                 seed: int = 0) -> Tensor:
    """One merged tensor from the inputs' tensors `tensors` (model -> tensor, in plan.inputs() order), the base's
    tensor (None for linear without a base) and the gradient position t."""
    dtype = getattr(torch, plan.dtype) if plan.dtype else None
    cast = {m: x.to(dtype) if dtype else x for m, x in tensors.items()}
    params = {m: {k: evaluate(plan.setting(m, k), t) for k in plan.spec.per_model()} for m in cast}
    if plan.spec.linear:
        stacked = torch.stack(list(cast.values()))
        w = torch.tensor([params[m]["weight"] for m in cast], dtype=stacked.dtype, device=stacked.device)
        w = w.reshape(-1, *[1] * stacked[0].dim())
        res = (w * stacked).sum(dim=0)
        return res / w.sum(dim=0) if plan.option("normalize") else res
    theta0 = base.to(dtype) if dtype else base
    deltas = [x.to(theta0.dtype) - theta0 for x in cast.values()]
    plist = list(params.values())
    fast = registered(plan, name, theta0, deltas, plist)
    if fast is not None:
        return fast
    kept = [sparsify(d, plan.spec.sparsify, p, plan.option("rescale"), _generator(seed, name, m), name)
            for d, p, m in zip(deltas, plist, cast)]
    return task_arithmetic_tensor(plan, theta0, kept, [p["weight"] for p in plist])


def merged_tensors(plan: Plan, models: Mapping[str, StateDict], base: StateDict | None = None, *,
                   seed: int = 0) -> Iterator[tuple[str, Tensor]]:
    """(name, merged tensor) over the base's tensors (linear without a base: the first model's), reading each input's
    tensor only when it is merged, so memory-mapped or streamed state dicts stay on disk."""
    inputs = plan.inputs()
    if plan.base_model and base is None:
        raise ValueError(f"{plan.method} needs the base model's state dict ({plan.base_model!r})")
    sources = {m: (base if m == plan.base_model else models.get(m)) for m in inputs}
    missing = [m for m, sd in sources.items() if sd is None]
    if missing:
        raise ValueError(f"no state dict for model(s) {missing}; pass one per model of the config")
    reference = base if base is not None else sources[inputs[0]]
    names = list(reference.keys())
    layers = num_layers(names)
    out_dtype = getattr(torch, plan.out_dtype) if plan.out_dtype else None
    for name in names:
        first = reference[name]  # the base's tensor, where there is a base
        if not first.is_floating_point():
            yield name, first
            continue
        tensors = {m: _tensor(sd, m, name, first.shape) for m, sd in sources.items()}
        out = merge_tensor(plan, name, tensors, first if base is not None else None, layer_position(name, layers),
                           seed)
        yield name, out.to(out_dtype) if out_dtype else out


def _tensor(sd: StateDict, model: str, name: str, shape: torch.Size) -> Tensor:
    if name not in sd:
        raise ValueError(f"model {model!r} has no tensor {name!r}; merge models of one architecture")
    x = sd[name]
    if x.shape != shape:
        raise ValueError(f"model {model!r}: {name} has shape {tuple(x.shape)}, the base {tuple(shape)}; "
                         "models of different sizes (e.g. a grown vocabulary) are not merged")
    return x


def merge_state_dicts(plan: Plan, models: Mapping[str, StateDict], base: StateDict | None = None, *,
                      seed: int = 0) -> dict[str, Tensor]:
    """The merged state dict of `plan` (see `merged_tensors`)."""
    return dict(merged_tensors(plan, models, base, seed=seed))
