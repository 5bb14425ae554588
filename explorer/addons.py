"""Trained extras a merge carries next to its merged weights, run at inference (`MergeResult.addon`).

- `SurgeryAddOn` (Representation Surgery): per-task feature modules f' = f - up(relu(down f)); needs the task id.
- `TwinAddOn` (Twin-Merging): a router on the shared model's features mixes per-task exclusive vectors
  (low rank) into the weights, per input.
- `MoEAddOn` (WEMoE): the MLPs of some blocks become a router-weighted mix of the experts' MLPs, per input.

Each add-on turns (encoder module, merged weights, images, task) into image features, and saves as tensors plus a
JSON-able config, so `explorer.runs` can write and rebuild it.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

ADDONS: dict[str, type["AddOn"]] = {}


def _kind(cls: type["AddOn"]) -> type["AddOn"]:
    ADDONS[cls.kind] = cls
    return cls


class AddOn(ABC):
    """What an add-on provides: features of images under merged weights, and its saved form."""

    kind: ClassVar[str] = ""
    needs_task: ClassVar[bool] = False  # the task id is needed at inference
    routes: ClassVar[bool] = False  # a router picks the weights per input

    @abstractmethod
    def features(self, model: nn.Module, weights: Mapping[str, Tensor], images: Tensor, task: str) -> Tensor:
        """Image features [N, D] of `images` (task `task`) through `model` with the merged `weights` and the add-on."""

    @abstractmethod
    def tensors(self) -> dict[str, Tensor]:
        """Every tensor needed to rebuild the add-on (name -> tensor), for safetensors."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The JSON-able rest of what `rebuild` needs (task names, shapes)."""

    @classmethod
    @abstractmethod
    def rebuild(cls, config: dict[str, Any], tensors: Mapping[str, Tensor]) -> "AddOn":
        """The add-on from `config()` and `tensors()`."""

    def to(self, device: str | torch.device) -> "AddOn":
        """This add-on with its tensors on `device` (itself when they are there already)."""
        tensors, device = self.tensors(), torch.device(device)
        if all(v.device == device for v in tensors.values()):
            return self
        return self.rebuild(self.config(), {k: v.to(device) for k, v in tensors.items()})


def rebuild(kind: str, config: dict[str, Any], tensors: Mapping[str, Tensor]) -> AddOn:
    """The add-on of `kind` from its saved config and tensors, or a ValueError naming the known kinds."""
    if kind not in ADDONS:
        raise ValueError(f"unknown add-on kind {kind!r}; known: {sorted(ADDONS)}")
    return ADDONS[kind].rebuild(config, tensors)


