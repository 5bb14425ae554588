"""The non-finite count: exact whether or not the tensor's sum overflows."""
from __future__ import annotations

import math

import pytest
import torch

from explorer.checks import nonfinite


@pytest.mark.parametrize("values, expected", [
    ([1.0, -2.0, 3.0], 0),
    ([3e38, 3e38, -1.0], 0),  # finite entries whose sum overflows to Inf
    ([1.0, math.nan, 2.0], 1),
    ([math.inf, -math.inf, 0.0], 2),  # +Inf and -Inf: the sum is NaN
    ([math.inf, 1.0, math.nan], 2),
])
def test_nonfinite_counts_nan_and_inf_entries_exactly(values, expected):
    assert nonfinite(torch.tensor(values)) == expected


def test_nonfinite_is_exact_when_a_half_precision_sum_overflows():
    assert nonfinite(torch.tensor([60000.0, 60000.0], dtype=torch.float16)) == 0
    assert nonfinite(torch.tensor([60000.0, math.nan], dtype=torch.float16)) == 1


def test_nonfinite_ignores_integer_tensors():
    assert nonfinite(torch.tensor([1, 2, 3])) == 0
