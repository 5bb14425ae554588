"""Reading and writing weight files: safetensors everywhere, plain `.pt` state dicts read safely."""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


def read_weights(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a `.safetensors` file, or from a `.pt`/`.pth` state dict (weights_only=True)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder, not a weight file")
    if not path.is_file():
        raise FileNotFoundError(f"weight file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{str(path)!r} is not a readable safetensors file ({err}); re-export it with "
                             "safetensors.torch.save_file") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for unreadable or pickled-module files
        raise ValueError(f"{str(path)!r} is not a plain state dict that loads with weights_only=True ({err}). "
                         "If it is a pickled model, convert it once with "
                         "`explorer zoo convert --allow-pickle`.") from err
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict (name -> tensor)")
    return obj


def write_weights(state_dict: dict[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save a state dict as safetensors (tensors made contiguous and moved to the CPU)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(path), metadata=metadata)
    return path


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SafetensorsReader:
    """One tensor at a time from a safetensors file, read at its offsets (no mmap of the whole file)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        self.start = 8 + size
        self.entries: dict[str, dict[str, Any]] = header

    def keys(self) -> list[str]:
        return list(self.entries)

    def dtype(self, name: str) -> torch.dtype:
        return SAFETENSORS_DTYPES[self.entries[name]["dtype"]]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def read(self, name: str) -> Tensor:
        entry = self.entries[name]
        begin, end = entry["data_offsets"]
        buf = torch.empty(end - begin, dtype=torch.uint8)
        with open(self.path, "rb") as f:
            f.seek(self.start + begin)
            f.readinto(buf.numpy())
        return buf.view(self.dtype(name)).reshape(self.shape(name))


class ShardedReader:
    """The tensors of one model saved as shards (or one file), read like a SafetensorsReader: each name from its
    shard, tensor by tensor, so a model never needs to fit in memory."""

    def __init__(self, shards: Mapping[str, Path]):
        files = {p: SafetensorsReader(p) for p in dict.fromkeys(shards.values())}
        absent = [f"{n} ({p})" for n, p in shards.items() if n not in files[p].entries]
        if absent:
            raise ValueError(f"the shard index places tensors in shards that do not hold them: {absent[:4]}; save the "
                             f"model again with save_pretrained")
        self.readers = {name: files[p] for name, p in shards.items()}
        self.entries: dict[str, dict[str, Any]] = {n: r.entries[n] for n, r in self.readers.items()}

    def keys(self) -> list[str]:
        return list(self.readers)

    def dtype(self, name: str) -> torch.dtype:
        return self.readers[name].dtype(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.readers[name].shape(name)

    def read(self, name: str) -> Tensor:
        return self.readers[name].read(name)
