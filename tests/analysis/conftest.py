"""Hand-made task vectors whose cosines, sign conflicts and norms are computed by hand in the tests.

Three tasks, three layers of two entries each (flattened order: embed, block.0, block.1):
    a = [1, 0 | 1, 1 |  1, -1]
    b = [0, 1 | 1, 1 | -1,  1]
    c = [1, 1 | -1, 0 | 2,  0]
"""
from __future__ import annotations

import pytest
import torch

import explorer as ex

NAMES = ("conv1.weight", "transformer.resblocks.0.attn.out_proj.weight", "transformer.resblocks.1.mlp.c_fc.weight")
VECTORS = {"a": [1, 0, 1, 1, 1, -1], "b": [0, 1, 1, 1, -1, 1], "c": [1, 1, -1, 0, 2, 0]}
BASE = [3, 4, 1, 0, 0, 2]  # per-layer base norms: 5, 1, 2


def _split(values: list[float]) -> dict[str, torch.Tensor]:
    return {n: torch.tensor(values[2 * i:2 * i + 2], dtype=torch.float32) for i, n in enumerate(NAMES)}


def make_tv(vectors: dict[str, list[float]] = VECTORS) -> ex.TaskVectors:
    base = _split(BASE)
    experts = {t: {n: base[n] + d for n, d in _split(v).items()} for t, v in vectors.items()}
    return ex.task_vectors(base, experts, device="cpu")


@pytest.fixture
def hand_tv() -> ex.TaskVectors:
    return make_tv()
