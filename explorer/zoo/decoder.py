"""Decoder zoos: a folder holding `base/` and one folder per expert, each as Hugging Face `save_pretrained` writes it
(config.json, model.safetensors or shards named by model.safetensors.index.json, tokenizer files).

State dicts use the keys as written (`model.layers.0.self_attn.q_proj.weight`, GPT-2's `transformer.h.0.attn.c_attn.
weight`) and are read tensor by tensor from the shards, so a streamed merge holds one stacked parameter, never the
experts.
Opening the folder checks every expert against the base from the files' headers alone:
- architecture: the same `model_type` and `tie_word_embeddings` in config.json, and the same tensor names and shapes;
- vocabulary: an expert whose embedding or lm_head rows differ from the base's (added tokens) is refused, not merged:
  merging rows by index is only right when the added tokens sit after a shared vocabulary, which the weights cannot
  show. Resize the expert back to the base's vocabulary (`model.resize_token_embeddings(n)`) if the added tokens can
  go, or give the base the same added tokens and re-fine-tune from it;
- tied embeddings: where config.json ties the output head to the input embeddings, `lm_head.weight` is no parameter of
  its own (transformers re-ties it on load), so it is left out of the state dict even when a file holds it: task
  vectors count the embedding once and the merged folder reloads tied.
Evaluation (exact match by greedy generation) is not here yet: these zoos merge, analyse and export.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..weights import SafetensorsReader, ShardedReader, file_sha256
from .base import EvaluationUnavailable, Zoo

CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
TIED_HEAD = "lm_head.weight"  # the output head transformers ties to the input embeddings
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
NOT_COPIED = ("README.md", INDEX, "pytorch_model.bin.index.json")  # the base's card and indexes say nothing of a merge
NO_EVALUATION = ("a decoder zoo has no heads or task data: exact-match evaluation by greedy generation comes with the "
                 "tiny LLM zoo; merging, the analyses and export work now")
SAVE_HINT = "save each model with model.save_pretrained(folder) (and tokenizer.save_pretrained(folder))"


def is_decoder_folder(folder: Path) -> bool:
    """Whether `folder` is a decoder zoo: its `base/config.json` exists and names no CLIP model (an HF CLIP folder
    beside its experts stays a folder of checkpoints, `folder.py`)."""
    config = folder / "base" / CONFIG
    if not config.is_file():
        return False
    try:
        model_type = str(json.loads(config.read_text()).get("model_type", ""))
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return True  # opening it says what is wrong with the config
    return not model_type.startswith("clip")


def read_config(folder: Path) -> dict[str, Any]:
    """The parsed config.json of one model folder, or an error naming the file and how to write it."""
    path = folder / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found: every model folder of a decoder zoo needs its config.json; "
                                f"{SAVE_HINT}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}); write it again with save_pretrained") from None
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object (a transformers config); write it with "
                         f"save_pretrained")
    return config


def shard_map(folder: Path) -> dict[str, Path]:
    """name -> the safetensors file holding it, from model.safetensors.index.json (shards) or model.safetensors."""
    index = folder / INDEX
    if index.is_file():
        try:
            names = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{str(index)!r} has no readable \"weight_map\" ({err!r}); write the model again with "
                             f"save_pretrained") from None
        missing = sorted({f for f in names.values() if not (folder / f).is_file()})
        if missing:
            raise FileNotFoundError(f"{str(index)!r} names shard(s) that are not in the folder: {missing[:4]}; copy "
                                    f"every shard beside the index (or save the model again with save_pretrained)")
        return {name: folder / f for name, f in names.items()}
    if (folder / WEIGHTS).is_file():
        return dict.fromkeys(SafetensorsReader(folder / WEIGHTS).keys(), folder / WEIGHTS)
    others = sorted(p.name for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    found = f" (it holds {', '.join(others[:4])}: only safetensors are read)" if others else ""
    raise FileNotFoundError(f"{str(folder)!r} has no {WEIGHTS} and no {INDEX}{found}; {SAVE_HINT} "
                            f"(safetensors is its default)")


def model_reader(folder: Path, config: dict[str, Any]) -> ShardedReader:
    """The model's tensors as written, read lazily; a tied head (`tie_word_embeddings`) is left out."""
    shards = shard_map(folder)
    if config.get("tie_word_embeddings") is True:
        shards.pop(TIED_HEAD, None)
    return ShardedReader(shards)


def copy_companions(source: Path, out: Path) -> list[Path]:
    """Copy a model folder's config.json, generation config and tokenizer files (every file but weights, indexes and
    its card) into the model folder `out`; returns the copies."""
    out.mkdir(parents=True, exist_ok=True)
    files = [p for p in sorted(Path(source).iterdir()) if p.is_file() and not p.name.startswith(".")
             and p.suffix not in WEIGHT_SUFFIXES and p.name not in NOT_COPIED]
    return [Path(shutil.copy2(p, out / p.name)) for p in files]


