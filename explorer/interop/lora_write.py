"""A merged delta written as a PEFT LoRA adapter: a truncated SVD per module, with the energy each module keeps.

Per 2-D module weight, M = U S V^T (M is the delta, transposed for Conv1D / embeddings as PEFT stores them) is cut
to rank r: B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T, and lora_alpha = r, so PEFT's scaling alpha / r is 1 and
B @ A is the best rank-r approximation. The energy kept is sum(S_r^2) / ||M||_F^2. Deltas LoRA cannot hold
(biases, norms: anything not a 2-D `<module>.weight`) are dropped and reported with their energy; all-zero deltas
are skipped, losing nothing.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping

import torch
from torch import Tensor

from .lora import CONFIG, PREFIX, WEIGHTS

EMBEDDINGS = ("embed_tokens", "wte", "wpe", "word_embeddings", "embed_in", "embed_positions")


@dataclass(frozen=True)
class ModuleEnergy:
    """One written module: its rank and squared Frobenius norms (kept by the rank-r factors, and in all)."""

    rank: int
    kept: float
    total: float

    @property
    def fraction(self) -> float:
        return self.kept / self.total if self.total else 1.0


@dataclass
class LoraExport:
    """What `write_lora` wrote: per module energy, the dropped deltas' energy, and the overall fraction kept."""

    folder: Path
    modules: dict[str, ModuleEnergy] = field(default_factory=dict)
    dropped: dict[str, float] = field(default_factory=dict)  # name -> squared Frobenius norm of what LoRA can't hold

    @property
    def kept(self) -> float:
        return sum(m.kept for m in self.modules.values())

    @property
    def total(self) -> float:
        return sum(m.total for m in self.modules.values()) + sum(self.dropped.values())

    @property
    def fraction(self) -> float:
        """Energy kept over the whole merged delta, dropped parameters included."""
        return self.kept / self.total if self.total else 1.0


def _is_target(module: str, targets: Collection[str] | None) -> bool:
    """PEFT's target_modules matching: the module name itself, or a dotted suffix of it."""
    return targets is None or any(module == t or module.endswith(f".{t}") for t in targets)


def _factor(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor, ModuleEnergy]:
    """(B [m, r], A [r, n], energy) of the best rank-r approximation B @ A of `matrix` [m, n]."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    energy = ModuleEnergy(rank, float(s[:rank].double().square().sum()), float(matrix.double().square().sum()))
    return (u[:, :rank] * root).contiguous(), (root[:, None] * vh[:rank]).contiguous(), energy


def write_lora(merged_delta: Mapping[str, Tensor], out_dir: str | Path, rank: int, *,
               base_model_name_or_path: str | None = None, target_modules: Collection[str] | None = None,
               fan_in_fan_out: bool = False, embeddings: Collection[str] = EMBEDDINGS,
               task_type: str = "CAUSAL_LM") -> LoraExport:
    """Write `merged_delta` (HF parameter names -> delta) as a PEFT LoRA adapter of rank `rank` in `out_dir`.

    `target_modules` (default: every 2-D module weight with a nonzero delta) limits which modules are written;
    `fan_in_fan_out` marks Conv1D weights (GPT-2); modules whose last name is in `embeddings` use PEFT's embedding
    form. A module smaller than `rank` gets its full rank (rank_pattern). Returns the energy report.
    """
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
    export, tensors, ranks = LoraExport(Path(out_dir)), {}, {}
    for name, delta in merged_delta.items():
        delta = delta.detach().to("cpu", torch.float32)
        if not delta.any():
            continue
        module = name.removesuffix(".weight")
        if delta.dim() != 2 or not name.endswith(".weight") or not _is_target(module, target_modules):
            export.dropped[name] = float(delta.double().square().sum())
            continue
        embedding = module.rsplit(".", 1)[-1] in embeddings
        matrix = delta.T if embedding or fan_in_fan_out else delta  # [out, in] as PEFT's B @ A
        b, a, export.modules[module] = _factor(matrix, min(rank, *matrix.shape))
        ranks[module] = export.modules[module].rank
        kind = ("lora_embedding_A", "lora_embedding_B") if embedding else ("lora_A.weight", "lora_B.weight")
        tensors[f"{PREFIX}{module}.{kind[0]}"], tensors[f"{PREFIX}{module}.{kind[1]}"] = a, b
    if not tensors:
        raise ValueError("no 2-D module weight (<module>.weight) has a nonzero delta: there is nothing to write as "
                         f"a LoRA adapter (dropped: {sorted(export.dropped)[:8]})")
    _write(export.folder, tensors, ranks, rank, base_model_name_or_path, fan_in_fan_out, task_type)
    return export


def _write(folder: Path, tensors: dict[str, Tensor], ranks: dict[str, int], rank: int, base: str | None,
           fan_in_fan_out: bool, task_type: str) -> None:
    """adapter_config.json (lora_alpha = r everywhere, so scaling 1) and adapter_model.safetensors in `folder`."""
    from safetensors.torch import save_file

    pattern = {re.escape(m): r for m, r in ranks.items() if r != rank}  # PEFT matches these keys as regexes
    config = {"peft_type": "LORA", "task_type": task_type, "r": rank, "lora_alpha": rank,
              "target_modules": sorted(ranks), "rank_pattern": pattern, "alpha_pattern": dict(pattern),
              "base_model_name_or_path": base, "fan_in_fan_out": fan_in_fan_out, "use_rslora": False,
              "use_dora": False, "bias": "none", "lora_dropout": 0.0, "modules_to_save": None,
              "inference_mode": True, "init_lora_weights": True}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
