"""A shared binary-Concrete mask over the task vectors (Concrete subspace learning, Tang et al.; reused by DAM).

One logit tensor x per task-vector tensor, the parameter's shape, shared by every task. Training draws a relaxed
sample m = sigmoid((x + log u - log(1 - u)) / T), u ~ U(0, 1), so gradients reach x (reparameterised); evaluation
uses a frozen mask (`ConcreteMask.frozen`): a relaxed or a Bernoulli sample drawn with a seed (FusionBench's
`eval_mask_type` continuous / discrete), or the hard mask m = [x > 0] (sigmoid(x) > 0.5). Either way each task's
vector becomes tau_t * m / mean(m), the mean taken over that tensor, so masking keeps the tensor's average scale.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import torch
from torch import Tensor

TEMPERATURE = 0.5  # the official temperature of the relaxed Bernoulli
FROZEN = ("continuous", "discrete", "hard")  # the evaluation masks `ConcreteMask.frozen` draws
_EPS = 1e-6  # keeps log u and log(1 - u) finite


class ConcreteMask:
    """Mask logits (name -> tensor of the parameter's shape, trainable) with relaxed and hard masks.

    `shapes` maps each masked parameter name to its shape (task vectors' `[T, ...]` leading task axis excluded);
    `init` is the starting logit (0: p = 0.5), `temperature` the relaxation's T.
    """

    def __init__(self, shapes: Mapping[str, torch.Size | tuple[int, ...]], *, init: float = 0.0,
                 temperature: float = TEMPERATURE, device: str | torch.device = "cpu"):
        if temperature <= 0:
            raise ValueError(f"the Concrete temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.logits = {n: torch.nn.Parameter(torch.full(tuple(s), float(init), device=device))
                       for n, s in shapes.items()}

    @classmethod
    def for_deltas(cls, deltas: Mapping[str, Tensor], **kwargs) -> "ConcreteMask":
        """One logit per entry of each `[T, ...]` stacked task-vector tensor (shared over the T tasks)."""
        device = next(iter(deltas.values())).device if deltas else "cpu"
        return cls({n: d.shape[1:] for n, d in deltas.items()}, device=kwargs.pop("device", device), **kwargs)

    @classmethod
    def from_logits(cls, logits: Mapping[str, Tensor], temperature: float = TEMPERATURE) -> "ConcreteMask":
        """A mask restored from saved logits (see `state_dict`)."""
        mask = cls({}, temperature=temperature)
        mask.logits = {n: torch.nn.Parameter(x.detach().float().clone()) for n, x in logits.items()}
        return mask

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The trainable logits, for an optimiser."""
        return iter(self.logits.values())

    def state_dict(self) -> dict[str, Tensor]:
        """The logits, detached (name -> tensor), e.g. to write as safetensors."""
        return {n: x.detach() for n, x in self.logits.items()}

    def sample(self, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A relaxed binary-Concrete sample per tensor, differentiable in the logits (values in (0, 1))."""
        out = {}
        for name, x in self.logits.items():
            u = torch.rand(x.shape, generator=generator, device=x.device if generator is None else "cpu")
            u = u.to(x.device).clamp(_EPS, 1 - _EPS)
            out[name] = torch.sigmoid((x + u.log() - (-u).log1p()) / self.temperature)
        return out

    def probabilities(self) -> dict[str, Tensor]:
        """sigmoid(logits): each entry's probability of being kept (detached)."""
        return {n: torch.sigmoid(x.detach()) for n, x in self.logits.items()}

    def hard(self) -> dict[str, Tensor]:
        """The evaluation mask: 1 where the keep probability exceeds 0.5 (logit > 0), else 0 (float, detached)."""
        return {n: (x.detach() > 0).float() for n, x in self.logits.items()}

    def frozen(self, kind: str, seed: int) -> dict[str, Tensor]:
        """The evaluation mask (detached), the same for the same logits and seed: `continuous` a relaxed sample,
        `discrete` a Bernoulli(sigmoid(x)) sample (both drawn from a generator seeded with `seed`), `hard` [x > 0]."""
        if kind not in FROZEN:
            raise ValueError(f"the evaluation mask must be one of {FROZEN}, got {kind!r}")
        if kind == "hard":
            return self.hard()
        gen = torch.Generator().manual_seed(seed)
        if kind == "continuous":
            return {n: m.detach() for n, m in self.sample(gen).items()}
        return {n: torch.bernoulli(p.cpu(), generator=gen).to(p.device) for n, p in self.probabilities().items()}

    def density(self) -> dict[str, float]:
        """Per tensor, the fraction of entries the hard mask keeps."""
        return {n: float(m.mean()) for n, m in self.hard().items()}


def rescaled(mask: Tensor) -> Tensor:
    """m / mean(m) over the whole tensor; an all-zero mask stays zero (nothing is kept, nothing to rescale)."""
    return mask / mask.mean().clamp_min(torch.finfo(mask.dtype).tiny)


def apply_mask(deltas: Mapping[str, Tensor], mask: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Masked, rescaled task vectors: name -> tau[T, ...] * m / mean(m), the same mask for every task.

    Tensors without a mask entry pass unchanged, so a mask may cover only some parameters.
    """
    out = {}
    for name, d in deltas.items():
        out[name] = d * rescaled(mask[name]).to(d.dtype) if name in mask else d
    return out


def mask_overlap(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Jaccard overlap |a & b| / |a | b| of two boolean masks over the names they share (1.0 when both are empty)."""
    names = [n for n in a if n in b]
    inter = sum(int((a[n].bool() & b[n].bool()).sum()) for n in names)
    union = sum(int((a[n].bool() | b[n].bool()).sum()) for n in names)
    return inter / union if union else 1.0
