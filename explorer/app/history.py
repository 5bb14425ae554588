"""The session's run history: a table of runs, pinning, and a side-by-side comparison of two runs."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import plots as P
from .handlers import MAX_PINNED, find

COLUMNS = ["run", "pinned", "zoo", "experts", "images/task", "mean acc %", "normalized %", "seconds"]


def history_table(state: dict) -> pd.DataFrame:
    """One row per run of this session, newest first."""
    rows = [(r["label"], "📌" if r["pinned"] else "", r["zoo"], len(r["tasks"]),
             "-" if r["scores"] is None else "all" if r["limit"] is None else r["limit"], _pct(r["mean_merged"]),
             _pct(r["mean_normalized"]), round(r["seconds"], 2)) for r in reversed(state["runs"])]
    return pd.DataFrame(rows, columns=COLUMNS)


def _pct(value: float | None) -> float | str:
    return "-" if value is None else round(100 * value, 1)  # "-": the zoo cannot evaluate


def run_labels(state: dict) -> list[str]:
    """The labels of this session's runs, newest first (the choices of the run pickers)."""
    return [r["label"] for r in reversed(state["runs"])]


def toggle_pin(state: dict, run_id: str) -> dict:
    """Pin a run (it stays in the history) or unpin it; at most MAX_PINNED runs are pinned at once."""
    record = find(state, run_id)
    if not record["pinned"] and sum(r["pinned"] for r in state["runs"]) >= MAX_PINNED:
        raise ValueError(f"At most {MAX_PINNED} runs can be pinned: unpin one first (the history is capped so a "
                         "session's memory stays bounded).")
    runs = [{**r, "pinned": not r["pinned"]} if r["id"] == record["id"] else r for r in state["runs"]]
    return {**state, "runs": runs}


def compare(state: dict, run_a: str, run_b: str) -> tuple[go.Figure, pd.DataFrame]:
    """Two runs side by side: grouped accuracy bars and a per-task table of both and their difference (in %)."""
    a, b = find(state, run_a), find(state, run_b)
    if a["id"] == b["id"]:
        raise ValueError("Pick two different runs to compare.")
    unscored = [r["label"] for r in (a, b) if r["scores"] is None]
    if unscored:
        raise ValueError(f"Run(s) {', '.join(unscored)} have no accuracy (their zoo cannot evaluate: see the Accuracy "
                         "tab), so there is nothing to compare; their weight-space views are in the other tabs.")
    names = short_labels(a, b)
    frames = [pd.DataFrame(r["scores"]).assign(method=name) for r, name in zip((a, b), names)]
    common = [t for t in frames[0].task if t in set(frames[1].task)]
    if not common:
        raise ValueError(f"Runs {a['label']} and {b['label']} share no task, so there is nothing to compare.")
    both = pd.concat([f[f.task.isin(common)] for f in frames], ignore_index=True)
    note = "" if a["limit"] == b["limit"] else " (scored on different numbers of test images)"
    figure = P.accuracy_bars(both, title=f"A = {names[0]} vs B = {names[1]}{note}")
    left, right = (f.set_index("task").loc[common, "merged"] for f in frames)
    left, right = (pd.concat([s, pd.Series({"mean": s.mean()})]) for s in (left, right))
    return figure, compare_frame(left, right)


def short_labels(a: dict, b: dict) -> tuple[str, str]:
    """Names for two runs that show only what tells them apart: the parameters whose values differ (same
    method), or just number and method (different methods)."""
    if a["method"] != b["method"]:
        return f"#{a['n']} {a['method']}", f"#{b['n']} {b['method']}"
    differ = [k for k in a["params"] if a["params"][k] != b["params"].get(k)]

    def name(r: dict) -> str:
        shown = ", ".join(f"{k}={r['params'][k]:g}" if isinstance(r["params"][k], float) else f"{k}={r['params'][k]}"
                          for k in differ)
        return f"#{r['n']} {r['method']}({shown})"
    return name(a), name(b)


def compare_frame(a: pd.Series | None = None, b: pd.Series | None = None) -> pd.DataFrame:
    """Per task (index), the merged accuracy of runs A and B and their difference, in % (empty without runs)."""
    a = pd.Series(dtype=float) if a is None else a
    b = pd.Series(dtype=float) if b is None else b
    return pd.DataFrame({"task": list(a.index), "A %": [f"{100 * v:.1f}" for v in a],
                         "B %": [f"{100 * v:.1f}" for v in b], "B − A": [f"{100 * v:+.1f}" for v in b - a]})
