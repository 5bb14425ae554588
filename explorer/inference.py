"""Top-1 accuracy of encoder weights on a zoo's task: the primitive under `evaluate` and under the methods that
tune on data (TALL masks' lambda, AdaMerging, aTLAS), so neither imports the other.

Encoder modules per zoo and device run every model through `torch.func.functional_call`, so a merge is never
copied into a module; functional_call swaps a module's parameters while it runs, so each concurrent evaluation
borrows a module of its own from a small pool (as many as evaluations ever ran at once). Evaluation images are
preprocessed once per zoo and device, and the base and expert accuracies once per (zoo, split, limit, device).
"""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from .device import resolve_device
from .result import AddOn
from .zoo.base import Zoo

BATCH = 512


@dataclass
class _ZooCache:
    """What evaluation keeps per zoo: modules and images per device, reference accuracies per setting."""

    models: dict[str, list[nn.Module]] = field(default_factory=dict)  # idle modules per device
    heads: dict[tuple[str, str], nn.Module] = field(default_factory=dict)
    data: dict[tuple[str, str, str], tuple[Tensor, Tensor]] = field(default_factory=dict)
    reference: dict[tuple[str, str, int | None, str], tuple[float, float]] = field(default_factory=dict)


_CACHES: "weakref.WeakKeyDictionary[Zoo, _ZooCache]" = weakref.WeakKeyDictionary()


def _cache(zoo: Zoo) -> _ZooCache:
    if zoo not in _CACHES:
        _CACHES[zoo] = _ZooCache()
    return _CACHES[zoo]


_POOL = threading.Lock()


@contextmanager
def _model(zoo: Zoo, dev: torch.device) -> Iterator[nn.Module]:
    """An encoder module of `zoo` on `dev` that no other thread uses until the block ends."""
    with _POOL:
        idle = _cache(zoo).models.setdefault(str(dev), [])
        model = idle.pop() if idle else None
    if model is None:
        model = zoo.build_model().to(dev).eval().requires_grad_(False)
    try:
        yield model
    finally:
        with _POOL:
            idle.append(model)


def _head(zoo: Zoo, task: str, dev: torch.device) -> nn.Module:
    cache = _cache(zoo)
    if (task, str(dev)) not in cache.heads:
        cache.heads[task, str(dev)] = zoo.head(task).to(dev).eval()
    return cache.heads[task, str(dev)]


