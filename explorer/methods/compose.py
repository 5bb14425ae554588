"""One composition of the blocks for the merges other methods build on (DARE's and LiNeS' `base`, the TALL
multi-task vector `mtl`): sparsify x sign consensus x aggregate, as mergekit's generalized task arithmetic, with
Consensus merging's mask as an optional last step. A variant is a row of RECIPES, not a branch in each method."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .blocks import Stacked, consensus_vector, task_sum, ties_vector


@dataclass(frozen=True)
class Recipe:
    """Which blocks a base merge uses: TIES' trim + sign election + disjoint merge, and the consensus mask."""

    ties: bool = False
    consensus: bool = False


RECIPES = {"task_arithmetic": Recipe(), "ties": Recipe(ties=True), "consensus": Recipe(consensus=True)}


def compose(deltas: Stacked, base: str, *, density: float = 1.0, aggregate: str = "sum", k: int = 2,
            lam: float = 0.4) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """The unscaled merged vector of `base` and the per-parameter `[T, ...]` masks it kept (None: every entry).

    task_arithmetic: sum_t tau_t. ties: top-`density` trim, mass sign election, disjoint `aggregate` (sum or
    mean). consensus: sum_t tau_t masked by 1{sum_t m_t >= k}, m_t the TALL masks at `lam`."""
    if base not in RECIPES:
        raise ValueError(f"unknown base merge {base!r}; use one of {sorted(RECIPES)}")
    recipe = RECIPES[base]
    if recipe.ties:
        return ties_vector(deltas, density, "mass", aggregate, "global")
    merged = task_sum(deltas)
    if recipe.consensus:
        merged, _ = consensus_vector(deltas, merged, lam, k)
    return merged, None
