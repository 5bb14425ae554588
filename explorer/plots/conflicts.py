"""How the task vectors relate: cosine and sign-conflict maps, pairs across layers, sign disagreement per layer."""
from __future__ import annotations

from typing import Mapping

import pandas as pd
import plotly.graph_objects as go

from .style import DIVERGING, METHOD_COLORS, _off_diagonal, _pair_map, _range_note, _styled, _subtitled, _zrange


def cosine_map(matrix: pd.DataFrame, title: str = "Cosine similarity of task vectors", zoom: bool = False) -> go.Figure:
    """T x T cosine map (from `analysis.cosine(tv)`): red = aligned, blue = opposed, white = orthogonal, on the
    fixed range -1..1 (zoom=True: symmetric around 0 to fit the off-diagonal values). The diagonal (always 1) is
    blank; the subtitle says what the cosines are computed over and the colour range."""
    lo, hi = _zrange(_off_diagonal(matrix), (-1.0, 1.0), 0.0, zoom)
    over = matrix.attrs.get("over", "the whole flattened task vectors")
    note = f"over {over} · red: same direction · blue: opposed · {_range_note(lo, hi, zoom)}"
    return _pair_map(matrix, _subtitled(title, note), "cosine", center=0.0, blank_diagonal=True, zrange=(lo, hi))


def sign_conflict_map(matrix: pd.DataFrame, title: str = "Sign conflicts between task vectors",
                      zoom: bool = False) -> go.Figure:
    """T x T sign-conflict map (from `analysis.sign_conflicts`): the fraction of shared entries with opposite
    signs on 0..1 centred at 0.5 (what independent random signs give; zoom=True: symmetric around 0.5 to fit the
    values): red = more conflict, blue = more agreement."""
    lo, hi = _zrange(_off_diagonal(matrix), (0.0, 1.0), 0.5, zoom)
    over = matrix.attrs.get("over", "the entries non-zero in both tasks")
    note = (f"fraction with opposite signs, over {over} · 0.5 = as if the signs were random · "
            f"{_range_note(lo, hi, zoom)}")
    return _pair_map(matrix, _subtitled(title, note), "conflict", center=0.5, blank_diagonal=True, zrange=(lo, hi))


def pair_profile(profile: pd.DataFrame, title: str | None = None, zoom: bool = False) -> go.Figure:
    """How each pair of tasks relates across depth (from `analysis.conflict_profile`): pairs down, layers across,
    on the natural range (cosine -1..1, conflict 0..1 centred at 0.5; zoom=True fits the values)."""
    value = "cosine" if "cosine" in profile.columns else "conflict"
    grid = profile.pivot(index="pair", columns="layer", values=value)
    grid = grid.loc[list(dict.fromkeys(profile.pair)), list(dict.fromkeys(profile.layer))]
    z = grid.to_numpy(dtype=float)
    center, natural = (0.0, (-1.0, 1.0)) if value == "cosine" else (0.5, (0.0, 1.0))
    lo, hi = _zrange(z, natural, center, zoom)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(grid.columns), y=list(grid.index), colorscale=DIVERGING, zmid=center, zmin=lo,
        zmax=hi, colorbar={"title": {"text": value}}, xgap=1, ygap=1,
        hovertemplate=f"%{{y}}<br>layer %{{x}}<br>{value}: %{{z:.4f}}<extra></extra>"))
    rng = _range_note(lo, hi, zoom)
    default = (_subtitled("Cosine similarity per layer", f"over each layer's entries · red: same direction · "
                          f"blue: opposed · {rng}")
               if value == "cosine" else
               _subtitled("Sign conflicts per layer", f"over each layer's entries non-zero in both tasks · red: more "
                          f"conflict than random signs (0.5) · blue: less · {rng}"))
    return _styled(fig, title or default, "layer (input → output)", "task pair", xaxis={"showgrid": False},
                   yaxis={"autorange": "reversed", "showgrid": False}, height=220 + 40 * len(grid))


def sign_disagreement(frames: pd.DataFrame | Mapping[str, pd.DataFrame],
                      title: str = "Entries where the tasks disagree in sign") -> go.Figure:
    """Per layer, the fraction of shared entries whose tasks do not all agree in sign (from
    `analysis.sign_disagreement`); pass {label: table} to compare, e.g. all entries vs each task's top 20 %."""
    frames = {"all entries": frames} if isinstance(frames, pd.DataFrame) else dict(frames)
    fig = go.Figure()
    for i, (label, frame) in enumerate(frames.items()):
        group = frame.columns[0]
        fig.add_bar(x=frame[group], y=frame.disagreement, name=label, marker_color=METHOD_COLORS[i % 6],
                    customdata=frame[["shared"]].to_numpy(),
                    hovertemplate=f"{label}<br>%{{x}}<br>disagreement: %{{y:.4f}}<br>"
                                  "entries active in ≥ 2 tasks: %{customdata[0]:.4f}<extra></extra>")
    group = frame.columns[0]
    note = "among the entries that two or more tasks use: the share where not all of them agree in sign"
    return _styled(fig, _subtitled(title, note), "layer (input → output)" if group == "layer" else group,
                   "fraction with mixed signs", barmode="group", yaxis={"range": [0, 1]})
