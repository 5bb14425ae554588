"""Sweeps: every merge + evaluation of a grid of one method's parameters, on an engine (`explorer.engines`).

The one core under `explorer sweep`, the dashboard's lambda sweep (`analysis.lambda_sweep`), `entropy_error` and
`select`: the grid is checked against the method's declared parameters (`Param` ranges), each grid point is one
trial (merge, then score every task), and the engine runs the trials here, in local processes or on Ray.
"""
from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from . import engines, quick
from .evaluate import COLUMNS, evaluate
from .merging import merge
from .methods import registry
from .result import MergeResult
from .taskvec import TaskVectors

Score = Callable[[Any, MergeResult, str, "list[str]", "int | None", "str | torch.device"], pd.DataFrame]


def accuracy(zoo: Any, result: MergeResult, split: str, tasks: list[str], limit: int | None,
             device: str | torch.device) -> pd.DataFrame:
    """The default score of a trial: `task, base, expert, merged, normalized` (fractions), as `evaluate` gives."""
    return evaluate(zoo, result, split, tasks, limit, device).table[COLUMNS]


def parse_values(param: registry.Param, text: str) -> list:
    """The values one `-p NAME=SPEC` gives `param`: `start:stop:step` (numbers, stop included) or `a,b,c`, each
    checked against the declared range or choices."""
    text = text.strip()
    if ":" not in text:
        values = [param.parse(v) for v in text.split(",") if v.strip()]
        if not values:
            raise ValueError(f"parameter {param.name!r}: no value given; write e.g. {param.name}={param.default}")
        return values
    if param.type not in (int, float):
        raise ValueError(f"parameter {param.name!r} is a {param.type.__name__}: list its values with commas "
                         f"(allowed {param.describe_range()}), start:stop:step is for numbers")
    parts = text.split(":")
    try:
        start, stop, step = (float(p) for p in parts) if len(parts) == 3 else (None,) * 3
    except ValueError:
        start = None
    if start is None or not all(math.isfinite(v) for v in (start, stop, step)):
        raise ValueError(f"parameter {param.name!r}: {text!r} is not start:stop:step; write e.g. "
                         f"{param.name}=0.1:0.5:0.1 (stop included) or a list {param.name}=0.1,0.3")
    if step <= 0 or stop < start:
        raise ValueError(f"parameter {param.name!r}: {text!r} needs start <= stop and a positive step, "
                         f"e.g. {param.name}=0.1:0.5:0.1")
    count = math.floor((stop - start) / step + 1e-9) + 1  # stop included when it lies on the grid
    if count > 10_000:
        raise ValueError(f"parameter {param.name!r}: {text!r} gives {count} values; use a larger step")
    return [param.validate(param.type(round(start + i * step, 12))) for i in range(count)]


def parse_grid(method: str, pairs: Sequence[str]) -> dict[str, list]:
    """`["density=0.1:0.5:0.1", "scale=0.3,0.6"]` -> {name: [values]} for `method`'s declared parameters."""
    m, grid = registry.get(method), {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"-p {pair!r}: write NAME=VALUES, e.g. -p density=0.1:0.5:0.1 or -p scale=0.3,0.6")
        if name.strip() in grid:
            raise ValueError(f"-p {name.strip()} is given twice; put all its values in one -p")
        grid[name.strip()] = parse_values(m.param(name.strip()), text)
    return grid


def grid_points(method: str, grid: Mapping[str, Sequence], fixed: Mapping[str, Any] | None = None,
                reserved: Sequence[str] = ()) -> list[dict]:
    """Every combination of the grid's values, in grid order (the last parameter varies fastest), each checked
    with the fixed parameters against the method's declaration; `reserved` names cannot be swept (table columns).
    Quick mode keeps three values per parameter (`quick.thin`)."""
    m, fixed = registry.get(method), dict(fixed or {})
    if not grid or any(isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not len(v)
                       for v in grid.values()):
        raise ValueError(f"grid must map each parameter to a non-empty list of values, got {dict(grid)!r}")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ValueError(f"{both} are swept and fixed at once; give their values in the grid only")
    clash = sorted(set(grid) & set(reserved))
    if clash:
        raise ValueError(f"cannot sweep {clash}: the name is also a column of the results; fix it instead")
    points = [dict(zip(grid, values)) for values in itertools.product(*map(quick.thin, grid.values()))]
    return [{name: m.resolve({**fixed, **point})[name] for name in grid} for point in points]


