"""PEFT LoRA adapters read as task vectors: tau[<module>.weight] = scaling * B @ A, from the adapter files alone.

PEFT's conventions, as its LoRA layers apply them: scaling = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora),
r and lora_alpha per module from rank_pattern / alpha_pattern; the product is transposed for GPT-2's Conv1D
(fan_in_fan_out) and for embeddings (lora_embedding_A is [r, num_embeddings]). Keys in adapter_model.safetensors are
`base_model.model.<module>.lora_A.weight`. Only safetensors is needed: the model is never built.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor

from ..checks import SHOWN, nonfinite_problems
from ..device import resolve_device, resolve_dtype
from ..taskvec import TaskVectors, _raise_nonfinite, _split_base
from .hf_folder import read_hf_folder

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
_FACTORS = {".lora_A.weight": "A", ".lora_B.weight": "B", ".lora_embedding_A": "A", ".lora_embedding_B": "B"}
_REWRITES_BASE = ("pissa", "olora", "corda", "loftq", "lora_ga")
_MERGE_HINT = "merge it into the base with PEFT's merge_and_unload() and use the full weights as an expert instead"

# adapter_config.json field -> (is it something this reader cannot honour?, why)
_REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "peft_type": (lambda v: v != "LORA", "only LoRA adapters (peft_type LORA) are low-rank weight deltas"),
    "use_dora": (bool, "DoRA rescales each column by a learned magnitude, which is not B @ A"),
    "bias": (lambda v: v not in (None, "none"), "the adapter trains biases, which are not B @ A"),
    "lora_bias": (bool, "the adapter trains a bias on lora_B, which is not B @ A"),
    "init_lora_weights": (lambda v: isinstance(v, str) and v.lower().startswith(_REWRITES_BASE),
                          "this initialisation rewrites the base weights, so B @ A is a delta from another base "
                          "(re-save it with path_initial_model_for_weight_conversion)"),
    "target_parameters": (bool, "LoRA on raw parameters (MoE experts) is not read"),
    "layer_replication": (bool, "replicated layers do not map one to one onto the base's modules"),
    "trainable_token_indices": (bool, "trainable token deltas are not read"),
    "alora_invocation_tokens": (bool, "activated LoRA acts only after its invocation tokens, not as a fixed delta"),
    "use_qalora": (bool, "QALoRA pools its inputs, so its delta is not B @ A"),
    "use_bdlora": (bool, "block-diagonal LoRA factors are not read"),
    "monteclora_config": (bool, "Monte Carlo LoRA samples its delta"),
    "arrow_config": (bool, "Arrow routes between adapters per input"),
}


def read_adapter_config(folder: str | Path) -> dict[str, Any]:
    """adapter_config.json of a PEFT adapter folder, refused (one line naming the field) unless it is plain LoRA."""
    folder = Path(folder)
    path = folder / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} is not a PEFT adapter folder: it has no {CONFIG}")
    config = json.loads(path.read_text())
    for field, (refused, why) in _REFUSED.items():
        value = config.get(field)
        if value is not None and refused(value):
            raise ValueError(f"LoRA adapter {str(folder)!r}: {field}={value!r} cannot be read as a task vector "
                             f"({why}); {_MERGE_HINT}")
    return config


def pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """The value of the first pattern matching `module` as PEFT matches rank_pattern keys (a dotted suffix regex)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


@dataclass(frozen=True)
class Factors:
    """Where one module's LoRA factors sit and how PEFT combines them: delta = scaling * (B @ A), maybe transposed."""

    a_key: str
    b_key: str
    rank: int
    scaling: float
    transposed: bool


