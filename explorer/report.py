"""One self-contained HTML report of a merge run: its parameters, per-task accuracy against base and experts, every
figure as interactive Plotly (plotly.js inlined once, nothing fetched) and the commands that reproduce it."""
from __future__ import annotations

import html
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from . import figure_catalog as F
from .evaluate import COLUMNS, percent
from .result import MergeResult

SECTION = {f.name: f.section for f in F.FIGURES}
STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}"
         "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}pre{background:#f4f4f4;padding:.8em;"
         "white-space:pre-wrap}.note{color:#555}")


def figures(result: MergeResult, scores: pd.DataFrame | None) -> dict[str, go.Figure]:
    """Every figure the dashboard draws for this merge and its task vectors (the accuracy ones only with `scores`),
    leaving out those that do not apply (masks of a mask-free method)."""
    inputs = F.Inputs(result.tv, merge=lambda _: result, scores=lambda _: scores)
    chosen = [f for f in F.select(dashboard=True) if scores is not None or f.section != "accuracy"]
    return {name: made.figure for name, made in F.make(chosen, inputs).items() if made is not None}


def _arg(value: Any) -> str:
    """A parameter value as `-p NAME=VALUE` writes it, so the CLI parses back the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def merge_command(zoo: str, method: str, params: dict[str, Any], tasks: list[str], *, evaluate: bool = False,
                  limit: int | None = None, experts: str | None = None, stream: bool = False,
                  out: str = "merged.safetensors") -> str:
    """The `explorer merge` command line that merges `tasks` of `zoo` with `method` and `params` again (quoted)."""
    argv = ["explorer", "merge", "--zoo", zoo, "--method", method]
    for name, value in params.items():
        argv += ["-p", f"{name}={_arg(value)}"]
    argv += ["--tasks", ",".join(tasks)] + (["--experts", experts] if experts else [])
    argv += (["--eval"] if evaluate else []) + (["--limit", str(limit)] if evaluate and limit is not None else [])
    argv += (["--stream", "on"] if stream else []) + ["--out", out]
    return shlex.join(argv)


def commands(merge: str, out: str = "merged.safetensors") -> list[str]:
    """The merge command, then the `explorer report` that writes this page from the record it leaves beside `out`."""
    return [merge, shlex.join(["explorer", "report", str(Path(out).with_suffix(".json")), "-o", "report.html"])]


def _table(frame: pd.DataFrame) -> str:
    """A table as HTML with every cell escaped (task names and zoo paths are the user's)."""
    return frame.to_html(index=False, escape=True, na_rep="—", border=0)


def accuracy_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-task accuracy in % (base, expert, merged, normalized; attack success where a task has a trigger), with
    the mean over tasks as the last row."""
    numeric = [c for c in scores.columns if c in COLUMNS[1:] or c.startswith("attack")]
    frame = pd.concat([scores, pd.DataFrame([{"task": "mean", **scores[numeric].mean().to_dict()}])],
                      ignore_index=True)
    if "method" in frame.columns:
        frame["method"] = frame["method"].fillna("")
    attack = [c for c in numeric if c.startswith("attack")]
    return percent(frame).assign(**{c: ["—" if pd.isna(v) else f"{100 * v:.1f}" for v in frame[c]] for c in attack})


@dataclass
class Report:
    """What a report page shows. Every string is HTML-escaped when the page is written, so labels may hold
    anything; `no_scores` says why there is no accuracy table when `scores` is None."""

    title: str
    method: str
    params: dict[str, Any]
    facts: dict[str, Any]
    scores: pd.DataFrame | None
    figures: dict[str, go.Figure]
    commands: list[str]
    no_scores: str = ""
    attack: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def _parameters(self) -> str:
        rows = pd.DataFrame([{"": "method", "value": self.method},
                             *({"": k, "value": _arg(v)} for k, v in self.params.items()),
                             *({"": k, "value": ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)}
                               for k, v in self.facts.items())])
        return f"<h2>Parameters</h2>{_table(rows)}"

    def _accuracy(self) -> str:
        if self.scores is None:
            return f"<h2>Accuracy</h2><p class='note'>No accuracy table: {html.escape(self.no_scores)}</p>"
        out = f"<h2>Accuracy per task (%)</h2>{_table(accuracy_table(self.scores))}"
        if self.attack is not None:
            out += f"<h3>Attack success rate (%)</h3>{_table(percent(self.attack))}"
        return out

    def _figures(self) -> str:
        parts = [f"<h2>Figures ({len(self.figures)})</h2>"]
        for i, (name, fig) in enumerate(self.figures.items()):
            parts.append(f"<h3>{html.escape(SECTION.get(name, 'run'))}: {html.escape(name)}</h3>")
            parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0))
        return "\n".join(parts)

    def html(self) -> str:
        """The page: parameters, accuracy, figures and the commands that reproduce the run."""
        title = html.escape(self.title)
        notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in self.notes)
        reproduce = html.escape("\n".join(self.commands))
        return "\n".join([
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>",
            f"<body><h1>{title}</h1>{notes}", self._parameters(), self._accuracy(), self._figures(),
            f"<h2>Reproduce</h2><pre id='reproduce'>{reproduce}</pre>", "</body></html>"])

    def write(self, path: str | Path) -> Path:
        """Write the page to `path` (its folder is made); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path