def _prefixed(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def surgery_correct(features: Tensor, down: Tensor, up: Tensor) -> Tensor:
    """f - up(relu(down f)) for features [..., N, d], down [..., r, d], up [..., d, r] (leading axes batch tasks)."""
    return features - F.relu(features @ down.mT) @ up.mT


@_kind
class SurgeryAddOn(AddOn):
    """Representation Surgery: task t's features f become f - up_t(relu(down_t f)) (down [r, d], up [d, r])."""

    kind, needs_task = "surgery", True

    def __init__(self, down: Mapping[str, Tensor], up: Mapping[str, Tensor]):
        if set(down) != set(up):
            raise ValueError(f"surgery modules need a down and an up matrix per task: {sorted(down)} vs {sorted(up)}")
        self.down, self.up = dict(down), dict(up)

    def correct(self, features: Tensor, task: str) -> Tensor:
        """f - up(relu(down f)) for `task` (differentiable in its matrices)."""
        if task not in self.down:
            raise KeyError(f"no surgery module for task {task!r}; this result has {sorted(self.down)}")
        return surgery_correct(features, self.down[task], self.up[task])

    def features(self, model, weights, images, task):
        return self.correct(functional_call(model, dict(weights), (images,)), task)

    def tensors(self):
        return {**{f"down.{t}": v.detach() for t, v in self.down.items()},
                **{f"up.{t}": v.detach() for t, v in self.up.items()}}

    def config(self):
        return {"tasks": sorted(self.down)}

    @classmethod
    def rebuild(cls, config, tensors):
        return cls({t: tensors[f"down.{t}"] for t in config["tasks"]}, {t: tensors[f"up.{t}"] for t in config["tasks"]})


def twin_router(dim: int, tasks: int, dropout: float = 0.5) -> nn.Sequential:
    """Twin-Merging's router: Linear(d, 2d) -> BN -> LeakyReLU -> Dropout, twice, then Linear(2d, T)."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.BatchNorm1d(2 * dim), nn.LeakyReLU(), nn.Dropout(dropout),
                         nn.Linear(2 * dim, 2 * dim), nn.BatchNorm1d(2 * dim), nn.LeakyReLU(), nn.Dropout(dropout),
                         nn.Linear(2 * dim, tasks))


@_kind
class TwinAddOn(AddOn):
    """Twin-Merging: w = softmax(router(f_shared(x))), theta_x = theta_shared + sum_t w_t * v_t.

    `exclusive[t][name]` is task t's exclusive vector of tensor `name`: a pair (A [m, r], B [r, n]) with v = A @ B
    for a compressed matrix, or a dense tensor. Inputs whose weights agree after rounding to 1/`grid` share one
    rebuilt model, so a batch is not rebuilt image by image.
    """

    kind, routes = "twin", True

    def __init__(self, tasks: list[str], router: nn.Module, exclusive: Mapping[str, Mapping[str, Any]],
                 dim: int, grid: int = 20):
        self.tasks, self.router, self.dim, self.grid = list(tasks), router.eval(), int(dim), int(grid)
        self.exclusive = {t: dict(exclusive[t]) for t in self.tasks}
        self._stacked: dict[str, Tensor] | None = None

    def weights_for(self, shared_features: Tensor) -> Tensor:
        """Routing weights [N, T] = softmax(router(features of the shared model))."""
        return self.router(shared_features).softmax(dim=-1)

    def vector(self, task: str, name: str) -> Tensor:
        v = self.exclusive[task][name]
        return v[0] @ v[1] if isinstance(v, tuple) else v

    def stacked(self) -> dict[str, Tensor]:
        """name -> [T, ...] dense exclusive vectors (rebuilt from the low-rank pairs once, then kept)."""
        if self._stacked is None:
            names = self.exclusive[self.tasks[0]]
            self._stacked = {n: torch.stack([self.vector(t, n) for t in self.tasks]) for n in names}
        return self._stacked

    def theta(self, weights: Mapping[str, Tensor], w: Tensor) -> dict[str, Tensor]:
        """theta_shared + sum_t w[t] * v_t for one weight vector w [T]."""
        out = dict(weights)
        for name, v in self.stacked().items():
            out[name] = out[name] + torch.tensordot(w.to(v.dtype), v, dims=1)
        return out

    def route(self, model: nn.Module, weights: Mapping[str, Tensor], images: Tensor) -> Tensor:
        """The routing weights [N, T] of `images`, rounded to 1/grid (the grouping inference uses)."""
        with torch.no_grad():
            shared = functional_call(model, dict(weights), (images,))
            return torch.round(self.weights_for(shared) * self.grid) / self.grid

    def features(self, model, weights, images, task):
        w = self.route(model, weights, images)
        groups, index = torch.unique(w, dim=0, return_inverse=True)
        out = None
        for g, row in enumerate(groups):
            picked = (index == g).nonzero().flatten()
            f = functional_call(model, self.theta(weights, row), (images[picked],))
            out = f.new_empty((len(images), f.shape[-1])) if out is None else out
            out[picked] = f
        return out

    def tensors(self):
        out = {f"router.{k}": v for k, v in self.router.state_dict().items()}
        for t in self.tasks:
            for name, v in self.exclusive[t].items():
                if isinstance(v, tuple):
                    out[f"exclusive.{t}.{name}.a"], out[f"exclusive.{t}.{name}.b"] = v
                else:
                    out[f"exclusive.{t}.{name}"] = v
        return {k: v.detach() for k, v in out.items()}

    def config(self):
        return {"tasks": self.tasks, "dim": self.dim, "grid": self.grid,
                "low_rank": {t: sorted(n for n, v in self.exclusive[t].items() if isinstance(v, tuple))
                             for t in self.tasks},
                "dense": {t: sorted(n for n, v in self.exclusive[t].items() if not isinstance(v, tuple))
                          for t in self.tasks}}

    @classmethod
    def rebuild(cls, config, tensors):
        tasks = config["tasks"]
        router = twin_router(config["dim"], len(tasks))
        router.load_state_dict(_prefixed(tensors, "router."))
        router = router.to(next(iter(tensors.values())).device)
        exclusive = {t: {**{n: (tensors[f"exclusive.{t}.{n}.a"], tensors[f"exclusive.{t}.{n}.b"])
                            for n in config["low_rank"][t]},
                         **{n: tensors[f"exclusive.{t}.{n}"] for n in config["dense"][t]}} for t in tasks}
        return cls(tasks, router, exclusive, config["dim"], config["grid"])


def wemoe_gate(dim: int, tasks: int, init: float) -> nn.Sequential:
    """WEMoE's router of one MLP: Linear(d, d) -> ReLU -> Linear(d, T), weights N(0, 0.01), last bias = init."""
    gate = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, tasks))
    with torch.no_grad():
        for layer in (gate[0], gate[2]):
            layer.weight.normal_(0.0, 0.01)
        gate[0].bias.zero_()
        gate[2].bias.fill_(init)
    return gate


