"""Statistics of a few examples per task, for the merges that read data: the diagonal Fisher of each expert (Fisher
merging) and the Gram matrix of the inputs of every linear map of the vision tower (RegMean, RegMean++).

Linear maps of an open_clip tower, by the name of their weight:
- `nn.Linear` weights (`mlp.c_fc`, `mlp.c_proj`), captured by forward pre-hooks;
- attention's packed Q/K/V `attn.in_proj_weight` and `attn.out_proj.weight`: `nn.MultiheadAttention` is not an
  `nn.Linear` and never calls `out_proj`'s forward, so a hook on the attention module takes its input (for
  `in_proj`) and recomputes the heads' concatenated output (the input of `out_proj`);
- the patch embedding `conv1.weight` (a convolution with stride = kernel, i.e. one linear map per flattened patch);
- the output projection `proj`, applied as `pooled @ proj` (a [in, out] matrix), captured from `_pool`.
Statistics are cached per zoo, split, example count, seed and device (one setting per kind at a time), so a merge
that only changes how they are combined (RegMean's alpha, Fisher's eps) does not read data again.
"""
from __future__ import annotations

import contextlib
import copy
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader, Subset

BATCH = 32  # examples per forward pass (FusionBench's Fisher and RegMean batch)


@dataclass(frozen=True)
class LinearMap:
    """One linear map y = x W^T of the tower, named by its weight; `kind` says how the weight holds W:
    "linear" ([out, in]), "patch" (conv [out, C, k, k] = W per flattened patch) or "right" ([in, out], y = x @ P)."""

    name: str
    kind: str

    def rows(self, weight: Tensor) -> Tensor:
        """W^T, [in, out]: the matrix RegMean solves for."""
        return weight if self.kind == "right" else weight.reshape(weight.shape[0], -1).T

    def weight(self, rows: Tensor, shape: torch.Size) -> Tensor:
        """The inverse of `rows`: a [in, out] matrix back in the weight's own shape."""
        return rows if self.kind == "right" else rows.T.reshape(shape)


def linear_maps(model: nn.Module) -> dict[str, LinearMap]:
    """Every linear map of `model` (an open_clip vision tower), by weight name (the state-dict key), in model order."""
    maps, inside_attention = {}, set()
    if isinstance(getattr(model, "proj", None), Tensor) and model.proj.dim() == 2 and hasattr(model, "_pool"):
        maps["proj"] = LinearMap("proj", "right")
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            maps[f"{dot}in_proj_weight"] = LinearMap(f"{dot}in_proj_weight", "linear")
            maps[f"{dot}out_proj.weight"] = LinearMap(f"{dot}out_proj.weight", "linear")
            inside_attention.add(f"{dot}out_proj")
        elif isinstance(module, nn.Linear) and prefix not in inside_attention:
            maps[f"{dot}weight"] = LinearMap(f"{dot}weight", "linear")
        elif isinstance(module, nn.Conv2d) and _is_patch_embedding(module):
            maps[f"{dot}weight"] = LinearMap(f"{dot}weight", "patch")
    order = list(dict(model.named_parameters()))
    return dict(sorted(maps.items(), key=lambda kv: order.index(kv[0])))


def _is_patch_embedding(conv: nn.Conv2d) -> bool:
    return conv.stride == conv.kernel_size and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1) \
        and conv.groups == 1 and conv.bias is None