def eval_data(zoo: Zoo, task: str, split: str, limit: int | None, dev: torch.device) -> tuple[Tensor, Tensor]:
    """(images [N, ...], labels [N]) of `task`/`split` on `dev`: the first `limit` items (all if None)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images per task or None, got {limit}")
    zoo.check_task(task)
    zoo.check_split(split)
    cache = _cache(zoo)
    key = (task, split, str(dev))
    if key not in cache.data:
        data = zoo.dataset(task, split)
        if isinstance(data, TensorDataset):
            x, y = data.tensors[0], data.tensors[1]
        else:
            batches = list(DataLoader(data, batch_size=256, shuffle=False))
            x, y = torch.cat([b[0] for b in batches]), torch.cat([torch.as_tensor(b[1]) for b in batches])
        cache.data[key] = (x.to(dev), y.to(dev))
    x, y = cache.data[key]
    return x[:limit], y[:limit]


def _check_keys(model: nn.Module, weights: Mapping[str, Tensor]) -> None:
    expected, given = set(model.state_dict()), set(weights)
    if expected != given:
        missing, extra = sorted(expected - given), sorted(given - expected)
        raise ValueError(f"the weights do not match the zoo's encoder: missing {missing[:6]}, unexpected "
                         f"{extra[:6]}; pass a full encoder state dict (e.g. tv.state_dict(delta) or "
                         f"result.state_dict())")


def _on(weights: Mapping[str, Tensor], dev: torch.device) -> dict[str, Tensor]:
    return {k: v.to(dev, torch.float32) if torch.is_floating_point(v) else v.to(dev) for k, v in weights.items()}


def task_accuracy(zoo: Zoo, weights: Mapping[str, Tensor], task: str, split: str = "test",
                  limit: int | None = None, device: str | torch.device = "auto", addon: AddOn | None = None) -> float:
    """Top-1 accuracy in [0, 1] of the encoder `weights` (a full state dict) with `task`'s frozen head.

    The low-level call behind `evaluate`; methods that tune per task (TALL masks' lambda) use it on
    the validation split. Build `weights` from a delta with `tv.state_dict(delta)`. An `addon` (a merge's trained
    extras) computes the features from the weights, with the task id where it needs it.
    """
    dev = resolve_device(device)
    with _model(zoo, dev) as model:
        _check_keys(model, weights)
        return _accuracy(zoo, model, _on(weights, dev), task, split, limit, dev, addon)


def task_accuracies(zoo: Zoo, weights: Mapping[str, Tensor], tasks: list[str], split: str = "test",
                    limit: int | None = None, device: str | torch.device = "auto") -> dict[str, float]:
    """`task_accuracy` of one encoder `weights` on each of `tasks`; when all their images fit in one batch (the
    dashboard's live subset: 32 per task) they go through the encoder in one forward pass instead of one per task
    (each image's features are the same either way: checked bit for bit on the demo zoo)."""
    dev = resolve_device(device)
    data = {t: eval_data(zoo, t, split, limit, dev) for t in tasks}
    if sum(len(y) for _, y in data.values()) > BATCH:
        return {t: task_accuracy(zoo, weights, t, split, limit, dev) for t in tasks}
    with _model(zoo, dev) as model, torch.no_grad():
        _check_keys(model, weights)
        images = torch.cat([x for x, _ in data.values()])
        features = functional_call(model, _on(weights, dev), (images,)).split([len(y) for _, y in data.values()])
        logits = {t: _head(zoo, t, dev)(f) for t, f in zip(data, features)}
    return {t: int((logits[t].argmax(-1) == y).sum()) / max(1, len(y)) if len(y) else 0.0
            for t, (_, y) in data.items()}


@torch.no_grad()  # not inference_mode: the zoo caches the data and heads made here, and training reuses them
def _logits(zoo: Zoo, model: nn.Module, weights: dict[str, Tensor], task: str, split: str,
            limit: int | None, dev: torch.device, addon: AddOn | None = None) -> tuple[Tensor, Tensor]:
    x, y = eval_data(zoo, task, split, limit, dev)
    head = _head(zoo, task, dev)
    if addon is None:
        logits = [head(functional_call(model, weights, (x[i:i + BATCH],))) for i in range(0, len(y), BATCH)]
    else:
        addon = addon.to(dev)
        logits = [head(addon.features(model, weights, x[i:i + BATCH], task)) for i in range(0, len(y), BATCH)]
    return torch.cat(logits) if logits else x.new_zeros((0, 0)), y


def _accuracy(zoo: Zoo, model: nn.Module, weights: dict[str, Tensor], task: str, split: str,
              limit: int | None, dev: torch.device, addon: AddOn | None = None) -> float:
    logits, y = _logits(zoo, model, weights, task, split, limit, dev, addon)
    return int((logits.argmax(-1) == y).sum()) / max(1, len(y)) if len(y) else 0.0


def task_logits(zoo: Zoo, weights: Mapping[str, Tensor], task: str, split: str = "test", limit: int | None = None,
                device: str | torch.device = "auto", addon: AddOn | None = None) -> tuple[Tensor, Tensor]:
    """(logits [N, C], labels [N]) of the encoder `weights` (a full state dict) through `task`'s frozen head:
    what calibration analyses (prediction entropy against error) read."""
    dev = resolve_device(device)
    with _model(zoo, dev) as model:
        _check_keys(model, weights)
        return _logits(zoo, model, _on(weights, dev), task, split, limit, dev, addon)


@torch.no_grad()
def image_logits(zoo: Zoo, weights: Mapping[str, Tensor], task: str, images: Tensor,
                 device: str | torch.device = "auto") -> Tensor:
    """Logits [N, C] of the encoder `weights` through `task`'s frozen head on given images (e.g. triggered ones)."""
    dev = resolve_device(device)
    with _model(zoo, dev) as model:
        _check_keys(model, weights)
        weights, head, images = _on(weights, dev), _head(zoo, task, dev), images.to(dev)
        return torch.cat([head(functional_call(model, weights, (images[i:i + BATCH],)))
                          for i in range(0, max(1, len(images)), BATCH)])


def reference_accuracies(zoo: Zoo, task: str, split: str = "test", limit: int | None = None,
                         device: str | torch.device = "auto") -> tuple[float, float]:
    """(base accuracy, expert accuracy) on `task`, computed once per zoo, split, limit and device."""
    dev = resolve_device(device)
    cache = _cache(zoo)
    key = (task, split, limit, str(dev))
    if key not in cache.reference:
        cache.reference[key] = (task_accuracy(zoo, zoo.base_state_dict(), task, split, limit, dev),
                                task_accuracy(zoo, zoo.expert_state_dict(task), task, split, limit, dev))
    return cache.reference[key]
