"""Hugging Face `save_pretrained` folders outside a zoo (a mergekit config's models, a LoRA adapter's base): read
tensor by tensor with the decoder zoo's reader, and a merge written as one such folder."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch
from torch import Tensor

from ..stream import SafetensorsWriter
from ..weights import ShardedReader
from ..zoo.decoder import WEIGHTS, copy_companions, model_reader, read_config


class FolderWeights(Mapping[str, Tensor]):
    """name -> tensor of a folder's safetensors files, each tensor read from disk when asked for."""

    def __init__(self, reader: ShardedReader):
        self.reader = reader

    def __getitem__(self, name: str) -> Tensor:
        return self.reader.read(name)

    def dtype(self, name: str) -> torch.dtype:
        return self.reader.dtype(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.reader.shape(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.reader.keys())

    def __len__(self) -> int:
        return len(self.reader.keys())


def read_hf_folder(path: str | Path) -> FolderWeights:
    """The weights of a `save_pretrained` folder, read lazily (one tensor in memory at a time); a tied head
    (`tie_word_embeddings`) is left out, as in a decoder zoo."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(path)!r} does not exist; give a local folder written by "
                                "save_pretrained (hub ids are not downloaded)")
    return FolderWeights(model_reader(folder, read_config(folder)))


def write_hf_folder(out: str | Path, tensors: Iterable[tuple[str, Tensor]],
                    layout: Mapping[str, tuple[torch.dtype, tuple[int, ...]]], source: str | Path) -> Path:
    """Write merged (name, tensor) pairs into out/model.safetensors tensor by tensor (its header from `layout`: name ->
    dtype, shape), and copy config.json and the tokenizer files from the folder `source`. Returns the weights file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writer = SafetensorsWriter(out / WEIGHTS, layout, metadata={"format": "pt"})
    for name, tensor in tensors:
        writer.write(name, tensor.to(layout[name][0]))
    copy_companions(Path(source), out)
    return out / WEIGHTS