class RoutedMLP(nn.Module):
    """MLP(x; W_0 + sum_t w_t(x) * tau_t), w(x) = mean over tokens of gate(x): per input, exact and batched
    (the weights enter linearly, so each input gets its own weight matrices through one einsum).

    With `groups` set (sizes of consecutive runs of inputs), each run shares one weight vector, the mean of its
    inputs' (FusionBench's `batch_reduce`, its training mode: one mixed MLP per task batch)."""

    def __init__(self, gate: nn.Module, base: Mapping[str, Tensor], vectors: Mapping[str, Tensor], act: nn.Module):
        super().__init__()
        self.gate, self.act, self.last_weights = gate, act, None
        self.groups: list[int] | None = None
        for name in ("c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias"):
            self.register_buffer("base_" + name.replace(".", "_"), base[name])
            self.register_buffer("tau_" + name.replace(".", "_"), vectors[name])  # [T, ...]

    def _mixed(self, w: Tensor, which: str) -> tuple[Tensor, Tensor]:
        """Per weight vector (rows of w [B, T]): W_0 + sum_t w_t tau_t [B, o, i] and the bias [B, o]."""
        weight = getattr(self, f"base_{which}_weight") + torch.einsum("bt,toi->boi", w,
                                                                      getattr(self, f"tau_{which}_weight"))
        return weight, getattr(self, f"base_{which}_bias") + w @ getattr(self, f"tau_{which}_bias")

    def _linear(self, x: Tensor, w: Tensor, which: str) -> Tensor:
        weight, bias = self._mixed(w, which)
        return torch.einsum("bni,boi->bno", x, weight) + bias[:, None]

    def _shared(self, x: Tensor, w: Tensor, which: str) -> Tensor:
        weight, bias = self._mixed(w[None], which)
        return F.linear(x, weight[0], bias[0])

    def forward(self, x: Tensor) -> Tensor:  # x: [B, N, d] (batch first)
        w = self.gate(x).mean(dim=1)
        self.last_weights = w.detach()
        if self.groups is None:
            return self._linear(self.act(self._linear(x, w, "c_fc")), w, "c_proj")
        out = []
        for xs, ws in zip(x.split(self.groups), w.split(self.groups)):
            shared = ws.mean(dim=0)
            out.append(self._shared(self.act(self._shared(xs, shared, "c_fc")), shared, "c_proj"))
        return torch.cat(out)


