"""The threshold merges (TIES, magnitude, DARE+TIES, Breadcrumbs, EMR, Consensus) at ViT-B/32 x 8 against the read
floor.

Run from the repository root:
    .venv/bin/python bench/bench_threshold_merges.py [--tasks 8] [--model ViT-B-32] [--repeats 3] [--check]
        [--only TIES Breadcrumbs]
Prints, per merge: median seconds, x the read floor (one sum over the stacked task vectors, measured in the same
run), and peak memory above the inputs. --check also runs the plain eager blocks (EXPLORER_FUSED=off, the
previous implementation) and asserts the merged weights and masks are the same bits.
"""
from __future__ import annotations

import argparse
import time

import torch
from common import measure, random_task_vectors, read_floor

import explorer as ex
from explorer.methods.engine import jit, kernels

MERGES = {
    "Task Arithmetic": ("task_arithmetic", {}),
    "TIES global top-20 %": ("ties", {"density": 0.2, "scope": "global"}),
    "TIES per tensor": ("ties", {"density": 0.2, "scope": "tensor"}),
    "magnitude global": ("magnitude", {"density": 0.2, "scope": "global"}),
    "DARE + TIES": ("dare", {"base": "ties", "density": 0.5}),
    "Breadcrumbs": ("breadcrumbs", {}),
    "EMR": ("emr", {}),
    "Consensus": ("consensus", {}),
}


def same_bits(a: ex.MergeResult, b: ex.MergeResult) -> bool:
    deltas = all(torch.equal(a.delta[n].view(torch.int32), b.delta[n].view(torch.int32)) for n in a.delta)
    masks = a.masks is None or all(torch.equal(a.masks[t][n], b.masks[t][n]) for t in a.masks for n in a.masks[t])
    return deltas and masks and a.task_scales == b.task_scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="compare bits with the plain eager blocks")
    parser.add_argument("--only", nargs="*", help="the merges to run, by the start of their label (default: all)")
    args = parser.parse_args()
    tv = random_task_vectors(args.tasks, args.model)
    start = time.perf_counter()
    kernels.warm(args.tasks)
    jit.warm()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.tasks} x {tv.numel() / 1e6:.1f} M "
          f"parameters; kernels warmed in {time.perf_counter() - start:.1f} s ({kernels.MODE})", flush=True)
    floor = read_floor(tv)
    gen, scratch = torch.Generator().manual_seed(0), kernels.Scratch(list(tv.deltas.values()))
    draw = measure(lambda: [torch.rand(d.shape, generator=gen, out=scratch.like(d)) for d in tv.deltas.values()], 1)[0]
    line = f"read floor: {floor:.3f} s; DARE's seeded uniforms by torch.rand alone: {draw:.2f} s ({draw / floor:.0f} x)"
    if jit.available(*tv.deltas.values()):
        stream = jit.TorchStream(gen)
        keep = measure(lambda: [stream.keep(d.reshape(d.shape[0], -1), 0.5) for d in tv.deltas.values()], 1)[0]
        line += f"; the same draw packed as keep masks by jit.TorchStream: {keep:.2f} s ({keep / floor:.0f} x)"
    print(line + "\n\n| merge | seconds | x floor | peak above inputs |\n|---|---|---|---|")
    for label, (method, params) in MERGES.items():
        if args.only and not any(label.startswith(prefix) for prefix in args.only):
            continue
        seconds, peak = measure(lambda: ex.merge(tv, method, **params), args.repeats)
        line = f"| {label} | {seconds:.2f} | {seconds / floor:.0f} | {peak / 2**30:.2f} GiB |"
        if args.check and method != "task_arithmetic":
            new = ex.merge(tv, method, **params)
            kernels.MODE, mode = "off", kernels.MODE
            old = ex.merge(tv, method, **params)
            kernels.MODE = mode
            line += f" same bits as the plain blocks: {same_bits(new, old)}"
            del new, old
        print(line, flush=True)


if __name__ == "__main__":
    main()
