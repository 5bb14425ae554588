"""Figures for notebooks that read well everywhere: interactive in JupyterLab, a static PNG on GitHub and in
`jupyter nbconvert --to html`, which cannot run Plotly's own output type.

    from explorer.notebook import portable
    portable(ex.plots.cosine_map(cos))     # the last expression of a cell: both forms in one output
"""
from __future__ import annotations

import base64
import functools
import re
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDTH, HEIGHT = 1000, 550  # PNG size when the figure sets none (CSS pixels)


def check_browser() -> None:
    """Raise a RuntimeError saying how to install Chromium when kaleido cannot find it (kaleido 1.x draws PNGs
    in it)."""
    import kaleido
    from kaleido.errors import ChromeNotFoundError

    try:
        kaleido.Kaleido(mathjax=False)  # looks the browser up without starting it
    except ChromeNotFoundError as err:
        raise RuntimeError("static figures need Chromium: apt-get install chromium (or kaleido_get_chrome)") from err


@functools.cache
def _renderer() -> None:
    """Start kaleido's shared browser once per session, after checking it exists: a server whose browser is missing
    would wait forever instead of failing."""
    import kaleido

    check_browser()
    kaleido.start_sync_server(mathjax=False, silence_warnings=True)  # no MathJax: it would be fetched from a CDN


def png(fig: go.Figure, width: int | None = None, height: int | None = None, scale: float = 1.0) -> bytes:
    """The figure as PNG bytes, drawn by kaleido in the local Chromium with plotly.py's own plotly.js (offline).
    One browser serves every call of the session: the first figure takes a few seconds, later ones ~0.2 s."""
    import kaleido

    _renderer()
    opts = {"format": "png", "width": width or fig.layout.width or WIDTH,
            "height": height or fig.layout.height or HEIGHT, "scale": scale}
    return kaleido.calc_fig_sync(fig.to_dict(), opts=opts)


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
