"""Per-task accuracy of merges: several results side by side, a sweep over one parameter (lambda), and the
two-task interpolation grid theta_0 + lambda_a tau_a + lambda_b tau_b. Each runs ex.merge + ex.evaluate."""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import pandas as pd

from .. import quick
from ..evaluate import evaluate
from ..merging import merge
from ..result import MergeResult
from ..sweep import sweep
from ..taskvec import TaskVectors

SCORE_COLUMNS = ["task", "base", "expert", "merged", "normalized"]


def _scores(zoo: Any, result: MergeResult, split: str, tasks: list[str] | None, limit: int | None) -> pd.DataFrame:
    return evaluate(zoo, result, split=split, tasks=tasks, limit=limit).table[SCORE_COLUMNS]


def compare(zoo: Any, results: Mapping[str, MergeResult], *, split: str = "test", tasks: list[str] | None = None,
            limit: int | None = None) -> pd.DataFrame:
    """Per-task accuracy of several merges: `method, task, base, expert, merged, normalized` (fractions; normalized
    = merged / expert), one block of rows per entry of `results`, labelled by its key."""
    if not results:
        raise ValueError("compare() needs at least one result, e.g. {'ties': ex.merge(tv, 'ties')}")
    frames = [_scores(zoo, res, split, tasks, limit).assign(method=label) for label, res in results.items()]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["method", *SCORE_COLUMNS]]


def lambda_sweep(zoo: Any, tv: TaskVectors, values: Sequence[float], *, method: str = "task_arithmetic",
                 param: str = "scale", split: str = "test", tasks: list[str] | None = None, limit: int | None = None,
                 engine: str = "serial", **params: Any) -> pd.DataFrame:
    """Accuracy per task as one parameter (default: task arithmetic's lambda, `scale`) varies: `value, task, base,
    expert, merged, normalized`. Other method parameters are passed in `params`; a one-parameter `explorer.sweep`
    run on `engine` (default: this process)."""
    if not len(values):
        raise ValueError("lambda_sweep() needs at least one value, e.g. values=[0.1, 0.2, 0.3]")
    if param in params:
        raise ValueError(f"{param!r} is the swept parameter; give its values in `values`, not as a keyword")
    done = sweep(tv, method, {param: list(values)}, zoo=zoo, split=split, tasks=tasks, limit=limit, engine=engine,
                 **params)
    frame = done.table.rename(columns={param: "value"}).astype({"value": float})[["value", *SCORE_COLUMNS]]
    frame.attrs.update(method=method, param=param)
    return frame


def interpolation_grid(zoo: Any, tv: TaskVectors, task_a: str, task_b: str, values_a: Sequence[float],
                       values_b: Sequence[float] | None = None, *, split: str = "test",
                       limit: int | None = None) -> pd.DataFrame:
    """Accuracy on tasks a and b of theta_0 + lambda_a tau_a + lambda_b tau_b over a grid:
    `lambda_a, lambda_b, task, merged, normalized` (task is task_a or task_b)."""
    if task_a == task_b:
        raise ValueError(f"interpolation_grid() needs two different tasks, got {task_a!r} twice")
    pair = tv.subset([task_a, task_b])  # raises a KeyError naming the known tasks for unknown ones
    values_b = values_a if values_b is None else values_b
    frames = []
    for la, lb in itertools.product(quick.thin(values_a), quick.thin(values_b)):  # 3 x 3 in quick mode
        delta = {n: la * d[0] + lb * d[1] for n, d in pair.items()}  # [2, ...] -> [...]
        result = MergeResult(pair, delta, method="interpolation", params={"lambda_a": la, "lambda_b": lb})
        scores = _scores(zoo, result, split, [task_a, task_b], limit)
        frames.append(scores[["task", "merged", "normalized"]].assign(lambda_a=float(la), lambda_b=float(lb)))
    frame = pd.concat(frames, ignore_index=True)
    return frame[["lambda_a", "lambda_b", "task", "merged", "normalized"]]


def expert_sweep(zoo: Any, tv: TaskVectors, values: Sequence[float], *, method: str = "dare", param: str = "drop",
                 split: str = "test", tasks: list[str] | None = None, limit: int | None = None,
                 **params: Any) -> pd.DataFrame:
    """Each expert on its own, passed through `method` as one parameter varies (default: DARE's drop rate, as in the
    DARE paper's single-model figure): for every value and task, the merge of that task's vector alone, scored on
    that task: `value, task, base, expert, merged, normalized`. Other method parameters go in `params`
    (three values in quick mode, `quick.thin`)."""
    if not len(values):
        raise ValueError("expert_sweep() needs at least one value, e.g. values=[0.0, 0.5, 0.9]")
    if param in params:
        raise ValueError(f"{param!r} is the swept parameter; give its values in `values`, not as a keyword")
    frames = [_scores(zoo, merge(tv.subset([task]), method, zoo=zoo, **{param: v}, **params), split, [task], limit)
              .assign(value=float(v)) for v in quick.thin(values) for task in (tasks or tv.tasks)]
    frame = pd.concat(frames, ignore_index=True)[["value", *SCORE_COLUMNS]]
    frame.attrs.update(method=method, param=param)
    return frame
