"""Model Merging Explorer: zoos -> task vectors -> merge methods -> evaluation / analysis -> figures.

    import explorer as ex
    zoo = ex.load_zoo("demo")
    tv = ex.task_vectors(zoo)
    res = ex.merge(tv, "ties", density=0.2, scale=1.0)
    scores = ex.evaluate(zoo, res)
"""
from __future__ import annotations

import importlib
from typing import Any

from . import methods  # noqa: F401  (registers the methods)

# Eager: a lazy `evaluate` would be shadowed by the `explorer.evaluate` submodule once anything imports it.
from .evaluate import Scores, evaluate
from .merging import list_methods, merge
from .result import MergeResult
from .sweep import Sweep, sweep
from .taskvec import TaskVectors, task_vectors
from .tuning import select
from .zoo import Zoo, list_zoos, load_zoo

__version__ = "0.1.0"

# Heavier parts load on first use, so `import explorer` stays fast.
_LAZY = {
    "save": ("explorer.runs", "save"),
    "load_run": ("explorer.runs", "load_run"),
    "load_result": ("explorer.runs", "load_result"),
    "RunRecord": ("explorer.runs", "RunRecord"),
    "analysis": ("explorer.analysis", None),
    "plots": ("explorer.plots", None),
    "protect": ("explorer.security", "protect"),
    "security": ("explorer.security", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'explorer' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


__all__ = ["MergeResult", "Scores", "Sweep", "TaskVectors", "Zoo", "evaluate", "list_methods", "list_zoos",
           "load_zoo", "merge", "select", "sweep", "task_vectors", *_LAZY]
