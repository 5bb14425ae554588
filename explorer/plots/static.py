"""Static PNGs of figures (notebooks, PNG export), drawn offline by kaleido in one shared Chromium per process."""
from __future__ import annotations

import functools

import plotly.graph_objects as go

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
