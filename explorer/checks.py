"""Checks on weights shared by task vectors, merges and evaluation: nothing non-finite passes silently."""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

MIN_EXPERTS = 2  # the CLI and the dashboard merge at least two experts (the API also takes one)
SHOWN = 8        # problems listed in one message


def nonfinite(x: Tensor) -> int:
    """How many entries of `x` are NaN or +-Inf (0 for non-float tensors). A finite sum proves there are none
    (NaN and Inf survive any sum) at one read, without the bool tensor; only a non-finite sum counts them."""
    if not torch.is_floating_point(x) or math.isfinite(float(x.sum())):
        return 0
    return int(x.numel() - torch.isfinite(x).sum())


def nonfinite_problems(owner: str, tensors: Mapping[str, Tensor]) -> list[str]:
    """One line per tensor of `tensors` holding NaN/Inf: "<owner>: 3 NaN/Inf entries in 'name'"."""
    return [f"{owner}: {n:,} NaN/Inf entr{'y' if n == 1 else 'ies'} in {name!r}"
            for name, x in tensors.items() if (n := nonfinite(x))]


def raise_nonfinite(problems: list[str], lead: str, hint: str) -> None:
    """Raise one ValueError (`lead`, the first problems, `hint`) when there are any problems."""
    if problems:
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise ValueError(f"{lead}:\n  " + "\n  ".join(problems[:SHOWN]) + more + f"\n{hint}")


def check_finite(owner: str, tensors: Mapping[str, Tensor], lead: str, hint: str) -> None:
    """ValueError naming each tensor of `tensors` with NaN/Inf entries and how many."""
    raise_nonfinite(nonfinite_problems(owner, tensors), lead, hint)


def check_experts(tasks: list[str], where: str) -> list[str]:
    """`tasks` when there are at least MIN_EXPERTS of them, else a ValueError saying how to add one (`where`)."""
    tasks = list(tasks)
    if len(tasks) < MIN_EXPERTS:
        got = f"got {len(tasks)}" + (f" ({', '.join(map(repr, tasks))})" if tasks else "")
        raise ValueError(f"Merging needs at least {MIN_EXPERTS} experts, {got}: {where}.")
    return tasks