class LoraAdapter(Mapping[str, Tensor]):
    """A LoRA adapter folder as a lazy task vector: `adapter["<module>.weight"]` computes scaling * B @ A on access.

    Full weights an adapter saves (modules_to_save) become `weight - base[name]` when `base` is given, else are
    refused; `<module>.base_layer.weight` copies of the base (saved beside targeted embeddings) are ignored.
    """

    def __init__(self, folder: str | Path, base: Mapping[str, Tensor] | None = None):
        self.folder = Path(folder)
        self.config = read_adapter_config(self.folder)
        self.path = self.folder / WEIGHTS
        if not self.path.is_file():
            extra = " (only adapter_model.bin: re-save it with safe_serialization=True)" \
                if (self.folder / "adapter_model.bin").is_file() else ""
            raise FileNotFoundError(f"LoRA adapter {str(self.folder)!r} has no {WEIGHTS}{extra}")
        self.base = base
        self.shapes = self._shapes()  # key -> shape, read from the header only
        self.factors = self._factors(self.shapes)
        self.full = self._full(self.shapes)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}

    def _factors(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, Factors]:
        """{base param name: Factors} of every LoRA module, checked against r / rank_pattern."""
        found: dict[str, dict[str, str]] = {}
        for key in shapes:
            for suffix, factor in _FACTORS.items():
                if key.endswith(suffix):
                    module = key.removeprefix(PREFIX)[: -len(suffix)]
                    found.setdefault(module, {})[factor] = key
        out = {}
        for module, keys in found.items():
            if "A" not in keys or "B" not in keys:
                raise ValueError(f"LoRA adapter {str(self.folder)!r}: module {module!r} has only lora_"
                                 f"{'A' if 'A' in keys else 'B'}; the file is incomplete, save the adapter again")
            out[f"{module}.weight"] = self._module(module, keys, shapes)
        return out

    def _module(self, module: str, keys: dict[str, str], shapes: dict[str, tuple[int, ...]]) -> Factors:
        a, b = shapes[keys["A"]], shapes[keys["B"]]
        if len(a) != 2 or len(b) != 2:
            raise ValueError(f"LoRA adapter {str(self.folder)!r}: module {module!r} has {len(a)}-D factors (a "
                             f"convolution?); only Linear, Conv1D and Embedding LoRA are read; {_MERGE_HINT}")
        cfg = self.config
        rank = int(pattern_value(cfg.get("rank_pattern") or {}, module, cfg.get("r", 8)))
        alpha = float(pattern_value(cfg.get("alpha_pattern") or {}, module, cfg.get("lora_alpha", 8)))
        if a[0] != rank or b[1] != rank:
            raise ValueError(f"LoRA adapter {str(self.folder)!r}: module {module!r} has factors A {a} and B {b}, "
                             f"but its config says rank {rank} (r / rank_pattern): the config and weights disagree")
        scaling = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
        embedding = keys["A"].endswith(".lora_embedding_A")  # stored [r, num_embeddings]: PEFT transposes B @ A
        return Factors(keys["A"], keys["B"], rank, scaling, embedding or bool(cfg.get("fan_in_fan_out")))

    def _full(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, str]:
        """{base param name: key} of the full weights saved beside the factors (modules_to_save)."""
        lora_keys = {k for f in self.factors.values() for k in (f.a_key, f.b_key)}
        full = {key.removeprefix(PREFIX): key for key in shapes
                if key not in lora_keys and ".base_layer." not in key}
        odd = [name for name in full if ".lora_" in name]
        if odd:
            raise ValueError(f"LoRA adapter {str(self.folder)!r}: unknown LoRA tensors {odd[:8]}; only lora_A/lora_B "
                             f"and lora_embedding_A/B are read; {_MERGE_HINT}")
        if full and self.base is None:
            raise ValueError(f"LoRA adapter {str(self.folder)!r} saves full weights (modules_to_save: "
                             f"{sorted(full)[:8]}): give the base state dict so they become deltas, or drop them")
        return full

    def _tensor(self, key: str) -> Tensor:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            return f.get_tensor(key).to(torch.float32)

    def __getitem__(self, name: str) -> Tensor:
        if name in self.factors:
            f = self.factors[name]
            delta = f.scaling * (self._tensor(f.b_key) @ self._tensor(f.a_key))  # [out, in] as B @ A
            return delta.T.contiguous() if f.transposed else delta
        if name in self.full:
            return self._tensor(self.full[name]) - self.base[name].to(torch.float32)
        raise KeyError(f"LoRA adapter {str(self.folder)!r} does not change {name!r}")

    def __iter__(self) -> Iterator[str]:
        return iter([*self.factors, *self.full])

    def __len__(self) -> int:
        return len(self.factors) + len(self.full)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of the delta of `name`, without computing it."""
        if name in self.full:
            return self.shapes[self.full[name]]
        f = self.factors[name]
        out, inp = self.shapes[f.b_key][0], self.shapes[f.a_key][1]
        return (inp, out) if f.transposed else (out, inp)

    def __repr__(self) -> str:
        return f"LoraAdapter({str(self.folder)!r}, modules={len(self.factors)}, full={len(self.full)})"


def read_base_folder(path: str | Path) -> dict[str, Tensor]:
    """The state dict of a Hugging Face model folder (save_pretrained: one file or shards)."""
    return dict(read_hf_folder(path))


def lora_task_vectors(base: Mapping[str, Tensor] | str | Path, adapters: Mapping[str, str | Path], *,
                      device: str | torch.device = "auto", dtype: str | torch.dtype = "float32") -> TaskVectors:
    """TaskVectors of LoRA adapters over one base (a state dict or a Hugging Face folder): one row per adapter.

    The parameters are the union of the modules the adapters change; an adapter that leaves one of them alone has
    a zero delta there, and the base's other parameters pass through unchanged (a zero delta for every task).
    """
    base_sd = read_base_folder(base) if isinstance(base, (str, Path)) else base
    if not adapters:
        raise ValueError("no adapters given: pass {task: adapter folder} with at least one LoRA adapter")
    read = {task: LoraAdapter(folder, base_sd) for task, folder in adapters.items()}
    _check_against_base(base_sd, read)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    base_f, extras = _split_base(base_sd, dev)
    names = [n for n in base_f if any(n in a for a in read.values())]  # base order
    tasks = list(read)
    deltas = {n: torch.zeros((len(tasks), *base_f[n].shape), dtype=dt, device=dev) for n in names}
    problems = []
    for i, (task, adapter) in enumerate(read.items()):
        for name in adapter:
            delta = adapter[name]
            problems += nonfinite_problems(f"adapter {task!r}", {name: delta})
            deltas[name][i] = delta.to(dev, dt)
    _raise_nonfinite(problems)
    return TaskVectors(tasks, base_f, deltas, extras, None)


def _check_against_base(base: Mapping[str, Tensor], adapters: Mapping[str, LoraAdapter]) -> None:
    """One ValueError listing every module an adapter changes that the base lacks, or has in another shape."""
    problems = []
    for task, adapter in adapters.items():
        for name in adapter:
            if name not in base:
                problems.append(f"adapter {task!r} changes {name!r}, which the base lacks")
            elif not torch.is_floating_point(base[name]):
                problems.append(f"adapter {task!r} changes {name!r}, an integer tensor of the base")
            elif tuple(base[name].shape) != adapter.shape(name):
                problems.append(f"adapter {task!r} module {name!r}: base {tuple(base[name].shape)} vs adapter "
                                f"delta {adapter.shape(name)}")
    if problems:
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise ValueError("LoRA adapters do not match the base:\n  " + "\n  ".join(problems[:SHOWN]) + more
                         + "\nUse adapters trained on this base; for GPT-2's Conv1D modules the adapter needs "
                         "fan_in_fan_out=true in its adapter_config.json.")
