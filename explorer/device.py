"""Device and dtype policy: one place decides where tensors live (cuda > mps > cpu, or $EXPLORER_DEVICE)."""
from __future__ import annotations

import os

import torch

DEVICE_ENV = "EXPLORER_DEVICE"  # what "auto" means when set: e.g. cpu on a GPU machine, or the test suite on cuda

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn "auto" (or None) into $EXPLORER_DEVICE when set, else the best available device; pass explicit devices
    through."""
    if isinstance(device, torch.device):
        return device
    forced = os.environ.get(DEVICE_ENV, "auto")
    if (device is None or device == "auto") and forced != "auto":
        try:
            return resolve_device(forced)
        except ValueError as err:
            raise ValueError(f"{DEVICE_ENV}={forced!r}: {err}") from err
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'mps'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available: use device='auto' or 'cpu'")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None = "float32") -> torch.dtype:
    """Accept a torch dtype or its name; task vectors are float32 unless float16/bfloat16 is asked for."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype {dtype} is not supported: use one of {sorted(_DTYPES)}")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported: use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]
