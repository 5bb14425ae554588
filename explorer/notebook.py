"""Figures for notebooks that read well everywhere: interactive in JupyterLab, a static PNG on GitHub and in
`jupyter nbconvert --to html`, which cannot run Plotly's own output type.

    from explorer.notebook import portable
    portable(ex.plots.cosine_map(cos))     # the last expression of a cell: both forms in one output
"""
from __future__ import annotations

import base64
import re
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from .plots.static import png

PLOTLY_MIME = "application/vnd.plotly.v1+json"


class PortableFigure:
    """A Plotly figure with its PNG: Jupyter shows the interactive figure where it can and the image elsewhere
    (GitHub, nbconvert HTML, untrusted notebooks). `.figure` is the Plotly figure, `.png` the image bytes."""

    def __init__(self, figure: go.Figure, png_bytes: bytes):
        self.figure, self.png = figure, png_bytes

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = pio.renderers["plotly_mimetype"].to_mimebundle(self.figure.to_dict())
        title = re.sub(r"<[^>]+>.*", "", self.figure.layout.title.text or "figure")  # the title without its note
        return {**bundle, "image/png": base64.b64encode(self.png).decode("ascii"), "text/plain": f"<{title}>"}


def portable(fig: go.Figure, width: int | None = None, height: int | None = None) -> PortableFigure:
    """`fig` with a static PNG beside it (size: `width` x `height`, else the figure's own, else 1000 x 550), for
    notebooks committed with their outputs."""
    return PortableFigure(fig, png(fig, width, height))
