"""Portable notebook figures: one output with the interactive figure, a PNG and a plain-text line."""
from __future__ import annotations

import base64
import shutil

import plotly.graph_objects as go
import pytest

from explorer.notebook import PLOTLY_MIME, PortableFigure, portable
from explorer.plots.static import check_browser

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figure() -> go.Figure:
    return go.Figure(go.Bar(x=["a", "b"], y=[1, 2]), layout={"title": {"text": "Bars<br><sup>a note</sup>"},
                                                            "width": 420, "height": 300})


def test_bundle_holds_the_figure_the_png_and_a_title():
    fig = _figure()
    bundle = PortableFigure(fig, b"not really a png")._repr_mimebundle_()
    assert set(bundle) == {PLOTLY_MIME, "image/png", "text/plain"}
    assert bundle[PLOTLY_MIME]["data"][0]["type"] == "bar"
    assert base64.b64decode(bundle["image/png"]) == b"not really a png"
    assert bundle["text/plain"] == "<Bars>"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="kaleido needs Chromium (apt-get install chromium)")
def test_png_is_drawn_at_the_figure_size():
    shown = portable(_figure())
    assert shown.png.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(shown.png[16:20], "big"), int.from_bytes(shown.png[20:24], "big")
    assert (width, height) == (420, 300)
    wide = portable(_figure(), width=600, height=200).png
    assert (int.from_bytes(wide[16:20], "big"), int.from_bytes(wide[20:24], "big")) == (600, 200)


def test_a_missing_browser_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    with pytest.raises(RuntimeError, match="apt-get install chromium"):
        check_browser()
