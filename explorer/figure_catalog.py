"""The table of figures: every picture the project draws, once, with the section it belongs to (the dashboard tab
and the `explorer analyse --what` value), whether the dashboard shows it, and how to make it from analyses and plots.
The dashboard's tabs, `explorer analyse` and the figure exports all iterate this table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import plotly.graph_objects as go

from . import analysis as A
from . import plots as P
from .methods import registry
from .result import MergeResult
from .taskvec import TaskVectors

SECTIONS = ("cosine", "signs", "masks", "layers", "spectra", "accuracy")
SIGN_TOPK = 0.2  # the share of each task vector TIES keeps by default: where sign conflicts matter


@dataclass
class Inputs:
    """What figures are made from: the task vectors, the merge each section shows, its accuracy table, options.

    `merge(section)` gives the MergeResult a section draws; `scores(result)` its accuracy table (`method, task,
    base, expert, merged, normalized`); `zoo` is needed for sweeps and interpolation grids only; `matrix` is the
    parameter whose spectrum is drawn (default: the middle one of the matrices)."""

    tv: TaskVectors
    merge: Callable[[str], MergeResult] | None = None
    scores: Callable[[MergeResult], pd.DataFrame] | None = None
    zoo: Any = None
    topk: float | None = None
    zoom: bool = False
    lambdas: list[float] | None = None
    pair: tuple[str, str] | None = None
    split: str = "test"
    limit: int | None = None
    matrix: str | None = None


@dataclass(frozen=True)
class Made:
    heading: str
    table: pd.DataFrame | None
    figure: go.Figure


@dataclass(frozen=True)
class Figure:
    """One figure: `name` (the dashboard's element and export file name), its section, whether the dashboard shows
    it, whether it needs a merge, and `make(inputs)` -> Made, or None when it does not apply (e.g. no masks)."""

    name: str
    section: str
    dashboard: bool
    needs_merge: bool
    make: Callable[[Inputs], Made | None]


def _topk_label(inp: Inputs) -> str:
    return "all entries" if inp.topk is None else f"each task's top {inp.topk:.0%}"


def _cosine(inp: Inputs) -> Made:
    cos = A.cosine(inp.tv)
    return Made("Cosine similarity (whole model)", cos, P.cosine_map(cos, zoom=inp.zoom))


def _cosine_layers(inp: Inputs) -> Made:
    return Made("Cosine similarity per layer", None, P.pair_profile(A.conflict_profile(inp.tv), zoom=inp.zoom))


def _signs(inp: Inputs) -> Made:
    conflicts = A.sign_conflicts(inp.tv, topk=inp.topk)
    label = _topk_label(inp)
    return Made(f"Sign conflicts ({label})", conflicts,
                P.sign_conflict_map(conflicts, title=f"Sign conflicts over {label}", zoom=inp.zoom))


def _sign_layers(inp: Inputs) -> Made:
    k = inp.topk or SIGN_TOPK
    top = f"top {k:.0%} of each task"
    both = {"all entries": A.sign_disagreement(inp.tv), top: A.sign_disagreement(inp.tv, topk=k)}
    return Made("Sign disagreement per layer", both[top], P.sign_disagreement(both))


def _sign_profile(inp: Inputs) -> Made:
    profile = A.conflict_profile(inp.tv, metric="signs", topk=inp.topk)
    return Made(f"Sign conflicts per layer ({_topk_label(inp)})", None, P.pair_profile(profile, zoom=inp.zoom))


def _usage(inp: Inputs) -> Made | None:
    res = inp.merge("masks")
    if not res.masks:
        return None
    usage, heading = A.mask_usage(res), f"{res.method}: how many tasks keep each entry"
    return Made(heading, usage, P.mask_usage(usage, title=heading))


def _usage_layers(inp: Inputs) -> Made | None:
    res = inp.merge("masks")
    if not res.masks:
        return None
    title = f"{res.method}: how many tasks keep each entry, per layer"
    return Made(f"{res.method}: usage per layer", None, P.mask_usage(A.mask_usage(res, by="layer"), title=title))


def _overlap(inp: Inputs) -> Made | None:
    res = inp.merge("masks")
    if not res.masks:
        return None
    jaccard = A.mask_overlap(res)
    return Made(f"{res.method}: mask overlap (Jaccard)", jaccard, P.mask_overlap_map(jaccard))


def _density_layers(inp: Inputs) -> Made | None:
    res = inp.merge("masks")
    if not res.masks:
        return None
    return Made(f"{res.method}: mask density per layer", None, P.mask_density(A.mask_density(res, by="layer")))


def _learned(res: MergeResult) -> bool:
    return res.coefficients is not None and not res.coefficients.empty


def _coefficients(inp: Inputs) -> Made:
    """The coefficients a layer-wise method learned or set (LiNeS, AdaMerging, aTLAS), else the effective ones."""
    res = inp.merge("layers")
    if _learned(res):
        return Made(f"{res.method}: its coefficients per layer", None,
                    P.layer_coefficients(A.learned_coefficients(res, by="layer"),
                                         title=f"{res.method}: coefficient per layer"))
    eff = A.effective_coefficients(res)
    return Made(f"{res.method}: effective coefficient per layer", eff,
                P.layer_coefficients(eff, title=f"{res.method}: effective coefficient per layer "
                                                "(‖δ_l‖ / ‖Σ_t τ_t,l‖)"))


def _effective_too(inp: Inputs) -> Made | None:
    """The effective coefficients of a merge that also has its own (shown by `_coefficients`)."""
    res = inp.merge("layers")
    if not _learned(res):
        return None
    eff = A.effective_coefficients(res)
    return Made(f"{res.method}: effective coefficient per layer", eff,
                P.layer_coefficients(eff, title=f"{res.method}: ||δ_l|| / ||Σ_t τ_t,l|| per layer"))


def _fisher_share(inp: Inputs) -> Made | None:
    """How much weight each expert got per layer in a Fisher merge (None for other methods)."""
    res = inp.merge("layers")
    if res.method != "fisher":
        return None
    share = A.fisher_share(res)
    return Made("fisher: each expert's share of the weight per layer", share, P.fisher_share(share))


def _norms(inp: Inputs) -> Made:
    return Made("Task-vector norm per layer", None, P.layer_norms(A.layer_norms(inp.tv)))


def _relative_norms(inp: Inputs) -> Made:
    return Made("Relative change per layer", None,
                P.layer_norms(A.layer_norms(inp.tv), relative=True, title="How far fine-tuning moved each layer"))


def _subspace_overlap(inp: Inputs) -> Made | None:
    if not A.matrix_names(inp.tv):
        return None
    overlap = A.subspace_overlap(inp.tv)
    return Made("Overlap of the tasks' top singular subspaces", overlap, P.subspace_overlap_map(overlap, zoom=inp.zoom))


def _interference(inp: Inputs) -> Made | None:
    if not A.matrix_names(inp.tv):
        return None
    sti = A.interference(inp.tv)
    return Made("Singular task interference per matrix", sti, P.singular_interference(sti))


def _spectrum(inp: Inputs) -> Made | None:
    names = A.matrix_names(inp.tv)
    if not names:
        return None
    res = inp.merge("spectra")
    name = inp.matrix or names[len(names) // 2]
    return Made(f"Singular values of {name} ({res.method})", None,
                P.spectrum_lines(A.spectrum(inp.tv, name, res),
                                 title=f"Singular values of {name}: tasks and {res.method}"))


def _effective_ranks(inp: Inputs) -> Made | None:
    if not A.matrix_names(inp.tv):
        return None
    res = inp.merge("spectra")
    summary = A.spectral_summary(inp.tv, res)
    return Made(f"Effective rank per matrix (tasks and {res.method})", summary, P.effective_ranks(summary))


def _representation_bias(inp: Inputs) -> Made | None:
    res = inp.merge("accuracy")
    if "representation_bias" not in res.info:
        return None
    bias = A.representation_bias(res)
    return Made("Surgery: representation bias before/after", bias, P.representation_bias(bias))


def _learned_mask(inp: Inputs) -> Made | None:
    res = inp.merge("layers")
    if "mask_density" not in res.info:
        return None
    density = A.concrete_mask_density(res)
    return Made("Concrete: learned mask density per tensor", density.to_frame(), P.learned_mask_density(density))


def _routing(inp: Inputs) -> Made | None:
    res = inp.merge("accuracy")
    if not res.routes or inp.zoo is None:
        return None
    table = A.routing(inp.zoo, res, inp.split, 100)
    return Made(f"{res.method}: routing weights per task (first 100 images)", table.reset_index(), P.routing_map(table))


def _accuracy(inp: Inputs) -> Made:
    res = inp.merge("accuracy")
    table = inp.scores(res)
    return Made(f"{res.method}: accuracy per task", table,
                P.accuracy_bars(table, title=f"Accuracy per task: {res.method}"))


def _sweep(inp: Inputs) -> Made | None:
    res = inp.merge("accuracy")
    if inp.zoo is None or not inp.lambdas or not any(p.name == "scale" for p in registry.get(res.method).params):
        return None
    fixed = {k: v for k, v in res.params.items() if k != "scale"}
    sweep = A.lambda_sweep(inp.zoo, inp.tv, inp.lambdas, method=res.method, split=inp.split, limit=inp.limit,
                           **fixed)
    return Made(f"{res.method}: accuracy against scale", None, P.lambda_sweep(sweep))


def _interpolation(inp: Inputs) -> Made | None:
    if inp.zoo is None or inp.pair is None:
        return None
    a, b = inp.pair
    grid = A.interpolation_grid(inp.zoo, inp.tv, a, b, [0, 0.25, 0.5, 0.75, 1.0], split=inp.split, limit=inp.limit)
    return Made(f"Interpolating {a} and {b}", None, P.interpolation_heatmap(grid))


FIGURES = (
    Figure("cosine", "cosine", True, False, _cosine),
    Figure("cosine_layers", "cosine", True, False, _cosine_layers),
    Figure("signs", "signs", True, False, _signs),
    Figure("sign_layers", "signs", True, False, _sign_layers),
    Figure("sign_profile", "signs", False, False, _sign_profile),
    Figure("usage", "masks", True, True, _usage),
    Figure("usage_layers", "masks", False, True, _usage_layers),
    Figure("overlap", "masks", True, True, _overlap),
    Figure("density_layers", "masks", False, True, _density_layers),
    Figure("learned_mask", "layers", True, True, _learned_mask),
    Figure("norms", "layers", True, False, _norms),
    Figure("relative_norms", "layers", False, False, _relative_norms),
    Figure("coefficients", "layers", True, True, _coefficients),
    Figure("effective_coefficients", "layers", False, True, _effective_too),
    Figure("fisher_share", "layers", True, True, _fisher_share),
    Figure("subspace_overlap", "spectra", True, False, _subspace_overlap),
    Figure("interference", "spectra", True, False, _interference),
    Figure("spectrum", "spectra", True, True, _spectrum),
    Figure("effective_ranks", "spectra", True, True, _effective_ranks),
    Figure("accuracy", "accuracy", True, True, _accuracy),
    Figure("representation_bias", "accuracy", True, True, _representation_bias),
    Figure("routing", "accuracy", True, True, _routing),
    Figure("lambda_sweep", "accuracy", False, True, _sweep),
    Figure("interpolation", "accuracy", False, True, _interpolation),
)
# Figures that only some merges draw (their `make` gives None for every other merge): Fisher merging's weight share,
# Concrete's learned mask, Surgery's representation bias, the routing of Twin-Merging and WEMoE.
METHOD_SPECIFIC = ("fisher_share", "learned_mask", "representation_bias", "routing")


def select(*, sections: tuple[str, ...] = SECTIONS, dashboard: bool | None = None,
           needs_merge: bool | None = None) -> list[Figure]:
    """The figures of `sections` (table order), optionally only the dashboard's, or only those with(out) a merge."""
    return [f for f in FIGURES if f.section in sections and (dashboard is None or f.dashboard == dashboard)
            and (needs_merge is None or f.needs_merge == needs_merge)]


def make(figures: list[Figure], inputs: Inputs) -> dict[str, Made | None]:
    """Each figure's Made (None where it does not apply), by name, in table order."""
    return {f.name: f.make(inputs) for f in figures}
