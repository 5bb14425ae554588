"""Averaging and Task Arithmetic: the plain linear merges every other method is compared with."""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import pandas as pd
from torch import Tensor

from ..result import MergeResult
from ..taskvec import TaskVectors
from . import params
from .registry import register


def _sums(deltas: Mapping[str, Tensor], scale: float | None) -> Iterator[tuple[str, Tensor]]:
    """(name, scale * sum_t tau_t) tensor by tensor, scale None: 1/T (the average); in memory and streamed."""
    for name in deltas:
        d = deltas[name]
        yield name, (1.0 / d.shape[0] if scale is None else scale) * d.sum(dim=0)


def _average_stream(deltas: Mapping[str, Tensor], p: dict[str, Any]) -> Iterator[tuple[str, Tensor]]:
    """The average parameter by parameter."""
    return _sums(deltas, None)


def _task_arithmetic_stream(deltas: Mapping[str, Tensor], p: dict[str, Any]) -> Iterator[tuple[str, Tensor]]:
    """Task arithmetic parameter by parameter."""
    return _sums(deltas, p["scale"])


def _uniform_coefficients(tv: TaskVectors, value: float) -> pd.DataFrame:
    return pd.DataFrame({"all": [value] * tv.num_tasks}, index=pd.Index(tv.tasks, name="task"))


@register("average", title="Weight averaging",
          paper="Wortsman et al., Model soups, ICML 2022",
          formula="theta = theta_0 + (1/T) * sum_t tau_t",
          summary="The uniform average of the experts (task arithmetic with lambda = 1/T).", stream=_average_stream)
def average(tv: TaskVectors) -> MergeResult:
    coef = 1.0 / tv.num_tasks
    return MergeResult(tv, dict(_sums(tv.deltas, coef)), coefficients=_uniform_coefficients(tv, coef))


@register("task_arithmetic", params.scale(0.3, paper=0.3), title="Task Arithmetic",
          paper="Ilharco et al., Editing Models with Task Arithmetic, ICLR 2023",
          formula="theta = theta_0 + lambda * sum_t tau_t",
          summary="Add all task vectors and scale the sum by one global lambda (chosen on validation; "
                  "0.3 is the usual 8-task value).", stream=_task_arithmetic_stream)
def task_arithmetic(tv: TaskVectors, *, scale: float) -> MergeResult:
    return MergeResult(tv, dict(_sums(tv.deltas, scale)), coefficients=_uniform_coefficients(tv, scale))
