"""The task matrices' singular values: spectra, subspace overlap, effective ranks, singular task interference."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import (
    METHOD_COLORS,
    SEQUENTIAL,
    _off_diagonal,
    _pair_map,
    _range_note,
    _short,
    _styled,
    _subtitled,
    _task_lines,
    _zrange,
    task_colors,
)


def spectrum_lines(spectra: pd.DataFrame, title: str = "Singular values of each task's matrix") -> go.Figure:
    """Singular values by component (from `analysis.spectrum`), one line per task in its colour, the merge (a
    "merged" column) dashed black, on a log axis: a steep drop = a low-rank task vector."""
    colors = task_colors([c for c in spectra.columns if c != "merged"])
    fig = go.Figure()
    for column in spectra.columns:
        merged = column == "merged"
        fig.add_scatter(x=spectra.index, y=spectra[column], name=str(column), mode="lines",
                        line={"color": "#000000" if merged else colors[column], "width": 3,
                              "dash": "dash" if merged else "solid"},
                        hovertemplate=f"{column}<br>component %{{x}}<br>σ: %{{y:.4g}}<extra></extra>")
    return _styled(fig, title, "component (largest first)", "singular value σ", yaxis={"type": "log"})


def subspace_overlap_map(matrix: pd.DataFrame, title: str = "Overlap of the tasks' top singular subspaces",
                         zoom: bool = False) -> go.Figure:
    """T x T subspace overlap (from `analysis.subspace_overlap`): the mean squared cosine of the principal angles,
    0 (orthogonal) .. 1 (the same subspace); the subtitle gives the chance level of random subspaces."""
    lo, hi = _zrange(_off_diagonal(matrix), (0.0, 1.0), None, zoom)
    chance = matrix.attrs.get("chance")
    note = (f"over {matrix.attrs.get('over', 'the matrices')} · random subspaces: {chance:.3f} · "
            if chance is not None else "") + _range_note(lo, hi, zoom)
    return _pair_map(matrix, _subtitled(title, note), "overlap", center=None, blank_diagonal=True, zrange=(lo, hi),
                     colorscale=SEQUENTIAL)


def effective_ranks(summary: pd.DataFrame, title: str = "Effective rank of each task's matrices") -> go.Figure:
    """Effective rank per matrix (from `analysis.spectral_summary`), one line per task (the merge in black): how
    many directions each task vector really uses, layer by layer."""
    frame = summary.assign(matrix=summary.param.map(_short))
    colors = {"merged": "#000000", **task_colors([t for t in dict.fromkeys(frame.task) if t != "merged"])}
    fig = _task_lines(frame, "matrix", "effective_rank", "effective rank", colors)
    return _styled(fig, title, "matrix (input → output)", "effective rank exp(H(σ/Σσ))",
                   yaxis={"rangemode": "tozero"}, xaxis={"tickangle": -45})


def singular_interference(sti: pd.DataFrame, title: str = "Singular task interference per matrix") -> go.Figure:
    """TSV's singular task interference (from `analysis.interference`) of the tasks' concatenated top singular
    vectors, as they are and after TSV's orthogonalisation (which brings it to zero)."""
    x = sti.param.map(_short)
    fig = go.Figure()
    fig.add_bar(x=x, y=sti.before, name="tasks' singular vectors as they are", marker_color=METHOD_COLORS[1],
                hovertemplate="%{x}<br>STI: %{y:.4g}<extra></extra>")
    fig.add_bar(x=x, y=sti.after, name="after TSV's orthogonalisation", marker_color=METHOD_COLORS[0],
                hovertemplate="%{x}<br>STI: %{y:.4g}<extra></extra>")
    return _styled(fig, _subtitled(title, "||(UᵀU − I) Σ (VᵀV − I)||₁ over each task's top r/T singular vectors"),
                   "matrix (input → output)", "interference", barmode="group", xaxis={"tickangle": -45})
