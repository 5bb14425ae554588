"""The Export tab's report: one offline page of the current run, with its command and its figures."""
from __future__ import annotations

import re

from explorer.app import export, handlers, ui

from .conftest import ZOO


def test_report_of_the_current_run(zoo, tmp_path):
    state, _ = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "ties", {"density": 0.2}, limit=8)
    path = export.export_report(state, None, tmp_path)
    page = path.read_text()
    figures = export.run_and_zoo_figures(handlers.find(state, state["current"]))
    assert path.name.endswith("-report.html") and page.count('class="plotly-graph-div"') == len(figures) == 13
    assert page.count("* plotly.js v") == 1 and not re.search(r"<script[^>]*\bsrc=", page)
    assert "<td>density</td>" in page and "the first 8 test images per task" in page
    assert f"explorer merge --zoo {ZOO} --method ties -p density=0.2" in page and "--eval --limit 8" in page
    status, file = ui.on_export_report(state)
    assert file.endswith("-report.html") and "opens offline" in status