def mlp_prefix(block: int) -> str:
    """The state-dict prefix of block `block`'s MLP in an open_clip vision tower."""
    return f"transformer.resblocks.{block}.mlp."


@_kind
class MoEAddOn(AddOn):
    """WEMoE: the MLP of each block in `blocks` is a `RoutedMLP` over the experts' MLPs; the rest is merged."""

    kind, routes = "wemoe", True
    NAMES = ("c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias")

    def __init__(self, tasks: list[str], blocks: list[int], gates: Mapping[int, nn.Module],
                 base: Mapping[str, Tensor], vectors: Mapping[str, Tensor]):
        self.tasks, self.blocks = list(tasks), [int(b) for b in blocks]
        self.gates = {int(b): g for b, g in gates.items()}
        self.base, self.vectors = dict(base), dict(vectors)  # full MLP names -> theta_0 / [T, ...] task vectors
        self._models: dict[int, nn.Module] = {}

    def parameters(self) -> list[nn.Parameter]:
        return [p for g in self.gates.values() for p in g.parameters()]

    def routed(self, model: nn.Module) -> nn.Module:
        """A copy of the encoder whose MLPs in `blocks` are RoutedMLPs (made once per encoder module)."""
        if id(model) not in self._models:
            moe = copy.deepcopy(model)
            for b in self.blocks:
                block, p = moe.transformer.resblocks[b], mlp_prefix(b)
                block.mlp = RoutedMLP(self.gates[b], {n: self.base[p + n] for n in self.NAMES},
                                      {n: self.vectors[p + n] for n in self.NAMES}, block.mlp.gelu)
            self._models[id(model)] = moe
        return self._models[id(model)]

    def features(self, model, weights, images, task):
        moe = self.routed(model)
        own = set(moe.state_dict())
        return functional_call(moe, {k: v for k, v in weights.items() if k in own}, (images,))

    def grouped_features(self, model: nn.Module, weights: Mapping[str, Tensor], images: Tensor,
                         groups: list[int]) -> Tensor:
        """Features of `images` where each run of `groups` consecutive inputs (e.g. one task's batch) shares the
        mean of its routing weights: FusionBench's training mode (`batch_reduce`), one mixed MLP per run."""
        if sum(groups) != len(images):
            raise ValueError(f"groups {groups} cover {sum(groups)} inputs, the batch has {len(images)}")
        mlps = [self.routed(model).transformer.resblocks[b].mlp for b in self.blocks]
        for mlp in mlps:
            mlp.groups = list(groups)
        try:
            return self.features(model, weights, images, "")
        finally:
            for mlp in mlps:
                mlp.groups = None

    def route(self, model: nn.Module, weights: Mapping[str, Tensor], images: Tensor) -> dict[int, Tensor]:
        """Routing weights [N, T] per routed block for `images`."""
        with torch.no_grad():
            self.features(model, weights, images, "")
        moe = self.routed(model)
        return {b: moe.transformer.resblocks[b].mlp.last_weights for b in self.blocks}

    def tensors(self):
        out = {f"gate.{b}.{k}": v for b, g in self.gates.items() for k, v in g.state_dict().items()}
        out.update({f"base.{n}": v for n, v in self.base.items()})
        out.update({f"tau.{n}": v for n, v in self.vectors.items()})
        return {k: v.detach() for k, v in out.items()}

    def config(self):
        some = next(iter(self.gates.values()))
        return {"tasks": self.tasks, "blocks": self.blocks, "dim": some[0].in_features}

    @classmethod
    def rebuild(cls, config, tensors):
        gates = {}
        for b in config["blocks"]:
            gate = wemoe_gate(config["dim"], len(config["tasks"]), 0.0)
            gate.load_state_dict(_prefixed(tensors, f"gate.{b}."))
            gates[b] = gate.to(next(iter(tensors.values())).device)
        return cls(config["tasks"], config["blocks"], gates, _prefixed(tensors, "base."), _prefixed(tensors, "tau."))