class DecoderZoo(Zoo):
    """A causal LM and its fine-tuned experts from Hugging Face model folders (see the module docstring)."""

    def __init__(self, folder: Path, **options: Any):
        if options:
            raise ValueError(f"a decoder zoo takes no options ({', '.join(sorted(options))}): its experts are the "
                             f"model folders beside {str(folder / 'base')!r}")
        self.root = Path(folder)
        self.name = self.source = str(self.root.resolve())
        experts = sorted(p for p in self.root.iterdir()
                         if p.is_dir() and p.name != "base" and not p.name.startswith("."))
        if not experts:
            raise ValueError(f"{self.name!r} holds base/ but no experts: add one save_pretrained folder per task "
                             f"beside it (<task>/config.json + <task>/model.safetensors)")
        self.tasks = [p.name for p in experts]
        self.folders = {"base": self.root / "base", **{p.name: p for p in experts}}
        self.configs = {m: read_config(p) for m, p in self.folders.items()}
        self.readers = {m: model_reader(p, self.configs[m]) for m, p in self.folders.items()}
        for task in self.tasks:
            self._check_expert(task)

    def _check_expert(self, task: str) -> None:
        """One error naming the file, the key and the fix when `task`'s model is not the base's architecture."""
        base, mine, where = self.configs["base"], self.configs[task], f"{task}/{CONFIG}"
        for field in ("model_type", "tie_word_embeddings"):
            if base.get(field) != mine.get(field):
                raise ValueError(f"expert {task!r} is not the base's architecture: {where} has {field} "
                                 f"{mine.get(field)!r}, base/{CONFIG} {base.get(field)!r}; merge experts fine-tuned "
                                 f"from this base (same config and parameter names)")
        b, e = self.readers["base"], self.readers[task]
        rows = [n for n in b.keys() if n in e.entries and _vocab_rows(n) and b.shape(n)[1:] == e.shape(n)[1:]
                and b.shape(n)[0] != e.shape(n)[0]]
        if rows:
            raise ValueError(f"expert {task!r} has another vocabulary: {rows[0]} has {e.shape(rows[0])[0]} rows, the "
                             f"base's {b.shape(rows[0])[0]} ({where} vocab_size {mine.get('vocab_size')}, base "
                             f"{base.get('vocab_size')}). Added tokens are refused, not merged: resize the expert back "
                             f"(model.resize_token_embeddings({b.shape(rows[0])[0]})) if they can go, or fine-tune "
                             f"from a base with the same tokens")
        problems = ([f"lacks {n}" for n in b.keys() if n not in e.entries]
                    + [f"has {n}, which the base lacks" for n in e.keys() if n not in b.entries]
                    + [f"{n}: {e.shape(n)} vs the base's {b.shape(n)}" for n in b.keys()
                       if n in e.entries and e.shape(n) != b.shape(n)])
        if problems:
            raise ValueError(f"expert {task!r} ({self.folders[task]}) does not match the base's tensors: "
                             + "; ".join(problems[:8]) + ". Merge experts fine-tuned from this base (same config "
                             "and parameter names)")

    def _state_dict(self, model: str) -> dict[str, Tensor]:
        reader = self.readers[model]
        return {n: reader.read(n) for n in reader.keys()}

    def base_state_dict(self) -> dict[str, Tensor]:
        return self._state_dict("base")

    def expert_state_dict(self, task: str) -> dict[str, Tensor]:
        self.check_task(task)
        return self._state_dict(task)

    def base_dtypes(self) -> dict[str, torch.dtype]:
        """name -> dtype of the base's tensors as stored (a merged folder is written in them)."""
        return {n: self.readers["base"].dtype(n) for n in self.readers["base"].keys()}

    def build_model(self) -> nn.Module:
        """`AutoModelForCausalLM.from_config` of the base's config (transformers is imported here, not before)."""
        try:
            from transformers import AutoConfig, AutoModelForCausalLM
        except ImportError:
            raise ValueError("building a decoder needs transformers: pip install 'transformers>=4.40'") from None
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(self.folders["base"]))

    def evaluation_problems(self, tasks: list[str] | None = None, split: str = "test") -> list[str]:
        return [NO_EVALUATION]

    def class_names(self, task: str) -> list[str]:
        raise EvaluationUnavailable(self.name, [NO_EVALUATION])

    def head(self, task: str) -> nn.Module:
        raise EvaluationUnavailable(self.name, [NO_EVALUATION])

    def dataset(self, task: str, split: str) -> Dataset:
        raise EvaluationUnavailable(self.name, [NO_EVALUATION])

    def input_hashes(self, tasks: list[str] | None = None) -> dict[str, str]:
        """{weight file (relative to the zoo folder): sha256} of the base and `tasks`' experts (a run record's
        inputs)."""
        files = [p for m in ["base", *(tasks or self.tasks)] for p in self.weight_files(m)]
        return {p.relative_to(self.root).as_posix(): file_sha256(p) for p in files}

    def weight_files(self, model: str) -> list[Path]:
        """The safetensors files of "base" or an expert: its shards, or its one model.safetensors."""
        return list(dict.fromkeys(shard_map(self.folders[model]).values()))

    def copy_companions(self, out: Path) -> list[Path]:
        """Copy the base's config.json, generation config and tokenizer files into the model folder `out`."""
        return copy_companions(self.folders["base"], out)


def _vocab_rows(name: str) -> bool:
    """Whether a parameter's rows are the vocabulary's: the token embeddings and the output head."""
    return name in (TIED_HEAD, "model.embed_tokens.weight", "transformer.wte.weight")
