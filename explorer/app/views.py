"""Which analysis feeds which picture on the dashboard. The analyses compute numbers and `explorer.plots` draws
them; this module only picks them, and caches the figures that depend on the zoo and tasks alone."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import analysis as A
from .. import plots as P
from ..result import MergeResult
from . import cache

ZOO_FIGURES = ("cosine", "cosine_layers", "signs", "sign_layers", "norms")
RUN_FIGURES = ("accuracy", "overlap", "usage", "coefficients")
SIGN_TOPK = 0.2  # the share of each task vector TIES keeps by default: where sign conflicts matter


def zoo_figures(zoo_name: str, tasks: list[str], zoom: bool = False) -> dict[str, go.Figure]:
    """Figures of the task vectors themselves (cosine and sign conflicts, layer norms), built once per
    (zoo, tasks, device, zoom) and shared by every session; zoom fits the conflict maps' colours to the values."""
    def make() -> dict[str, go.Figure]:
        tv = cache.vectors(zoo_name, tasks)
        signs = {"all entries": A.sign_disagreement(tv),
                 f"top {SIGN_TOPK:.0%} of each task": A.sign_disagreement(tv, topk=SIGN_TOPK)}
        return {"cosine": P.cosine_map(A.cosine(tv), zoom=zoom),
                "cosine_layers": P.pair_profile(A.conflict_profile(tv, "cosine"), zoom=zoom),
                "signs": P.sign_conflict_map(A.sign_conflicts(tv), zoom=zoom),
                "sign_layers": P.sign_disagreement(signs),
                "norms": P.layer_norms(A.layer_norms(tv))}

    return cache.ZOO_FIGURES.get((*cache.tv_key(zoo_name, tasks), bool(zoom)), make)


def mask_figures(result: MergeResult) -> dict[str, go.Figure | None]:
    """Mask overlap (Jaccard) and usage histogram, or None for both when the method keeps no masks."""
    if not result.masks:
        return {"overlap": None, "usage": None}
    return {"overlap": P.mask_overlap_map(A.mask_overlap(result)), "usage": P.mask_usage(A.mask_usage(result))}


def coefficient_figure(result: MergeResult) -> go.Figure:
    """The coefficients a layer-wise method learned or set (LiNeS, AdaMerging, aTLAS), else the effective one
    per layer (how much of the plain sum of task vectors the merge keeps)."""
    if result.coefficients is not None and not result.coefficients.empty:
        return P.layer_coefficients(A.learned_coefficients(result, by="layer"),
                                    title=f"{result.method}: coefficient per layer")
    return P.layer_coefficients(A.effective_coefficients(result),
                                title=f"{result.method}: effective coefficient per layer (‖δ_l‖ / ‖Σ_t τ_t,l‖)")


def run_figures(result: MergeResult, scores: pd.DataFrame) -> dict[str, go.Figure | None]:
    """Every figure that depends on one merge: accuracy bars, masks and layer-wise scaling."""
    return {"accuracy": P.accuracy_bars(scores, title=f"Accuracy per task: {result.method}"),
            **mask_figures(result), "coefficients": coefficient_figure(result)}


def mask_note(result: MergeResult) -> str:
    """What the mask tab says: which tasks' masks are shown, or why there are none."""
    if result.masks:
        return (f"Masks of **{result.method}**: which entries of each task vector the merge keeps. "
                "Overlap = Jaccard index of two tasks' masks; usage = how many tasks keep each entry.")
    return (f"**{result.method}** keeps no masks (it scales whole task vectors). Pick TIES, DARE, magnitude, "
            "Breadcrumbs, TALL masks, Consensus or EMR to see mask overlaps.")
