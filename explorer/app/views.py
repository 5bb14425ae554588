"""Which figures the dashboard shows, from the table in `explorer.figures`: the ones of the task vectors (cached per
zoo and tasks, shared by every session) and the ones of one merge, and the tab each belongs to."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import figures as F
from ..result import MergeResult
from . import cache

ZOO_FIGURES = tuple(f.name for f in F.select(dashboard=True, needs_merge=False))
RUN_FIGURES = tuple(f.name for f in F.select(dashboard=True, needs_merge=True))
TABS = {section: tuple(f.name for f in F.select(sections=(section,), dashboard=True)) for section in F.SECTIONS}


def zoo_figures(zoo_name: str, tasks: list[str], zoom: bool = False) -> dict[str, go.Figure]:
    """Figures of the task vectors themselves (cosine and sign conflicts, layer norms), built once per
    (zoo, tasks, device, zoom) and shared by every session; zoom fits the conflict maps' colours to the values."""
    def make() -> dict[str, go.Figure]:
        inputs = F.Inputs(cache.vectors(zoo_name, tasks), zoom=zoom)
        return {name: made.figure for name, made in F.make(F.select(dashboard=True, needs_merge=False),
                                                            inputs).items()}

    return cache.ZOO_FIGURES.get((*cache.tv_key(zoo_name, tasks), bool(zoom)), make)


def run_figures(result: MergeResult, scores: pd.DataFrame) -> dict[str, go.Figure | None]:
    """Every figure of one merge (accuracy bars, masks, layer-wise scaling); None where it does not apply."""
    inputs = F.Inputs(result.tv, merge=lambda _: result, scores=lambda _: scores)
    made = F.make(F.select(dashboard=True, needs_merge=True), inputs)
    return {name: None if m is None else m.figure for name, m in made.items()}


def mask_note(result: MergeResult) -> str:
    """What the mask tab says: which tasks' masks are shown, or why there are none."""
    if result.masks:
        return (f"Masks of **{result.method}**: which entries of each task vector the merge keeps. "
                "Overlap = Jaccard index of two tasks' masks; usage = how many tasks keep each entry.")
    return (f"**{result.method}** keeps no masks (it scales whole task vectors). Pick TIES, DARE, magnitude, "
            "Breadcrumbs, TALL masks, Consensus or EMR to see mask overlaps.")
