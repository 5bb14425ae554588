"""The teaching notebooks are committed executed, and their outputs read well outside JupyterLab: every Plotly
figure carries a PNG (GitHub and nbconvert HTML cannot run Plotly), and no output is a warning or an error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TEACHING = ["01_quickstart.ipynb", "02_sparsify.ipynb", "03_localize.ipynb", "04_layers_and_adaptive.ipynb",
            "05_data_statistics.ipynb", "06_test_time.ipynb", "07_security.ipynb", "08_subspace.ipynb"]
PLOTLY = "application/vnd.plotly.v1+json"


def _code_cells(name: str) -> list[dict]:
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code"]


def _text(output: dict) -> str:
    text = output.get("text", output.get("data", {}).get("text/plain", ""))
    return "".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("name", TEACHING)
def test_committed_with_outputs_in_order(name):
    cells = _code_cells(name)
    assert all(c["outputs"] for c in cells), "every code cell of a teaching notebook shows something"
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), "re-execute the whole notebook from the top, then commit"


@pytest.mark.parametrize("name", TEACHING)
def test_every_figure_has_a_png_and_nothing_warns(name):
    outputs = [o for c in _code_cells(name) for o in c["outputs"]]
    figures = [o for o in outputs if PLOTLY in o.get("data", {})]
    assert figures, "each teaching notebook draws figures"
    assert all("image/png" in o["data"] for o in figures), "wrap figures in explorer.notebook.portable(...)"
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings or logs on stderr"
    assert not [o for o in outputs if "Warning" in _text(o)]
