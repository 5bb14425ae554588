"""Downloads: a run's merged weights (safetensors) with its JSON run record, its figures as HTML or PNG, and its
report (one offline HTML page: parameters, accuracy, figures, the commands that reproduce it)."""
from __future__ import annotations

import html
import zipfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from .. import report
from ..plots.static import png
from ..runs import save
from . import cache, views
from .handlers import find, result_of

FORMATS = ("html", "png")


def _stem(record: dict) -> str:
    return f"run{record['n']}-{record['method']}-{record['id'][:6]}"


def export_weights(state: dict, run_id: str | None, folder: str | Path) -> list[Path]:
    """Write the run's merged weights and its run record into `folder`; returns [weights, record]."""
    record = find(state, run_id or state["current"])
    path = Path(folder) / f"{_stem(record)}.safetensors"
    save(result_of(record), path, zoo=record["zoo"], inputs={"zoo": cache.fingerprint(record["zoo"])},
         scores=None if record["scores"] is None else pd.DataFrame(record["scores"]))
    return [path, path.with_suffix(".json")]


def run_and_zoo_figures(record: dict) -> dict[str, go.Figure]:
    """Every figure the dashboard shows for one run (those without content, e.g. masks of a mask-free
    method, are left out)."""
    scores = None if record["scores"] is None else pd.DataFrame(record["scores"])
    figures = {**views.run_figures(result_of(record), scores),
               **views.zoo_figures(record["zoo"], record["tasks"])}
    return {name: fig for name, fig in figures.items() if fig is not None}


def export_figures(state: dict, run_id: str | None, fmt: str, folder: str | Path) -> Path:
    """All figures of a run as one self-contained HTML page (plotly.js embedded, works offline) or a zip of
    PNGs (rendered by kaleido in the system Chromium, one browser for the process: `plots.static`)."""
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r} is not supported; use one of {FORMATS}")
    record = find(state, run_id or state["current"])
    figures = run_and_zoo_figures(record)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        path = folder / f"{_stem(record)}-figures.html"
        parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures.values())]
        label = html.escape(record["label"])  # a label names the user's zoo and parameters
        path.write_text(f"<html><head><meta charset='utf-8'><title>{label}</title></head><body>"
                        f"<h1>{label}</h1>{''.join(parts)}</body></html>")
        return path
    path = folder / f"{_stem(record)}-figures.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, fig in figures.items():
            archive.writestr(f"{name}.png", png(fig, scale=2))  # one shared browser for every figure
    return path


def run_report(record: dict) -> report.Report:
    """The report of one dashboard run: its parameters, its scores (on the images it was scored on), every figure
    the dashboard shows for it, and the `explorer merge` command that merges and scores it again."""
    scores = None if record["scores"] is None else pd.DataFrame(record["scores"])
    merge = report.merge_command(record["zoo"], record["method"], record["params"], record["tasks"],
                                 evaluate=scores is not None, limit=record["limit"])
    scored = ("—" if scores is None else "the full test split" if record["limit"] is None
              else f"the first {record['limit']} test images per task")
    facts = {"zoo": record["zoo"], "tasks": record["tasks"], "merge time (s)": f"{record['seconds']:.3f}",
             "scored on": scored, "run": record["label"]}
    missing = "; ".join(record.get("missing") or []) or "the run was not scored"
    return report.Report(f"Model Merging Explorer: run {record['label']}", record["method"], record["params"],
                         facts, scores, run_and_zoo_figures(record), report.commands(merge),
                         no_scores=f"zoo {record['zoo']!r} cannot evaluate ({missing})",
                         notes=["Open the dashboard with `explorer app`, or run the commands below."])


def export_report(state: dict, run_id: str | None, folder: str | Path) -> Path:
    """The run's report as one self-contained HTML file in `folder` (plotly.js inlined, nothing fetched)."""
    record = find(state, run_id or state["current"])
    return run_report(record).write(Path(folder) / f"{_stem(record)}-report.html")
