"""Merges in closed form from statistics of a few training examples per task: Fisher merging, RegMean and RegMean++.

Fisher merging weights every entry of each expert by that expert's diagonal Fisher; RegMean solves, for every linear
map, the regression that matches each expert's outputs on its own inputs (Gram matrices); RegMean++ takes those
inputs from the merged model's earlier layers. The statistics come from `stats_passes.py` and are cached, so moving
alpha (or eps) merges again without reading data.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import pandas as pd
import torch
from torch import Tensor

from ..result import MergeResult
from ..taskvec import TaskVectors
from . import stats_passes as S
from .registry import Param, register
from .runner import Progress, require_zoo

TRAIN = "train"
SEED = Param("seed", int, 0, "random seed: which training examples are read", low=0, high=2**31 - 1, step=1,
             paper=None)
EXAMPLES = Param("examples", int, 256, "training examples read per task", low=1, high=100000, step=16, paper=256)


# --- the closed forms ------------------------------------------------------------------------------------------
def fisher_weights(fishers: Tensor, eps: float, norms: Tensor | None = None) -> Tensor:
    """Per-entry merge weights w_t = c_t (F_t + eps) / sum_s c_s (F_s + eps) for stacked Fishers [T, ...];
    c_t = 1/T, or with `norms` ([T], each Fisher's global L2 norm) c_t proportional to 1 / (norm_t + eps)."""
    coef = torch.full((fishers.shape[0],), 1.0 / fishers.shape[0], dtype=fishers.dtype, device=fishers.device)
    if norms is not None:
        inverse = 1.0 / (norms.to(fishers) + eps)
        coef = coef * inverse / inverse.sum()
    weighted = coef.reshape(-1, *[1] * (fishers.dim() - 1)) * (fishers + eps)
    return weighted / weighted.sum(0, keepdim=True)


def regmean_terms(grams: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The sums over tasks that RegMean's solve needs for any alpha: sum_t G_t [in, in], sum_t G_t W_t [in, out] and
    sum_t diag(G_t) W_t [in, out], from `grams` [T, in, in] and `rows` [T, in, out] (float64)."""
    grams, rows = grams.double(), rows.double()
    diagonal = torch.diagonal(grams, dim1=-2, dim2=-1).unsqueeze(-1)  # [T, in, 1]
    return grams.sum(0), torch.einsum("tij,tjo->io", grams, rows), (diagonal * rows).sum(0)


def solve_terms(terms: tuple[Tensor, Tensor, Tensor], alpha: float) -> Tensor:
    """W* = (sum_t G~_t)^-1 sum_t G~_t W_t for G~_t = alpha G_t + (1 - alpha) diag(G_t), from `regmean_terms`: both
    sums are linear in G~_t. A singular sum falls back to the pseudo-inverse."""
    total, full, diagonal = terms
    lhs = alpha * total + (1.0 - alpha) * torch.diag(torch.diagonal(total))
    rhs = alpha * full + (1.0 - alpha) * diagonal
    solution, info = torch.linalg.solve_ex(lhs, rhs)
    if int(info) != 0 or not torch.isfinite(solution).all():
        solution = torch.linalg.pinv(lhs) @ rhs
    return solution


def regmean_solve(grams: Tensor, rows: Tensor, alpha: float) -> Tensor:
    """W* = (sum_t G~_t)^-1 sum_t G~_t W_t with G~_t = alpha G_t + (1 - alpha) diag(G_t); `grams` [T, in, in],
    `rows` [T, in, out] (each expert's W^T). Solved in float64."""
    return solve_terms(regmean_terms(grams, rows), alpha)


def averaged(tv: TaskVectors, names: list[str]) -> dict[str, Tensor]:
    return {n: tv[n].mean(0) for n in names}


# --- progress and cancel -----------------------------------------------------------------------------------------
class Ticker:
    """Counts batches of a statistics pass, reports them to `callback` and asks `cancel` after each one."""

    def __init__(self, total: int, stage: str, callback: Callable[[Progress], Any] | None,
                 cancel: Callable[[], bool] | None):
        self.done, self.total, self.stage, self.callback, self.cancel = 0, total, stage, callback, cancel
        self.cancelled = False

    def __call__(self) -> bool:
        self.done += 1
        if self.callback is not None:
            self.callback(Progress(self.done, self.total, float("nan"), pd.DataFrame(), stage=self.stage))
        self.cancelled = self.cancel is not None and bool(self.cancel())
        return self.cancelled


def _read(zoo: Any, tasks: list[str], examples: int, seed: int, method: str) -> dict[str, Any]:
    return {t: S.examples(zoo, t, TRAIN, examples, seed, method) for t in tasks}


def _batches(n: int) -> int:
    return -(-n // S.BATCH)


def _data_info(subsets: dict[str, Any], cached: bool) -> dict[str, Any]:
    return {"split": TRAIN, "examples_per_task": {t: len(s) for t, s in subsets.items()}, "cached": cached}


def _cancelled(tv: TaskVectors, info: dict, start: float) -> MergeResult:
    """What a cancelled statistics pass leaves: no statistics, so the plain average (equal Fishers, identity Grams)."""
    info = {**info, "cancelled": True, "note": "cancelled during the statistics pass: the plain average of the "
                                               "experts", "seconds": time.perf_counter() - start}
    return MergeResult(tv, averaged(tv, tv.keys()), info=info)


# --- Fisher merging ------------------------------------------------------------------------------------------------
@register("fisher", EXAMPLES,
          Param("normalize", bool, True, "scale each expert's Fisher by the inverse of its global L2 norm "
                "(FusionBench's normalize_fisher_weight)", paper=True),
          Param("eps", float, 1e-6, "added to every Fisher entry (a floor, so no weight is divided by zero)",
                low=0.0, high=1.0, step=1e-6, paper=1e-6),
          SEED,
          title="Fisher merging",
          paper="Matena & Raffel, Merging Models with Fisher-Weighted Averaging, NeurIPS 2022",
          formula="theta = sum_t c_t (F_t + eps) theta_t / sum_t c_t (F_t + eps); F_t = diagonal Fisher of expert t "
                  "on N training examples of task t (squared batch-summed gradient of sum_y sqrt(p_y) log p_y)",
          summary="Average the experts' full weights entry by entry, each weighted by its diagonal Fisher "
                  "information on a few training examples of its task.",
          needs_data=True)
def fisher(tv: TaskVectors, *, examples: int, normalize: bool, eps: float, seed: int, zoo: Any = None,
           callback: Callable[[Progress], Any] | None = None, cancel: Callable[[], bool] | None = None) -> MergeResult:
    """Fisher merging of the full weights; delta = sum_t w_t tau_t since the weights w_t sum to 1 per entry.
    `coefficients` holds each expert's mean weight per parameter tensor (what `analysis.fisher_share` reads)."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "fisher")
    subsets = _read(zoo, tv.tasks, examples, seed, "fisher")
    model = S.frozen_model(zoo, tv.device)
    tick = Ticker(sum(_batches(len(s)) for s in subsets.values()), "Fisher information", callback, cancel)
    setting, hits, fishers = (TRAIN, examples, seed, str(tv.device)), 0, []
    for i, task in enumerate(tv.tasks):
        weights = tv.state_dict(tv.task(task))

        def make(task=task, weights=weights) -> dict[str, Tensor] | None:
            head = S.frozen_head(zoo, task, tv.device)
            return S.fisher_pass(model, head, weights, tv.keys(), S.batches(subsets[task], tv.device), tick)

        before = tick.done
        fishers.append(S.cached(zoo, "fisher", setting, (task, S.signature(tv, i)), make))
        hits += tick.done == before
        if tick.cancelled:
            return _cancelled(tv, {"data": _data_info(subsets, False)}, start)
    norms = torch.stack([torch.sqrt(sum(f[n].double().square().sum() for n in f)) for f in fishers]) \
        if normalize else None
    delta, share = {}, {}
    for name in tv.keys():
        w = fisher_weights(torch.stack([f[name] for f in fishers]), eps, norms)  # [T, ...]
        delta[name] = (w * tv[name]).sum(0)
        share[name] = w.reshape(tv.num_tasks, -1).double().mean(1).tolist()
    coefficients = pd.DataFrame(share, index=pd.Index(tv.tasks, name="task"))
    info = {"data": _data_info(subsets, hits == len(fishers)), "cancelled": False,
            "fisher_norms": None if norms is None else dict(zip(tv.tasks, norms.tolist())),
            "seconds": time.perf_counter() - start}
    return MergeResult(tv, delta, coefficients=coefficients, info=info)


# --- RegMean and RegMean++ -----------------------------------------------------------------------------------------
def _terms(tv: TaskVectors, maps: dict[str, S.LinearMap], grams: list[S.Grams]) -> dict[str, tuple]:
    """RegMean's alpha-free sums per linear map (`regmean_terms`) from each expert's weights and Gram matrices."""
    out = {}
    for name, lm in maps.items():
        base = tv.base[name].double()
        rows = torch.stack([lm.rows(base + tv[name][i].double()) for i in range(tv.num_tasks)])  # [T, in, out]
        out[name] = regmean_terms(torch.stack([g.gram(name) for g in grams]), rows)
    return out


def _solve(tv: TaskVectors, maps: dict[str, S.LinearMap], terms: dict[str, tuple], alpha: float) -> dict[str, Tensor]:
    """The RegMean delta of each linear map in `maps`: W* - W_0 (computed in float64)."""
    out = {}
    for name, lm in maps.items():
        base = tv.base[name].double()
        out[name] = (lm.weight(solve_terms(terms[name], alpha), base.shape) - base).to(tv[name].dtype)
    return out


def _individual(tv, zoo, model, maps, subsets, setting, keys, tick) -> tuple[list[S.Grams] | None, bool]:
    """RegMean's statistics: each expert's Gram matrices on its own task's examples (cached)."""
    grams, hits = [], 0
    for i, task in enumerate(tv.tasks):
        weights = tv.state_dict(tv.task(task))

        def make(task=task, weights=weights) -> S.Grams | None:
            return S.gram_pass(model, weights, list(maps), S.batches(subsets[task], tv.device), tick=tick)

        before = tick.done
        grams.append(S.cached(zoo, "gram", setting, keys[i], make))
        hits += tick.done == before
        if tick.cancelled:
            return None, False
    return grams, hits == len(grams)


def _layer_by_layer(tv, model, maps, subsets, alpha, tick) -> dict[str, Tensor] | None:
    """RegMean++: layer groups in model order; the Gram matrices of group l come from each expert's own group l run
    on the inputs that the groups merged so far produce; then group l is merged and the next one reads through it."""
    delta: dict[str, Tensor] = {}
    for layer in tv.layers():
        names = [n for n in tv.keys() if tv.info[n].layer == layer]
        linear = {n: maps[n] for n in names if n in maps}
        if linear:
            grams = []
            for task in tv.tasks:
                weights = tv.state_dict({**tv.task(task), **delta})  # merged before this group, expert from here on
                grams.append(S.gram_pass(model, weights, list(linear), S.batches(subsets[task], tv.device),
                                         stop=True, tick=tick))
                if tick.cancelled:
                    return None
            delta.update(_solve(tv, linear, _terms(tv, linear, grams), alpha))
        delta.update(averaged(tv, [n for n in names if n not in linear]))
    return delta


@register("regmean",
          Param("alpha", float, 0.95, "scale of the Gram matrices' off-diagonal entries (1: the full Gram matrix, "
                "0: its diagonal only, which gives a weighted average)", low=0.0, high=1.0, step=0.01, paper=0.95),
          EXAMPLES,
          Param("inputs", str, "individual", "whose inputs the Gram matrices are taken on: each expert's own "
                "(individual, RegMean) or those the merged earlier layers produce (merged, RegMean++)",
                choices=("individual", "merged"), paper="individual"),
          SEED,
          title="RegMean (and RegMean++)",
          paper="Jin et al., Dataless Knowledge Fusion by Merging Weights of Language Models, ICLR 2023; "
                "RegMean++: Nguyen et al., 2025",
          formula="W* = (sum_t G~_t)^-1 sum_t G~_t W_t^T per linear map, G~_t = alpha G_t + (1 - alpha) diag(G_t), "
                  "G_t = X_t^T X_t / n over N training examples of task t; every other parameter averaged",
          summary="For every linear map (attention in_proj and out_proj, MLP, patch embedding, output projection), "
                  "the weights that best reproduce all experts' outputs on their own inputs, in closed form; "
                  "inputs=merged (RegMean++) reads each layer's inputs through the layers merged before it.",
          needs_data=True)
def regmean(tv: TaskVectors, *, alpha: float, examples: int, inputs: str, seed: int, zoo: Any = None,
            callback: Callable[[Progress], Any] | None = None, cancel: Callable[[], bool] | None = None) -> MergeResult:
    """RegMean: Gram matrices of every linear map's inputs (cached per zoo, examples, seed and device), then the
    closed-form solve per map; biases, norms and embeddings are averaged. RegMean++ merges layer group by group."""
    start = time.perf_counter()
    zoo = require_zoo(zoo, "regmean")
    subsets = _read(zoo, tv.tasks, examples, seed, "regmean")
    model = S.frozen_model(zoo, tv.device)
    maps = {n: lm for n, lm in S.linear_maps(model).items() if n in tv.deltas}
    per_pass = sum(_batches(len(s)) for s in subsets.values())
    if inputs == "merged":
        groups = len({tv.info[n].layer for n in maps})
        tick = Ticker(groups * per_pass, "Gram matrices, layer by layer", callback, cancel)
        delta, cached = _layer_by_layer(tv, model, maps, subsets, alpha, tick), False
    else:
        tick = Ticker(per_pass, "Gram matrices", callback, cancel)
        setting = (TRAIN, examples, seed, str(tv.device), tuple(maps))  # the maps: another model, other Grams
        keys = [(t, S.signature(tv, i)) for i, t in enumerate(tv.tasks)]  # a task and its weights
        grams, cached = _individual(tv, zoo, model, maps, subsets, setting, keys, tick)
        delta = None
        if grams is not None:  # the sums over these tasks are cached too: moving alpha is one solve per map
            terms = S.cached(zoo, "regmean_terms", setting, tuple(keys), lambda: _terms(tv, maps, grams))
            delta = {**averaged(tv, [n for n in tv.keys() if n not in maps]), **_solve(tv, maps, terms, alpha)}
    if delta is None:
        return _cancelled(tv, {"data": _data_info(subsets, False), "linear_maps": list(maps)}, start)
    delta = {n: delta[n] for n in tv.keys()}
    info = {"data": _data_info(subsets, cached), "cancelled": False, "linear_maps": list(maps),
            "averaged": [n for n in tv.keys() if n not in maps], "seconds": time.perf_counter() - start}
    return MergeResult(tv, delta, info=info)
