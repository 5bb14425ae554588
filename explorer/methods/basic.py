"""Averaging and Task Arithmetic: the plain linear merges every other method is compared with."""
from __future__ import annotations

import pandas as pd

from ..result import MergeResult
from ..taskvec import TaskVectors
from . import params
from .blocks import scaled, task_sum
from .registry import register


def _uniform_coefficients(tv: TaskVectors, value: float) -> pd.DataFrame:
    return pd.DataFrame({"all": [value] * tv.num_tasks}, index=pd.Index(tv.tasks, name="task"))


@register("average", title="Weight averaging",
          paper="Wortsman et al., Model soups, ICML 2022",
          formula="theta = theta_0 + (1/T) * sum_t tau_t",
          summary="The uniform average of the experts (task arithmetic with lambda = 1/T).")
def average(tv: TaskVectors) -> MergeResult:
    coef = 1.0 / tv.num_tasks
    return MergeResult(tv, scaled(task_sum(tv.deltas), coef), coefficients=_uniform_coefficients(tv, coef))


@register("task_arithmetic", params.scale(0.3, paper=0.3), title="Task Arithmetic",
          paper="Ilharco et al., Editing Models with Task Arithmetic, ICLR 2023",
          formula="theta = theta_0 + lambda * sum_t tau_t",
          summary="Add all task vectors and scale the sum by one global lambda (chosen on validation; "
                  "0.3 is the usual 8-task value).")
def task_arithmetic(tv: TaskVectors, *, scale: float) -> MergeResult:
    return MergeResult(tv, scaled(task_sum(tv.deltas), scale), coefficients=_uniform_coefficients(tv, scale))
