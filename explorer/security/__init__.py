"""The security lens: backdoor triggers and attack success, MergeLock protection and its unlock attempt."""
from __future__ import annotations

from typing import Mapping

from torch import Tensor

from ..zoo.base import Zoo
from .mergelock import SCALE, attention_heads, protect_weights, unlock
from .trigger import Trigger, attack_success, poison, stamp, triggered_test

__all__ = ["Trigger", "attack_success", "poison", "protect", "stamp", "triggered_test", "unlock", "unlock_expert"]


def _weights_and_heads(source: Zoo | Mapping[str, Tensor], task: str | None,
                       heads: int | None) -> tuple[Mapping[str, Tensor], int]:
    if isinstance(source, Zoo):
        if task is None:
            raise ValueError(f"protect(zoo, task): name the expert to protect, one of {source.tasks}")
        return source.expert_state_dict(task), heads or attention_heads(source.build_model())
    if not isinstance(source, Mapping):
        raise TypeError(f"protect() takes a state dict or a zoo and a task, got {type(source).__name__}")
    if heads is None:
        raise ValueError("protect(state_dict) needs heads=<attention heads per block> (a zoo supplies it)")
    return source, heads


def protect(source: Zoo | Mapping[str, Tensor], task: str | None = None, *, seed: int = 0, heads: int | None = None,
            scale: float = SCALE) -> dict[str, Tensor]:
    """MergeLock-protected weights of a state dict (`heads=` given) or of a zoo's expert `task`: the same
    outputs, but any merge that includes them collapses. `scale` bounds the per-head scalings ([1/scale, scale]): at
    100 even lambda = 0.1 of the protected task vector swamps the base's attention. Save them as safetensors."""
    weights, heads = _weights_and_heads(source, task, heads)
    return protect_weights(weights, heads, seed, scale)


def unlock_expert(zoo: Zoo, protected: Mapping[str, Tensor], method: str = "lstsq") -> dict[str, Tensor]:
    """The unlock attempt on protected weights of `zoo`'s architecture, aligned back to the zoo's base."""
    return unlock(protected, zoo.base_state_dict(), attention_heads(zoo.build_model()), method)
