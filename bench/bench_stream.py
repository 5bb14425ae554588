"""A zoo larger than memory: `explorer merge --zoo <folder> --out` streamed parameter by parameter from disk.

Run from the repository root (files are written under --dir, about 350 MB per ViT-B/32 expert and 1.2 GB per
ViT-L/14 one, and deleted afterwards unless --keep):
    .venv/bin/python bench/bench_stream.py --model ViT-B-32 --experts 8 --dir /tmp/stream-b32
    .venv/bin/python bench/bench_stream.py --model ViT-L-14 --experts 20 --dir /tmp/stream-l14
Prints the inputs' size, the merge's wall time and its peak resident memory (the child process's max RSS).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from explorer.stream import SafetensorsWriter
from explorer.zoo.openclip import build_tower, model_config

NOISE = 1 << 22  # one block of Gaussian noise, read at a different offset per expert and tensor (cheap to write)


def write_zoo(folder: Path, model: str, experts: int) -> int:
    """base.safetensors (a random open_clip tower, `visual.` keys) and `expert_i.safetensors` = base + 1e-3 x noise,
    written tensor by tensor. Returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {f"visual.{k}": v.detach() for k, v in build_tower(model_config(model), True).state_dict().items()}
    layout = {n: (v.dtype, tuple(v.shape)) for n, v in base.items()}
    noise = torch.randn(2 * NOISE, generator=torch.Generator().manual_seed(0)).mul_(1e-3)
    writer = SafetensorsWriter(folder / "base.safetensors", layout)
    for name, v in base.items():
        writer.write(name, v)
    for e in range(experts):
        writer = SafetensorsWriter(folder / f"expert_{e:02d}.safetensors", layout)
        for i, (name, v) in enumerate(base.items()):
            flat = v.reshape(-1)
            start = (e * 7919 + i * 104729) % NOISE
            delta = torch.cat([noise[start:start + NOISE]] * (flat.numel() // NOISE + 1))[:flat.numel()]
            writer.write(name, (flat + delta).reshape(v.shape))
        print(f"  wrote expert {e + 1}/{experts}", flush=True)
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--dir", default="/tmp/stream-b32")
    parser.add_argument("--method", default="ties")
    parser.add_argument("-p", "--param", action="append", default=["density=0.2", "scope=global"])
    parser.add_argument("--keep", action="store_true", help="keep the generated folder (deleted by default)")
    args = parser.parse_args()
    folder = Path(args.dir)
    start = time.perf_counter()
    if not (folder / "base.safetensors").is_file():
        size = write_zoo(folder, args.model, args.experts)
    else:
        size = sum(p.stat().st_size for p in folder.glob("*.safetensors") if p.name != "merged.safetensors")
    print(f"{args.experts} {args.model} experts: {size / 1e9:.1f} GB of inputs (written in "
          f"{time.perf_counter() - start:.0f} s)", flush=True)
    out = folder / "merged" / "merged.safetensors"
    cmd = [sys.executable, "-m", "explorer", "merge", "--zoo", str(folder), "--method", args.method,
           *[a for p in args.param for a in ("-p", p)], "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"{args.method} {' '.join(args.param)}: {seconds:.0f} s, peak RSS {peak / 2**30:.2f} GiB "
          f"(inputs {size / 2**30:.1f} GiB, this machine {_total_memory() / 2**30:.0f} GiB)")
    if not args.keep:
        shutil.rmtree(folder)


def _total_memory() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) * 1024


if __name__ == "__main__":
    main()
