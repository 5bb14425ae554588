"""`merge()` and `list_methods()`: validate parameters, run a registered method, time it."""
from __future__ import annotations

import time
from typing import Any, Callable

from . import quick
from .checks import check_finite
from .methods import registry
from .result import MergeResult
from .taskvec import TaskVectors


def list_methods() -> list[dict]:
    """Every registered method with its declared parameters (name, range, default, help)."""
    return [{"name": m.name, "title": m.title, "paper": m.paper, "formula": m.formula, "summary": m.summary,
             "needs_data": m.needs_data, "reads_data": m.reads_data, "cancellable": m.cancellable,
             "per_task": m.per_task, "inference": m.inference,
             "params": [p.as_dict() for p in m.params]} for m in registry.all_methods()]


def merge(tv: TaskVectors, method: str, *, zoo: Any = None, callback: Callable | None = None,
          cancel: Callable[[], bool] | None = None, **params: Any) -> MergeResult:
    """Merge the task vectors with a registered method; returns a MergeResult.

    Bad parameter names or values raise ValueError naming the parameter, the value and the range.
    `zoo` (defaults to the zoo `tv` was built from), `callback` and `cancel` reach methods that use them.
    """
    if not isinstance(tv, TaskVectors):
        raise TypeError(f"merge() needs TaskVectors (from ex.task_vectors), got {type(tv).__name__}")
    m = registry.get(method)
    values = quick.cap_work(m.resolve(params))  # unchanged unless EXPLORER_QUICK=1
    injected = {"zoo": zoo if zoo is not None else tv.zoo, "callback": callback, "cancel": cancel,
                "device": tv.device}
    start = time.perf_counter()
    result = m.fn(tv, **values, **{k: v for k, v in injected.items() if k in m.injected})
    result.method, result.params = method, values
    result.info.setdefault("seconds", time.perf_counter() - start)
    if quick.enabled():
        result.info["quick"] = True
    if result.delta is not None:
        check_finite("merged task vector", result.delta, f"the {method} merge produced non-finite values (NaN or Inf)",
                     f"Its parameters ({values}) made the merged task vector overflow: lower the scale, or check "
                     "the experts' magnitudes.")
    return result