def attention_context(mha: nn.MultiheadAttention, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """The input of `mha.out_proj` for self-attention on `x`: softmax(q k^T / sqrt(d)) v per head, heads
    concatenated; same layout as `x` ([B, L, D] when batch_first, else [L, B, D])."""
    seq = x if mha.batch_first else x.transpose(0, 1)  # [B, L, D]
    b, n, d = seq.shape
    h = mha.num_heads
    q, k, v = F.linear(seq, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, h, d // h).transpose(1, 2) for t in (q, k, v))  # [B, h, L, d/h]
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(b, n, d)
    return ctx if mha.batch_first else ctx.transpose(0, 1)


class _Stop(Exception):
    """Raised by a hook once every wanted input was captured: the rest of the forward pass is not needed."""


@contextlib.contextmanager
def capture(model: nn.Module, names: Iterable[str], sink: Callable[[str, Tensor], None],
            stop: bool = False) -> Iterator[None]:
    """While active, every forward of `model` calls `sink(name, X)` with the inputs X [n, in] of each linear map in
    `names`; with `stop`, the forward ends (raising _Stop, caught by `forward`) once all of them were seen."""
    maps = linear_maps(model)
    wanted = {n: maps[n] for n in names}
    seen: set[str] = set()

    def put(name: str, x: Tensor) -> None:
        sink(name, x.reshape(-1, x.shape[-1]))
        seen.add(name)
        if stop and seen >= set(wanted):
            seen.clear()
            raise _Stop

    handles, restore, attention = [], None, set()
    modules = dict(model.named_modules())
    for name, lm in wanted.items():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if lm.kind == "right":
            pool = model._pool
            restore = pool

            def pooled(x: Tensor, _pool=pool, _name=name) -> tuple[Tensor, Tensor]:
                out = _pool(x)
                put(_name, out[0])
                return out

            model._pool = pooled
        elif name.endswith("in_proj_weight") or name.endswith("out_proj.weight"):
            mha = owner if name.endswith("in_proj_weight") else owner.rsplit(".", 1)[0] if "." in owner else ""
            if mha not in attention:  # one hook per attention module takes both of its maps
                attention.add(mha)
                handles.append(modules[mha].register_forward_hook(_attention_hook(mha, wanted, put), with_kwargs=True))
        elif lm.kind == "patch":
            conv = modules[owner]
            handles.append(conv.register_forward_pre_hook(
                lambda m, args, _name=name: put(_name, F.unfold(args[0], m.kernel_size, stride=m.stride)
                                                .transpose(1, 2))))
        else:
            handles.append(modules[owner].register_forward_pre_hook(lambda m, args, _name=name: put(_name, args[0])))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if restore is not None:
            model._pool = restore


def _attention_hook(prefix: str, wanted: Mapping[str, LinearMap], put: Callable[[str, Tensor], None]) -> Callable:
    dot = f"{prefix}." if prefix else ""
    in_name, out_name = f"{dot}in_proj_weight", f"{dot}out_proj.weight"

    def hook(mha: nn.MultiheadAttention, args: tuple, kwargs: dict, output: Any) -> None:
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs.get("key", query)
        if key is not query:
            raise ValueError(f"{in_name}: only self-attention is supported (the key is not the query)")
        if in_name in wanted:  # the rows' order does not change a Gram matrix: any layout will do
            put(in_name, query)
        if out_name in wanted:
            put(out_name, attention_context(mha, query, kwargs.get("attn_mask")))

    return hook


def forward(model: nn.Module, weights: Mapping[str, Tensor], images: Tensor) -> Tensor | None:
    """The model's features with `weights` (None when a capture stopped it early)."""
    try:
        return functional_call(model, dict(weights), (images,))
    except _Stop:
        return None


# --- data -----------------------------------------------------------------------------------------------------
def examples(zoo: Any, task: str, split: str, count: int, seed: int, method: str) -> Subset:
    """`count` examples of `task`/`split` drawn without replacement (seeded), or all when the split is smaller.
    A real zoo without that split on disk raises its own message (naming the task and the folder), prefixed with
    what `method` needed it for."""
    try:
        data = zoo.dataset(task, split)
    except FileNotFoundError as err:
        raise type(err)(f"{method} reads {count} {split} examples of task {task!r}: {err}") from err
    if len(data) == 0:
        raise ValueError(f"{method} reads {split} examples of task {task!r}, but that split is empty")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return Subset(data, order[:count].tolist())


def batches(subset: Subset, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for images, labels in DataLoader(subset, batch_size=BATCH, shuffle=False):
        images = images.to(device)
        yield (images.clone() if images.is_inference() else images), torch.as_tensor(labels).to(device)


def frozen_model(zoo: Any, device: torch.device) -> nn.Module:
    return zoo.build_model().to(device).eval().requires_grad_(False)


def frozen_head(zoo: Any, task: str, device: torch.device) -> nn.Module:
    # a copy: the zoo's head may hold tensors made under inference_mode, which autograd refuses
    return copy.deepcopy(zoo.head(task)).to(device).eval().requires_grad_(False)


# --- the statistics passes ----------------------------------------------------------------------------------------
@dataclass
class Grams:
    """Sum of X^T X and number of rows per linear map: the Gram matrix is `sums[name] / rows[name]`."""

    sums: dict[str, Tensor]
    rows: dict[str, int]

    def gram(self, name: str) -> Tensor:
        return self.sums[name] / max(self.rows[name], 1)

    def add(self, name: str, x: Tensor) -> None:
        x = x.detach().double()
        self.sums[name] = self.sums[name] + x.T @ x if name in self.sums else x.T @ x
        self.rows[name] = self.rows.get(name, 0) + x.shape[0]


def gram_pass(model: nn.Module, weights: Mapping[str, Tensor], names: list[str], data: Iterable[tuple[Tensor, Tensor]],
              stop: bool = False, tick: Callable[[], bool] | None = None) -> Grams | None:
    """Gram matrices of the inputs of the linear maps `names` over `data`, through `model` with `weights`.
    `tick()` runs after every batch; when it returns True (cancelled) the pass stops and returns None."""
    grams = Grams({}, {})
    with torch.no_grad(), capture(model, names, grams.add, stop=stop):
        for images, _ in data:
            forward(model, weights, images)
            if tick is not None and tick():
                return None
    return grams


def fisher_pass(model: nn.Module, head: nn.Module, weights: Mapping[str, Tensor], names: list[str],
                data: Iterable[tuple[Tensor, Tensor]],
                tick: Callable[[], bool] | None = None) -> dict[str, Tensor] | None:
    """The diagonal Fisher of `weights` over `data`, as MergeLM and FusionBench compute it: per batch,
    L = sum_x sum_y sqrt(p_y) log p_y with p = softmax(logits) detached; F += (dL/dtheta)^2 (the square of the
    batch-summed gradient); then F / number of examples. None when `tick()` cancels."""
    params = {n: weights[n].detach().clone().requires_grad_(True) for n in names}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for images, _ in data:
        logits = head(functional_call(model, {**weights, **params}, (images,)))
        p = logits.softmax(dim=-1).detach()
        objective = (p.sqrt() * logits.log_softmax(dim=-1)).sum()
        for n, g in zip(names, torch.autograd.grad(objective, list(params.values()))):
            total[n] += g.square()
        count += len(images)
        if tick is not None and tick():
            return None
    return {n: t / max(count, 1) for n, t in total.items()}


# --- the cache -----------------------------------------------------------------------------------------------------
_CACHE: "weakref.WeakKeyDictionary[Any, dict[str, tuple[tuple, dict]]]" = weakref.WeakKeyDictionary()


def signature(tv: Any, index: int) -> float:
    """A cheap fingerprint of task `index`'s vector: its entries' absolute sum (other weights, other statistics)."""
    return float(sum(d[index].double().abs().sum() for d in tv.deltas.values()))


def cached(zoo: Any, kind: str, setting: tuple, key: tuple, make: Callable[[], Any]) -> Any:
    """The statistics `kind` of `key` (a task and its weights) under `setting` (split, examples, seed, device),
    computed by `make()` on a miss; a new setting of a kind replaces the old one, so memory holds one setting per
    kind. `make()` returning None (cancelled) is not kept."""
    store = _CACHE.setdefault(zoo, {})
    old_setting, entries = store.get(kind, (None, {}))
    if old_setting != setting:
        entries = {}
    if key not in entries:
        value = make()
        if value is None:
            return None
        entries[key] = value
    store[kind] = (setting, entries)
    return entries[key]


def clear(zoo: Any | None = None) -> None:
    """Forget the cached statistics of `zoo` (of every zoo when None)."""
    if zoo is None:
        _CACHE.clear()
    else:
        _CACHE.pop(zoo, None)
