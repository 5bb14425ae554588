"""Write a zoo of random ViT-B/32-shaped experts, as a researcher's own folder of checkpoints looks on disk.

    python bench/make_random_zoo.py --out /tmp/own-zoo-b32 --experts 8

base.safetensors is an open_clip image tower (`visual.` keys, with the projection); the experts alternate between
the layout transformers >= 5 writes for `CLIPVisionModel.save_pretrained` (no `vision_model.` prefix, no projection)
and open_clip's. Each expert is base + noise (per tensor: `--noise` x the tensor's standard deviation), so the task
vectors are known exactly. About 350 MB per checkpoint; never part of the tests.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from explorer.weights import write_weights
from explorer.zoo.formats import openclip_to_hf
from explorer.zoo.openclip import build_tower, model_config

TASKS = ("sun397", "cars", "resisc45", "eurosat", "svhn", "gtsrb", "mnist", "dtd")


def transformers5_vision(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip tower keys -> what transformers 5 `CLIPVisionModel.save_pretrained` writes (bare keys)."""
    hf = openclip_to_hf(sd)
    return {k[len("vision_model."):]: v for k, v in hf.items() if k.startswith("vision_model.")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/own-zoo-b32")
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    base = {k: v.detach().clone() for k, v in build_tower(model_config("ViT-B-32"), True).state_dict().items()}
    write_weights({f"visual.{k}": v for k, v in base.items()}, out / "base.safetensors")
    for i, task in enumerate(TASKS[:args.experts]):
        gen = torch.Generator().manual_seed(args.seed + 1 + i)
        expert = {k: v + args.noise * v.std().clamp_min(1e-3) * torch.randn(v.shape, generator=gen)
                  for k, v in base.items()}
        sd = transformers5_vision(expert) if i % 2 == 0 else {f"visual.{k}": v for k, v in expert.items()}
        write_weights(sd, out / f"{task}.safetensors")
        print(f"wrote {out / task}.safetensors ({'transformers 5' if i % 2 == 0 else 'open_clip'} layout)", flush=True)
    print(f"{args.experts} experts of {sum(v.numel() for v in base.values()) / 1e6:.1f} M parameters in "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
