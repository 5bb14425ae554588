"""Zoos larger than memory: a folder of safetensors read tensor by tensor (positioned reads at the offsets of each
file's header, so memory holds one stacked parameter, never the experts' state dicts), merged parameter by
parameter by the method's own streaming hook (`Method.stream`) and written tensor by tensor. Same bits as in memory."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Union

import torch
from torch import Tensor

from .checks import raise_nonfinite
from .methods import registry
from .weights import SAFETENSORS_DTYPES, SafetensorsReader, ShardedReader

STREAM_ABOVE = 1 << 30  # bytes of expert checkpoints above which `explorer merge --stream auto` streams
_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
Reader = Union[SafetensorsReader, ShardedReader]  # one model's tensors: a file, or shards


class SafetensorsWriter:
    """A safetensors file written tensor by tensor: the header (every name, dtype and shape) goes first."""

    def __init__(self, path: str | Path, layout: Mapping[str, tuple[torch.dtype, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None):
        self.path = Path(path)
        header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
        offset = 0
        for name, (dtype, shape) in layout.items():
            nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
            header[name] = {"dtype": _NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self.offsets = {n: 8 + len(text) + e["data_offsets"][0] for n, e in header.items() if n != "__metadata__"}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            f.truncate(8 + len(text) + offset)

    def write(self, name: str, tensor: Tensor) -> None:
        with open(self.path, "r+b") as f:
            f.seek(self.offsets[name])
            f.write(tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())


class FolderDeltas(Mapping[str, Tensor]):
    """name -> stacked float32 task vectors `[T, ...]` of a folder's experts, read from disk on each access (the
    in-memory `task_vectors(base, experts)` computes the same values)."""

    def __init__(self, base: Reader, experts: dict[str, Reader]):
        self.base, self.experts = base, experts
        self.names = [n for n in base.keys() if torch.empty((), dtype=base.dtype(n)).is_floating_point()]
        problems = [f"expert {t!r}: {sorted(set(self.names) - set(r.keys()))[:8]} missing"
                    for t, r in experts.items() if set(self.names) - set(r.keys())]
        problems += [f"expert {t!r}: {n} has shape {r.shape(n)}, the base {base.shape(n)}"
                     for t, r in experts.items() for n in self.names if n in r.entries and r.shape(n) != base.shape(n)]
        if problems:
            raise ValueError("experts do not match the base architecture:\n  " + "\n  ".join(problems[:16])
                             + "\nUse checkpoints fine-tuned from this base (same architecture and parameter names).")

    def __getitem__(self, name: str) -> Tensor:
        theta0 = self.theta0(name)
        stacked = torch.stack([self._finite(t, name, r.read(name).to(torch.float32)) for t, r in self.experts.items()])
        return stacked.sub_(theta0)

    def theta0(self, name: str) -> Tensor:
        return self._finite("base", name, self.base.read(name).to(torch.float32))

    @staticmethod
    def _finite(owner: str, name: str, x: Tensor) -> Tensor:
        if not bool(torch.isfinite(x).all()):
            raise_nonfinite([f"{owner}: {name}"], "non-finite weights (NaN or Inf) cannot be merged",
                            "Re-export the named checkpoint (a diverged fine-tune, or a corrupt file).")
        return x

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def should_stream(expert_files: list[Path]) -> bool:
    """Stream when the experts' checkpoints exceed STREAM_ABOVE bytes (the in-memory path holds about twice that)."""
    return sum(p.stat().st_size for p in expert_files) > STREAM_ABOVE


def merged_deltas(deltas: Mapping[str, Tensor], method: str, params: dict[str, Any]) -> Iterator[tuple[str, Tensor]]:
    """(name, merged task vector) parameter by parameter, from the method's streaming hook (`Method.stream`,
    which runs its global passes first); a method without one is refused, naming those that stream."""
    m = registry.get(method)
    if m.stream is None:
        raise ValueError(f"method {method!r} does not run parameter by parameter; streamed merges support "
                         f"{', '.join(registry.streamable())}. Use --stream off (the whole zoo in memory) for it.")
    return m.stream(deltas, m.resolve(params))


def merge_folder(base_file: Path, expert_files: dict[str, Path], method: str, params: dict[str, Any],
                 out: str | Path) -> tuple[dict[str, Any], float]:
    """Merge a folder's experts parameter by parameter into `out` (safetensors: theta_0 + delta as float32, the
    base's other entries as they are). Returns (the resolved parameters, seconds)."""
    return merge_readers(SafetensorsReader(base_file), {t: SafetensorsReader(f) for t, f in expert_files.items()},
                         method, params, out)


def merge_readers(base: Reader, experts: dict[str, Reader], method: str, params: dict[str, Any], out: str | Path,
                  *, base_dtypes: bool = False, metadata: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """Merge the experts' tensors parameter by parameter into the safetensors file `out`: theta_0 + delta as float32
    (or, with `base_dtypes`, in each base tensor's dtype, as a model folder keeps them), the base's other entries as
    they are. Returns (the resolved parameters, seconds)."""
    start = time.perf_counter()
    deltas = FolderDeltas(base, experts)
    merged = merged_deltas(deltas, method, params)  # a method that does not stream is refused before any write
    layout = {n: (base.dtype(n) if base_dtypes or n not in deltas.names else torch.float32, base.shape(n))
              for n in base.keys()}
    writer = SafetensorsWriter(out, layout, metadata={"method": method, "layout": "merged", **(metadata or {})})
    for name in base.keys():
        if name not in deltas.names:
            writer.write(name, base.read(name))
    for name, delta in merged:
        writer.write(name, (deltas.theta0(name) + delta).to(layout[name][0]))
    return registry.get(method).resolve(params), time.perf_counter() - start
