"""WEMoE, Weight-Ensembling Mixture of Experts (Tang et al., ICML 2024; FusionBench `we_moe`).

Everything but the MLPs of the routed blocks is merged by Task Arithmetic (lambda = init); each routed MLP becomes
MLP(x; W_0 + sum_t w_t(x) tau_t) with w(x) the token mean of a small router on the MLP's input (initial output
`init` for every task, so the untrained model is Task Arithmetic). The routers are trained by prediction entropy on
unlabeled test images, as FusionBench's `clip_weight_ensembling_moe` does: Adam, one batch per task and step, the
summed entropies, and by default its `batch_reduce` (each task batch shares the mean of its images' routing weights:
one mixed MLP per task batch, not per image). The result's `MoEAddOn` routes every input by its own weights.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Callable, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..result import AddOn, MergeResult, register_addon, unprefixed
from ..taskvec import TaskVectors
from .adaptive import LOG_EVERY, SEED, softmax_entropy
from .registry import Param, register
from .runner import Progress, optimize, require_zoo
from .surgery import encoder


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


@register_addon
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
            gate.load_state_dict(unprefixed(tensors, f"gate.{b}."))
            gates[b] = gate.to(next(iter(tensors.values())).device)
        return cls(config["tasks"], config["blocks"], gates, unprefixed(tensors, "base."), unprefixed(tensors, "tau."))


def routed_blocks(tv: TaskVectors, last: int) -> list[int]:
    """The indices of the last `last` transformer blocks (0 = all) whose MLPs the task vectors hold."""
    blocks = sorted({int(n.split(".")[2]) for n in tv.deltas if n.startswith("transformer.resblocks.")
                     and ".mlp." in n})
    if not blocks:
        raise ValueError("wemoe routes the MLPs of an open_clip vision tower (transformer.resblocks.<i>.mlp.*); "
                         "these task vectors have none")
    return blocks if last == 0 else blocks[-last:]


@register("wemoe",
          Param("blocks", int, 0, "how many of the last transformer blocks get a routed MLP (0 = all)", low=0,
                high=1000, step=1, paper=0),
          Param("init", float, 0.3, "initial routing weight of every task, and lambda of the Task Arithmetic merge "
                "of the other weights", low=0.0, high=1.0, step=0.05, paper=0.3),
          Param("lr", float, 1e-4, "Adam learning rate of the routers (FusionBench's default; the paper's own code: "
                "1e-3, cosine-annealed over 1000 steps; at a constant 1e-3 the demo zoo's routers grow large, "
                "task-blind weights: 44.7 after 100 steps against 61.1 at 1e-4)", low=1e-6, high=1.0, step=1e-4,
                paper=1e-4),
          Param("steps", int, 80, "optimisation steps (the paper runs 1000; 80 keep the demo zoo's training within "
                "two minutes on a 2-core CPU)", low=0, high=10000, step=10, paper=1000),
          Param("batch", int, 16, "unlabeled test images per task and step", low=1, high=1024, step=1, paper=16),
          Param("batch_reduce", bool, True, "train with one routing weight vector per task batch (the mean of its "
                "images'; FusionBench's default) instead of one per image; evaluation always routes per image",
                paper=True),
          SEED, LOG_EVERY,
          title="WEMoE (weight-ensembling MoE)",
          paper="Tang et al., Merging Multi-Task Models via Weight-Ensembling Mixture of Experts, ICML 2024",
          formula="MLP_l(x; W_0 + sum_t w_t,l(x) tau_t,l), w_l(x) = mean_tokens router_l(x); other weights "
                  "theta_0 + init * sum_t tau_t; routers = argmin sum_t E_x~test_t H(softmax(head_t(f(x))))",
          summary="Turn the MLPs of the chosen blocks into a per-input mixture of the experts' MLPs, weighted by small "
                  "routers trained by entropy on unlabeled test images; the rest is Task Arithmetic.",
          needs_data=True, inference="router")
def wemoe(tv: TaskVectors, *, blocks: int, init: float, lr: float, steps: int, batch: int, batch_reduce: bool,
          seed: int,
          log_every: int, zoo: Any = None, callback: Callable[[Progress], Any] | None = None,
          cancel: Callable[[], bool] | None = None) -> MergeResult:
    """Task Arithmetic at `init` with routed MLPs in the chosen blocks; Adam on the routers, loss = summed mean
    entropy of one unlabeled test batch per task, all tasks through one forward."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "wemoe")
    torch.manual_seed(seed)
    dev, chosen = tv.device, routed_blocks(tv, blocks)
    delta = {n: init * d.sum(dim=0) for n, d in tv.deltas.items()}
    names = [mlp_prefix(b) + n for b in chosen for n in MoEAddOn.NAMES]
    dim = tv.base[mlp_prefix(chosen[0]) + "c_fc.weight"].shape[1]
    gates = {b: wemoe_gate(dim, len(tv.tasks), init).to(dev) for b in chosen}
    addon = MoEAddOn(tv.tasks, chosen, gates, {n: tv.base[n] for n in names}, {n: tv.deltas[n] for n in names})
    model, weights = encoder(zoo, dev), tv.state_dict(delta)
    heads = {t: copy.deepcopy(zoo.head(t)).to(dev).requires_grad_(False) for t in tv.tasks}  # own, normal tensors
    streams = {t: zoo.unlabeled(t, batch, split="test", seed=seed + i) for i, t in enumerate(tv.tasks)}
    opt = torch.optim.Adam(addon.parameters(), lr=lr)

    def step(_: int) -> float:
        images = {t: next(s).to(dev).clone() for t, s in streams.items()}  # clone: not an inference tensor
        sizes, stacked = [len(x) for x in images.values()], torch.cat(list(images.values()))
        feats = (addon.grouped_features(model, weights, stacked, sizes) if batch_reduce
                 else addon.features(model, weights, stacked, ""))
        loss = torch.zeros((), device=dev)
        for task, f in zip(images, feats.split(sizes)):
            loss = loss + softmax_entropy(heads[task](f)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    report = None if callback is None else (
        lambda done, loss: callback(Progress(done, steps, loss, pd.DataFrame())))
    trace = optimize(step, steps, cancel=cancel, report=report, log_every=log_every)
    for gate in gates.values():
        gate.requires_grad_(False)
    info = {**trace.info(), "routed_blocks": chosen, "seconds": time.perf_counter() - start}
    return MergeResult(tv, delta, addon=MoEAddOn(tv.tasks, chosen, gates, addon.base, addon.vectors), info=info)

