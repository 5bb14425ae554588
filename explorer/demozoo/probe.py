"""Probe a demo-zoo recipe before shipping it: the few figures that decide whether the test-time methods can work.

For a built zoo (or a recipe, built first into a folder) the probe measures, on the test split with every
lambda chosen on validation: the base's zero-shot and linear-probe accuracy per task (do the base's features
already separate each task's classes?), each expert, Task Arithmetic and TIES, how well low prediction entropy
picks out correct predictions of the TA merge (per-sample AUROC), the entropy-error correlation across TA
merges (AdaMerging's premise, as the card measures it) and layer-wise AdaMerging minus TA at a fixed step
count. `summarise` folds several build seeds of one recipe into mean and spread, so one lucky seed cannot
choose the shipped zoo.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ..analysis.calibration import entropy_error, pearson
from ..evaluate import evaluate
from ..inference import task_logits
from ..merging import merge
from ..methods.adaptive import softmax_entropy
from ..taskvec import TaskVectors, task_vectors
from ..tuning import select
from .backdoor import recipe_of
from .build import Recipe, build, features
from .data import generate
from .findings import ENTROPY_LAMBDAS, TA_GRID, TIES_DENSITY, TIES_GRID
from .zoo import DemoZoo

RECORDS = Path(__file__).resolve().parent / "probes.json"  # every recipe probed, shown in the zoo card
ADAMERGING_STEPS = 100  # the yardstick: what layer-wise AdaMerging gains over TA in 100 steps
# the averaged figures of a record, in the table's order
FIGURES = ("base", "linear_probe", "experts", "experts_min", "task_arithmetic", "ties", "adamerging_layer",
           "ties_gain", "adamerging_gain", "auroc", "premise_r")


def recipe_changes(recipe: Recipe) -> dict[str, Any]:
    """The fields in which `recipe` differs from the default Recipe (seeds excluded): a recipe's name in tables."""
    default = Recipe()
    return {f.name: getattr(recipe, f.name) for f in fields(Recipe)
            if f.name not in ("seed",) and getattr(recipe, f.name) != getattr(default, f.name)}


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """`["logit_scale=30", "pretrain_labels=fine"]` -> typed Recipe overrides; a ValueError names a bad entry."""
    types = {f.name: type(getattr(Recipe(), f.name)) for f in fields(Recipe)}
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in types or types[key] in (dict, tuple):
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{sorted(k for k, t in types.items() if t not in (dict, tuple))}")
        try:
            out[key] = types[key](value)
        except ValueError as err:
            raise ValueError(f"--set {item!r}: {value!r} is not a {types[key].__name__}") from err
    return out


def linear_probe(zoo: DemoZoo, task: str) -> float:
    """Test accuracy of a logistic regression on the base's normalised features of `task`'s train split."""
    encoder = zoo.build_model()
    encoder.load_state_dict(zoo.base_state_dict())
    split = zoo.config["split_sizes"]
    fit = [F.normalize(features(encoder, generate(task, s, split[s], zoo.config["data_seed"])[0]), dim=-1).numpy()
           for s in ("train", "test")]
    labels = [generate(task, s, split[s], zoo.config["data_seed"])[1].numpy() for s in ("train", "test")]
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(fit[0], labels[0])
    return float(clf.score(fit[1], labels[1]))


def low_entropy_auroc(entropy: np.ndarray, correct: np.ndarray) -> float:
    """P(a correct prediction has lower entropy than a wrong one): 1 = entropy tells them apart, 0.5 = chance;
    NaN when every prediction is right or every one is wrong."""
    correct = np.asarray(correct, bool)
    if correct.all() or not correct.any():
        return float("nan")
    return float(roc_auc_score(correct, -np.asarray(entropy, float)))


def entropy_auroc(zoo: DemoZoo, weights: dict, tasks: list[str]) -> tuple[float, float]:
    """(pooled over tasks, mean within task) `low_entropy_auroc` on the test images of `weights`' model."""
    ents, right = [], []
    for task in tasks:
        logits, labels = task_logits(zoo, weights, task, "test")
        ents.append(softmax_entropy(logits).numpy())
        right.append((logits.argmax(-1) == labels).numpy())
    within = [low_entropy_auroc(e, ok) for e, ok in zip(ents, right)]
    return low_entropy_auroc(np.concatenate(ents), np.concatenate(right)), float(np.nanmean(within))


