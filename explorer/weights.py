"""Reading and writing weight files: safetensors everywhere, plain `.pt` state dicts read safely."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor


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

