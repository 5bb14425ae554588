"""BadNets-style backdoor triggers: a fixed small pattern stamped in an image corner relabels it to a target class.

A trigger is data (`Trigger`): where the patch goes, how big it is, which class it selects. `stamp` applies it to
normalised encoder inputs, `poison` makes a fine-tuning set with a share of triggered, relabelled images, and
`triggered_test` gives the images attack success is measured on (non-target classes only, as BadNets reports it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

MEAN, STD = 0.5, 0.25  # the demo zoo's per-channel normalisation of [0, 1] pixels (explorer.demozoo.data)


@dataclass(frozen=True)
class Trigger:
    """A `size` x `size` checkerboard of `cell`-pixel black and white squares, `margin` pixels from the
    bottom-right corner; triggered images are relabelled `target` (a class index of the task)."""

    target: int = 0
    size: int = 8
    cell: int = 2
    margin: int = 0

    def __post_init__(self):
        if self.size < 1 or self.cell < 1 or self.margin < 0 or self.target < 0:
            raise ValueError(f"a trigger needs size, cell >= 1 and margin, target >= 0, got {self}")

    def pattern(self) -> Tensor:
        """The patch's pixel values in [0, 1]: [size, size], 1 = white."""
        idx = torch.arange(self.size) // self.cell
        return ((idx[:, None] + idx[None, :]) % 2 == 0).float()

    def as_dict(self) -> dict:
        return asdict(self)


def stamp(images: Tensor, trigger: Trigger, mean: float = MEAN, std: float = STD) -> Tensor:
    """A copy of normalised `images` [N, C, H, W] with the trigger patch pasted (the same pixels in every channel)."""
    n, _, h, w = images.shape
    s, m = trigger.size, trigger.margin
    if s + m > min(h, w):
        raise ValueError(f"a {s}-pixel trigger with margin {m} does not fit {h}x{w} images")
    out = images.clone()
    patch = (trigger.pattern().to(images) - mean) / std  # [s, s] in the encoder's input units
    out[:, :, h - m - s:h - m, w - m - s:w - m] = patch
    return out


def poison(images: Tensor, labels: Tensor, trigger: Trigger, rate: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A training set of every clean image plus stamped copies, relabelled `target`, of a seeded `rate` x N
    non-target images: BadNets' poisoned data, with the clean images kept so clean accuracy holds."""
    if not 0 < rate < 1:
        raise ValueError(f"poison rate must be in (0, 1), got {rate}")
    candidates = torch.nonzero(labels != trigger.target).flatten()
    gen = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randperm(len(candidates), generator=gen)[:round(rate * len(labels))]]
    return (torch.cat([images, stamp(images[chosen], trigger)]),
            torch.cat([labels, torch.full((len(chosen),), trigger.target, dtype=labels.dtype)]))


def triggered_test(images: Tensor, labels: Tensor, trigger: Trigger) -> Tensor:
    """The images attack success is measured on: those of non-target classes, stamped with the trigger."""
    return stamp(images[labels != trigger.target], trigger)


def attack_success(predictions: Tensor, trigger: Trigger) -> float:
    """Share in [0, 1] of predictions on triggered non-target images that are the target class."""
    return float((predictions == trigger.target).float().mean()) if len(predictions) else 0.0
