"""Which figures the dashboard shows, from the table in `explorer.figure_catalog`: the ones of the task vectors
(cached per zoo and tasks, shared by every session) and the ones of one merge, and the tab each belongs to."""
from __future__ import annotations

from typing import Callable

import pandas as pd
import plotly.graph_objects as go

from .. import figure_catalog as F
from ..result import MergeResult
from . import cache

ZOO_FIGURES = tuple(f.name for f in F.select(dashboard=True, needs_merge=False))
RUN_FIGURES = tuple(f.name for f in F.select(dashboard=True, needs_merge=True))
TABS = {section: tuple(f.name for f in F.select(sections=(section,), dashboard=True)) for section in F.SECTIONS}
SHOWN = {section: tuple(n for n in names if n in RUN_FIGURES) for section, names in TABS.items()}  # a run's, by tab
OTHER_TABS = ("security", "history", "export")  # the page's tabs that show no figure of a run


LARGE = 200_000_000  # task-vector entries (tasks x parameters) from which the page warns that views take a while
RATE = 4.0e6  # task-vector entries per second of all the zoo views on a busy 2-core CPU: 8 ViT-B/32 experts (702 M
# entries) took 93 s on an idle one (bench_own_zoo.py), about twice that with another job running


class Cancelled(Exception):
    """The user pressed Cancel while views were being computed."""


def zoo_figures(zoo_name: str, tasks: list[str], zoom: bool = False,
                progress: Callable[[int, int, str], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> dict[str, go.Figure]:
    """Figures of the task vectors themselves (cosine and sign conflicts, layer norms, spectra), built once per
    (zoo, tasks, device, zoom) and shared by every session; zoom fits the conflict maps' colours to the values.
    `progress(done, total, name)` hears of each figure; `cancel()` true stops between figures (raises Cancelled)."""
    def make() -> dict[str, go.Figure]:
        inputs = F.Inputs(cache.vectors(zoo_name, tasks), zoom=zoom)
        figures, out = F.select(dashboard=True, needs_merge=False), {}
        for i, f in enumerate(figures):
            if cancel is not None and cancel():
                raise Cancelled(f"cancelled after {i} of {len(figures)} views")
            if progress is not None:
                progress(i, len(figures), f.name)
            made = f.make(inputs)
            out[f.name] = None if made is None else made.figure
        return out

    return cache.ZOO_FIGURES.get(zoo_key(zoo_name, tasks, zoom), make)


def zoo_key(zoo_name: str, tasks: list[str], zoom: bool = False) -> tuple:
    return (*cache.tv_key(zoo_name, tasks), bool(zoom))


def ready(zoo_name: str, tasks: list[str], zoom: bool = False) -> bool:
    """Whether the zoo figures of these tasks are computed already."""
    return cache.ZOO_FIGURES.get(zoo_key(zoo_name, tasks, zoom)) is not None


def size_note(zoo_name: str, tasks: list[str]) -> str:
    """What the page says before computing the views of a large zoo ("" for a small one)."""
    tv = cache.vectors(zoo_name, tasks)
    entries = tv.numel() * tv.num_tasks
    if entries < LARGE:
        return ""
    minutes = entries / RATE / 60
    return (f"Computing the weight-space views of {tv.num_tasks} experts × {tv.numel() / 1e6:.1f} M parameters "
            f"(cosine, signs, layer norms, spectra): at this size that takes a while, roughly {minutes:.0f} min on a "
            f"busy 2-core CPU (less with more cores or a GPU); the status shows each view, Cancel stops between views.")


def run_figures(result: MergeResult, scores: pd.DataFrame | None,
                names: tuple[str, ...] = RUN_FIGURES) -> dict[str, go.Figure | None]:
    """The figures `names` (default: every one) of one merge (accuracy bars, masks, layer-wise scaling); None where
    it does not apply (the accuracy figures of a run without scores: its zoo cannot evaluate)."""
    inputs = F.Inputs(result.tv, merge=lambda _: result, scores=lambda _: scores)
    figures = [f for f in F.select(dashboard=True, needs_merge=True)
               if f.name in names and (scores is not None or f.section != "accuracy")]
    made = F.make(figures, inputs)
    return {name: None if made.get(name) is None else made[name].figure for name in names}


def shown(tab: str | None) -> tuple[str, ...]:
    """The run figures the page draws now: those of the open tab (every one for `None`: exports, notebooks)."""
    if tab is None:
        return RUN_FIGURES
    if tab not in SHOWN and tab not in OTHER_TABS:
        raise ValueError(f"unknown tab {tab!r}; the tabs are {sorted([*SHOWN, *OTHER_TABS])}")
    return SHOWN.get(tab, ())


def mask_note(result: MergeResult) -> str:
    """What the mask tab says: which tasks' masks are shown, or why there are none."""
    if result.masks:
        return (f"Masks of **{result.method}**: which entries of each task vector the merge keeps. "
                "Overlap = Jaccard index of two tasks' masks; usage = how many tasks keep each entry.")
    return (f"**{result.method}** keeps no masks (it scales whole task vectors). Pick TIES, DARE, magnitude, "
            "Breadcrumbs, TALL masks, Consensus or EMR to see mask overlaps.")