@dataclass(frozen=True)
class Trials:
    """What every trial shares (sent once to each worker): task vectors, zoo, method, fixed params, how to score."""

    tv: TaskVectors
    zoo: Any
    method: str
    fixed: dict
    split: str
    tasks: list[str]
    limit: int | None
    device: str
    score: Score


def run_trial(trials: Trials, point: dict) -> list[dict]:
    """One grid point: merge with `point` (+ the fixed params), score each task; rows of point + score columns."""
    result = merge(trials.tv, trials.method, zoo=trials.zoo, **trials.fixed, **point)
    frame = trials.score(trials.zoo, result, trials.split, trials.tasks, trials.limit, trials.device)
    return [{**point, **row} for row in frame.to_dict("records")]


@dataclass
class Sweep:
    """A finished sweep: `table` has one row per grid point and task (the swept parameters, then the score columns,
    e.g. `task, base, expert, merged, normalized`); `summary()` averages over tasks; `best()` is the top point."""

    method: str
    params: list[str]
    table: pd.DataFrame
    split: str
    fixed: dict = field(default_factory=dict)
    engine: str = "serial"
    seconds: float = 0.0

    def summary(self) -> pd.DataFrame:
        """One row per grid point (grid order): the swept parameters and the mean of each score over tasks."""
        scores = [c for c in self.table.columns if c not in (*self.params, "task")]
        return self.table.groupby(self.params, sort=False, dropna=False)[scores].mean().reset_index()

    def best(self, by: str = "normalized") -> dict:
        """The swept parameters of the grid point with the highest mean `by` (the first on ties)."""
        summary = self.summary()
        if by not in summary.columns:
            scored = [c for c in summary.columns if c not in self.params]
            raise ValueError(f"best(by={by!r}): this sweep scored {scored}")
        return {k: _plain(v) for k, v in summary.loc[summary[by].idxmax(), self.params].items()}

    def save(self, path: str | Path) -> Path:
        """The table as CSV (`.csv`) or, with the method, split, fixed params, best point and timing, as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            self.table.to_csv(path, index=False)
        elif path.suffix == ".json":
            record = {"method": self.method, "split": self.split, "params": self.params, "fixed": self.fixed,
                      "engine": self.engine, "seconds": self.seconds, "best": self.best(),
                      "table": self.table.to_dict("records")}
            path.write_text(json.dumps(record, indent=1, default=_plain) + "\n", encoding="utf-8")
        else:
            raise ValueError(f"{path}: write a sweep as .csv or .json")
        return path


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, for JSON and for merge() parameters."""
    return value.item() if hasattr(value, "item") else value


def sweep(tv: TaskVectors, method: str, grid: Mapping[str, Sequence], *, zoo: Any = None, split: str = "validation",
          tasks: list[str] | None = None, limit: int | None = None, engine: str = "local", workers: int | None = None,
          address: str | None = None, device: str | torch.device = "auto", score: Score = accuracy,
          **fixed: Any) -> Sweep:
    """Merge and score every point of `grid` ({param: [values]}) of `method`, `fixed` params passed to each merge.

    `engine`: "local" (default; a process per core, `workers` caps them), "serial" (this process) or "ray"
    (`address` "auto" / "ray://host:port"; default the running or a new local instance). Every engine gives the same
    table. `score(zoo, result, split, tasks, limit, device)` gives one row per task (default: `accuracy`)."""
    zoo = zoo if zoo is not None else tv.zoo
    if zoo is None:
        raise ValueError("a sweep evaluates every merge, so it needs a zoo: pass zoo=..., or build the task vectors "
                         "with ex.task_vectors(zoo)")
    tasks = list(tasks or tv.tasks)
    zoo.check_evaluable(tasks, split)
    points = grid_points(method, grid, fixed, reserved=("task", *COLUMNS))
    trials = Trials(tv, zoo, method, dict(fixed), split, tasks, limit, str(device), score)
    start = time.perf_counter()
    rows = engines.run(run_trial, trials, points, engine, workers, address)
    table = pd.DataFrame([row for trial in rows for row in trial])
    return Sweep(method, list(grid), table, split, dict(fixed), engine, time.perf_counter() - start)