def measure(zoo: DemoZoo, tv: TaskVectors | None = None, adamerging_steps: int = ADAMERGING_STEPS) -> dict:
    """Every figure of a probe on a built zoo (accuracies in %, per task and averaged)."""
    tv = tv if tv is not None else task_vectors(zoo)
    ta = select(tv, "task_arithmetic", {"scale": TA_GRID}, zoo=zoo)
    ties = select(tv, "ties", {"scale": TIES_GRID}, zoo=zoo, density=TIES_DENSITY, aggregate="sum")
    ada = evaluate(zoo, merge(tv, "adamerging", zoo=zoo, granularity="layer", steps=adamerging_steps))
    table = ta.scores.table
    per_task = {"base": dict(zip(table["task"], 100 * table["base"])),
                "experts": dict(zip(table["task"], 100 * table["expert"])),
                "linear_probe": {t: 100 * linear_probe(zoo, t) for t in zoo.tasks},
                "task_arithmetic": dict(zip(table["task"], 100 * table["merged"])),
                "ties": dict(zip(ties.scores.table["task"], 100 * ties.scores.table["merged"])),
                "adamerging_layer": dict(zip(ada.table["task"], 100 * ada.table["merged"]))}
    mean = {k: float(np.mean(list(v.values()))) for k, v in per_task.items()}
    pooled, within = entropy_auroc(zoo, ta.result.state_dict(), zoo.tasks)
    mean |= {"experts_min": min(per_task["experts"].values()),
             "ties_gain": mean["ties"] - mean["task_arithmetic"],
             "adamerging_gain": mean["adamerging_layer"] - mean["task_arithmetic"],
             "auroc": pooled, "auroc_within_task": within,
             "premise_r": pearson(entropy_error(zoo, tv, ENTROPY_LAMBDAS)),
             "ta_normalized": 100 * float(ta.scores.mean["normalized"])}
    return {"mean": mean, "per_task": {k: {t: round(v, 1) for t, v in d.items()} for k, d in per_task.items()},
            "chosen": {"task_arithmetic": ta.params["scale"], "ties": dict(scale=ties.params["scale"],
                                                                         aggregate=ties.params["aggregate"])},
            "adamerging_steps": adamerging_steps}


def probe(recipe: Recipe, folder: str | Path, name: str = "", build_zoo: bool = True,
          adamerging_steps: int = ADAMERGING_STEPS, log: Callable[[str], None] | None = None) -> dict:
    """Build `recipe` into `folder` (unless `build_zoo` is False and a zoo is already there), then measure it;
    returns the record `record()` stores."""
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    if build_zoo:
        build(folder, recipe, log=say)
    zoo = DemoZoo(folder)
    built = recipe_of(zoo)
    figures = measure(zoo, adamerging_steps=adamerging_steps)
    return {"name": name or ", ".join(f"{k}={v}" for k, v in recipe_changes(built).items()) or "default",
            "changes": recipe_changes(built), "seed": built.seed, "recipe": asdict(built),
            "build_minutes": round(zoo.config["build_seconds"]["total"] / 60, 1),
            "probe_minutes": round((time.perf_counter() - start) / 60, 1), "torch_threads": torch.get_num_threads(),
            **figures}


def load_records(path: str | Path | None = None) -> list[dict]:
    """The stored probe records (default `RECORDS`; an empty list when there are none yet)."""
    path = Path(path if path is not None else RECORDS)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a list of probe records")
    return data


def record(entry: dict, path: str | Path | None = None) -> None:
    """Store a probe record (default in `RECORDS`), replacing an earlier one of the same name and seed."""
    path = Path(path if path is not None else RECORDS)
    rows = [r for r in load_records(path) if (r["name"], r["seed"]) != (entry["name"], entry["seed"])]
    path.write_text(json.dumps(rows + [entry], indent=1) + "\n")


def summarise(records: list[dict]) -> list[dict]:
    """One row per recipe name: the seeds probed and, per figure, the mean and the spread (max - min)."""
    names = list(dict.fromkeys(r["name"] for r in records))
    rows = []
    for name in names:
        runs = [r for r in records if r["name"] == name]
        values = {k: [r["mean"][k] for r in runs] for k in FIGURES}
        rows.append({"name": name, "seeds": sorted(r["seed"] for r in runs),
                     "build_minutes": float(np.mean([r["build_minutes"] for r in runs])),
                     "mean": {k: float(np.mean(v)) for k, v in values.items()},
                     "spread": {k: float(np.max(v) - np.min(v)) for k, v in values.items()}})
    return rows


def table(records: list[dict]) -> str:
    """The markdown table of every recipe probed (mean over its seeds, with the spread when there are several)."""
    head = ["recipe", "seeds", "build min", "base", "linear probe", "experts", "weakest expert", "TA", "TIES",
            "AdaMerging", "TIES - TA", "AdaMerging - TA", "AUROC", "premise r"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summarise(records):
        cells = []
        for k in FIGURES:
            digits = 2 if k in ("auroc", "premise_r") else 1
            cell = f"{row['mean'][k]:.{digits}f}"
            if len(row["seeds"]) > 1:
                cell += f" ±{row['spread'][k] / 2:.{digits}f}"
            cells.append(cell)
        seeds = ", ".join(map(str, row["seeds"]))
        lines.append(f"| {row['name']} | {seeds} | {row['build_minutes']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
