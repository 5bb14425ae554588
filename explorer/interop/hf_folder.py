"""Hugging Face `save_pretrained` folders (config.json + model.safetensors, or shards with
model.safetensors.index.json), read tensor by tensor and written in one file. Kept minimal and in one place so that
the decoder zoo's own folder reader can take its place."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch
from torch import Tensor

from ..stream import SafetensorsReader, SafetensorsWriter

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# Files of the source folder copied beside merged weights: the config and what the tokenizer reads.
COPIED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
          "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja")


class FolderWeights(Mapping[str, Tensor]):
    """name -> tensor of a folder's safetensors files, each tensor read from disk when asked for."""

    def __init__(self, readers: dict[str, SafetensorsReader]):
        self.readers = readers  # tensor name -> the reader of the file holding it

    def __getitem__(self, name: str) -> Tensor:
        return self.readers[name].read(name)

    def dtype(self, name: str) -> torch.dtype:
        return self.readers[name].dtype(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.readers[name].shape(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.readers)

    def __len__(self) -> int:
        return len(self.readers)


def read_hf_folder(path: str | Path) -> FolderWeights:
    """The weights of a `save_pretrained` folder, read lazily (one tensor in memory at a time)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(path)!r} does not exist; give a local folder written by "
                                "save_pretrained (hub ids are not downloaded)")
    if (folder / INDEX).is_file():
        weight_map = json.loads((folder / INDEX).read_text())["weight_map"]
        files = {f: SafetensorsReader(folder / f) for f in dict.fromkeys(weight_map.values())}
        return FolderWeights({name: files[f] for name, f in weight_map.items()})
    if (folder / SINGLE).is_file():
        reader = SafetensorsReader(folder / SINGLE)
        return FolderWeights({name: reader for name in reader.keys()})
    raise FileNotFoundError(f"model folder {str(path)!r} has neither {SINGLE} nor {INDEX}; save the model with "
                            "save_pretrained(..., safe_serialization=True)")


def write_hf_folder(out: str | Path, tensors: Iterable[tuple[str, Tensor]],
                    layout: Mapping[str, tuple[torch.dtype, tuple[int, ...]]], source: str | Path) -> Path:
    """Write merged (name, tensor) pairs into out/model.safetensors tensor by tensor (its header from `layout`: name ->
    dtype, shape), and copy config.json and the tokenizer files from the folder `source`. Returns the weights file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writer = SafetensorsWriter(out / SINGLE, layout, metadata={"format": "pt"})
    for name, tensor in tensors:
        writer.write(name, tensor.to(layout[name][0]))
    for name in COPIED:
        if (Path(source) / name).is_file():
            shutil.copy2(Path(source) / name, out / name)
    return out / SINGLE
