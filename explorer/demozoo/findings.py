"""The findings of the merging papers, checked on a zoo: each published ordering or threshold, its source,
the published numbers and the zoo's, and whether it holds. Every hyper-parameter is chosen on the
validation split; every reported number is on the test split."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..analysis.calibration import entropy_error, pearson
from ..evaluate import evaluate
from ..merging import merge
from ..taskvec import TaskVectors
from ..tuning import Selection, select

TA_GRID = [round(0.1 * i, 1) for i in range(1, 11)]  # TALL/LiNeS grid for task arithmetic
TIES_GRID = [round(0.1 * i, 1) for i in range(1, 16)]  # LiNeS grid for TIES
TIES_DENSITY = 0.2
LINES_BETA = [round(0.1 * i, 1) for i in range(0, 16)]
ENTROPY_LAMBDAS = [round(0.1 * i, 1) for i in range(0, 11)]
PREMISE_MIN = 0.5  # the Pearson correlation the entropy-error premise needs


@dataclass
class Finding:
    """One published finding: what it says, where, the published and measured numbers, and whether it holds."""

    claim: str
    source: str
    published: str
    measured: str
    holds: bool


@dataclass
class Evidence:
    """What the findings are computed from: test-split average accuracy (%) of every merge, the selections,
    and the entropy-error sweep."""

    accuracy: dict[str, float]
    normalized: dict[str, float]
    selections: dict[str, Selection]
    entropy: pd.DataFrame


def _pct(x: float) -> float:
    return 100.0 * float(x)


def gather(zoo: Any, tv: TaskVectors, device: str = "auto") -> Evidence:
    """Run every merge the findings need: grid searches on validation, the learned merges at their declared
    defaults, and the entropy-error sweep of task arithmetic on the test split."""
    sel = {"task_arithmetic": select(tv, "task_arithmetic", {"scale": TA_GRID}, zoo=zoo, device=device),
           "ties": select(tv, "ties", {"aggregate": ["mean", "sum"], "scale": TIES_GRID}, zoo=zoo, device=device,
                          density=TIES_DENSITY),
           "consensus": select(tv, "consensus", {"scale": TA_GRID}, zoo=zoo, device=device, k=2),
           "lines": select(tv, "lines", {"beta": LINES_BETA}, zoo=zoo, device=device, base="task_arithmetic")}
    learned = {"tall_masks": merge(tv, "tall_masks", zoo=zoo), "emr": merge(tv, "emr"),
               "adamerging_layer": merge(tv, "adamerging", zoo=zoo, granularity="layer"),
               "adamerging_task": merge(tv, "adamerging", zoo=zoo, granularity="task"),
               "atlas": merge(tv, "atlas", zoo=zoo)}
    scores = {name: s.scores for name, s in sel.items()}
    scores |= {name: evaluate(zoo, r, device=device) for name, r in learned.items()}
    base = next(iter(scores.values())).mean
    accuracy = {"base": _pct(base["base"]), "experts": _pct(base["expert"])}
    accuracy |= {name: _pct(s.mean["merged"]) for name, s in scores.items()}
    normalized = {name: _pct(s.mean["normalized"]) for name, s in scores.items()}
    return Evidence(accuracy, normalized, sel, entropy_error(zoo, tv, ENTROPY_LAMBDAS))


def findings(ev: Evidence, experts: pd.Series) -> list[Finding]:
    """The findings table from the evidence; `experts` holds each expert's test accuracy (fraction)."""
    a, n = ev.accuracy, ev.normalized
    ta, r = a["task_arithmetic"], pearson(ev.entropy)
    f = lambda x: f"{x:.1f}"  # noqa: E731
    return [
        Finding("prediction entropy rises with error (the premise of AdaMerging)", "AdaMerging, Fig. 2",
                "strong positive correlation", f"Pearson r = {r:.2f} over TA lambda 0..1 x tasks",
                bool(r >= PREMISE_MIN)),
        Finding("layer-wise AdaMerging beats Task Arithmetic by >= 3 points", "AdaMerging, Table 2",
                "80.2 vs 69.0", f"{f(a['adamerging_layer'])} vs {f(ta)}", a["adamerging_layer"] >= ta + 3),
        Finding("task-wise AdaMerging beats Task Arithmetic", "AdaMerging, Table 2", "71.1 vs 69.0",
                f"{f(a['adamerging_task'])} vs {f(ta)}", a["adamerging_task"] >= ta),
        Finding("TIES beats Task Arithmetic", "TIES-Merging, Table 1", "72.9 vs 69.0",
                f"{f(a['ties'])} vs {f(ta)}", a["ties"] >= ta),
        Finding("Consensus (k = 2) beats Task Arithmetic", "TALL masks & Consensus, Table 3", "73.6 vs 69.1",
                f"{f(a['consensus'])} vs {f(ta)}", a["consensus"] >= ta),
        Finding("LiNeS on Task Arithmetic beats Task Arithmetic", "LiNeS, Table 3",
                "improves TA (ViT-B/32 value not verified)",
                f"{f(a['lines'])} vs {f(ta)}", a["lines"] >= ta),
        Finding("TALL masks keep >= 95 % normalized accuracy", "TALL masks, abstract", "> 99 % normalized",
                f"{f(n['tall_masks'])} % normalized", n["tall_masks"] >= 95),
        Finding("EMR keeps >= 90 % normalized accuracy", "EMR-Merging, Table 2", "88.7 vs experts 90.5 (98 %)",
                f"{f(a['emr'])} avg ({f(n['emr'])} % normalized)", n["emr"] >= 90),
        Finding("aTLAS beats layer-wise AdaMerging", "aTLAS, task addition",
                "higher than AdaMerging (value not verified)",
                f"{f(a['atlas'])} vs {f(a['adamerging_layer'])}", a["atlas"] >= a["adamerging_layer"]),
        Finding("Task Arithmetic keeps 65-90 % normalized accuracy", "Task Arithmetic, Table 3",
                "69.0 / 90.5 = 76 %",
                f"{f(n['task_arithmetic'])} %", 65 <= n["task_arithmetic"] <= 90),
        Finding("the base is >= 25 points below the experts", "Task Arithmetic / AdaMerging tables", "48.1 vs 90.5",
                f"{f(a['base'])} vs {f(a['experts'])}", a["experts"] - a["base"] >= 25),
        Finding("every expert reaches >= 85 %", "(our bar: experts clearly trained)", "min 75.3 (SUN397)",
                f"min {f(_pct(experts.min()))}", bool(experts.min() >= 0.85)),
    ]
