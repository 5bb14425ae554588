"""The timing half of bench/gpu_check.sh: issue 12's merges on one device in float32 and float16, and the evaluation
throughput (images/s) of a ViT-B/32-shaped open_clip image tower with random weights on synthetic images.

Run: .venv/bin/python bench/device_check.py --device cuda [--quick] [--tests tests.xml] --out summary.md
Task vectors: 8 random experts with the exact shapes of open_clip ViT-B/32's visual tower (87.8 M parameters each;
`--quick`: the embedding and the first block only, 9.8 M), Gaussian values as bench/bench_subspace_scale.py.
"Floor" is one sum over the stacked task vectors. Every time is the median of `--repeats` runs after one warm-up
run, with the device synchronised; a merge that fails is reported with its error, never hidden.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from torch.func import functional_call

import explorer as ex
from explorer.device import resolve_device
from explorer.taskvec import TaskVectors
from explorer.zoo.openclip import build_tower, model_config, tower_shapes

# Issue 12's table: label -> (method, params)
MERGES = {
    "Task Arithmetic": ("task_arithmetic", {"scale": 0.3}),
    "TIES global top-20 %": ("ties", {"density": 0.2, "scope": "global"}),
    "TIES per tensor": ("ties", {"density": 0.2, "scope": "tensor"}),
    "Breadcrumbs": ("breadcrumbs", {}),
    "EMR": ("emr", {}),
    "Consensus": ("consensus", {}),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def median_seconds(fn, dev: torch.device, repeats: int) -> float:
    fn()  # warm-up: allocator, kernels, compiled code
    times = []
    for _ in range(repeats):
        sync(dev)
        start = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_task_vectors(dev: torch.device, dtype: torch.dtype, quick: bool, tasks: int = 8) -> TaskVectors:
    shapes = tower_shapes(model_config("ViT-B-32"))
    if quick:  # the embedding, the first block and the head: 9.8 M parameters
        shapes = {k: s for k, s in shapes.items() if "resblocks." not in k or k.startswith("transformer.resblocks.0.")}
    gen = torch.Generator(dev).manual_seed(0)
    deltas = {k: (1e-3 * torch.randn(tasks, *s, generator=gen, device=dev)).to(dtype) for k, s in shapes.items()}
    base = {k: torch.zeros(s, device=dev) for k, s in shapes.items()}
    return TaskVectors([f"task{t}" for t in range(tasks)], base, deltas)


def time_merges(dev: torch.device, quick: bool, repeats: int) -> list[dict]:
    rows = []
    for dtype_name, dtype in DTYPES.items():
        tv = random_task_vectors(dev, dtype, quick)
        floor = median_seconds(lambda: sum(float(d.sum()) for d in tv.deltas.values()), dev, repeats)
        rows.append({"merge": "floor (one sum)", "dtype": dtype_name, "seconds": floor, "x_floor": 1.0,
                     "peak_gib": None, "error": None, "numel": tv.numel()})
        for label, (method, params) in MERGES.items():
            row = {"merge": label, "dtype": dtype_name, "seconds": None, "x_floor": None, "peak_gib": None,
                   "error": None, "numel": tv.numel()}
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            try:
                row["seconds"] = median_seconds(lambda: ex.merge(tv, method, **params), dev, repeats)
                row["x_floor"] = row["seconds"] / floor
            except (RuntimeError, ValueError, TypeError, NotImplementedError) as err:
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
            if dev.type == "cuda":
                row["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
            rows.append(row)
    return rows


@torch.no_grad()
def time_evaluation(dev: torch.device, quick: bool) -> list[dict]:
    """Images/s of the ViT-B/32 image tower run functionally on its state dict (as explorer's evaluation does)."""
    cfg = model_config("ViT-B-32")
    batch, batches = (4, 1) if quick else ((256, 8) if dev.type == "cuda" else (32, 4))
    rows = []
    for dtype_name, dtype in DTYPES.items():
        if dtype == torch.float16 and dev.type == "cpu":  # no fast half-precision kernels on CPUs: minutes per batch
            rows.append({"dtype": dtype_name, "batch": batch, "images": 0, "images_per_s": None,
                         "error": "skipped on the CPU (half precision is for GPUs)"})
            continue
        torch.manual_seed(0)
        model = build_tower(cfg, True).to(dev, dtype).eval()
        weights = dict(model.state_dict())
        size = cfg["vision_cfg"]["image_size"]
        images = torch.randn(batch, 3, size, size, device=dev, dtype=dtype)
        row = {"dtype": dtype_name, "batch": batch, "images": batch * batches, "images_per_s": None, "error": None}
        try:
            seconds = median_seconds(lambda: [functional_call(model, weights, (images,)) for _ in range(batches)],
                                     dev, 1)
            row["images_per_s"] = batch * batches / seconds
        except (RuntimeError, NotImplementedError) as err:
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        rows.append(row)
    return rows


def test_counts(path: Path | None) -> dict | None:
    """tests, failures, errors, skipped and seconds from a pytest --junitxml file (None without one)."""
    if path is None or not path.is_file():
        return None
    suite = ET.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    return {k: float(suite.get(k, 0)) if k == "time" else int(suite.get(k, 0))
            for k in ("tests", "failures", "errors", "skipped", "time")}


def markdown(dev: torch.device, quick: bool, tests: dict | None, merges: list[dict], evals: list[dict],
             seconds: float) -> str:
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    numel = merges[0]["numel"]
    lines = [f"# Device check: {dev.type} ({name})", "",
             f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average "
             f"{os.getloadavg()[0]:.1f}, quick={quick}, timings {seconds:.0f} s", ""]
    if tests is None:
        lines += ["Test suite: not run (no junit file).", ""]
    else:
        passed = tests["tests"] - tests["failures"] - tests["errors"] - tests["skipped"]
        lines += [f"Test suite (EXPLORER_DEVICE={dev.type}): {passed} passed, {tests['failures']} failed, "
                  f"{tests['errors']} errors, {tests['skipped']} skipped of {tests['tests']} in "
                  f"{tests['time']:.0f} s", ""]
    lines += [f"## Merges: 8 task vectors x {numel / 1e6:.1f} M parameters", "",
              "| merge | dtype | seconds | x floor | peak GiB (device) |", "|---|---|---|---|---|"]
    for r in merges:
        if r["error"]:
            lines.append(f"| {r['merge']} | {r['dtype']} | failed: {r['error']} | | |")
        else:
            peak = "" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
            lines.append(f"| {r['merge']} | {r['dtype']} | {r['seconds']:.4f} | {r['x_floor']:.1f} | {peak} |")
    lines += ["", "## Evaluation throughput: ViT-B/32 image tower, random weights, synthetic 224x224 images", "",
              "| dtype | batch | images | images/s |", "|---|---|---|---|"]
    for r in evals:
        value = r["error"] if r["error"] else f"{r['images_per_s']:.1f}"
        lines.append(f"| {r['dtype']} | {r['batch']} | {r['images']} | {value} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda | cpu | mps (default cuda)")
    parser.add_argument("--quick", action="store_true", help="9.8 M parameters per task, small batches")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tests", type=Path, help="the test suite's junit XML, summarised too")
    parser.add_argument("--out", type=Path, default=Path("device_check.md"))
    args = parser.parse_args()
    dev = resolve_device(args.device)
    start = time.perf_counter()
    merges = time_merges(dev, args.quick, args.repeats)
    evals = time_evaluation(dev, args.quick)
    text = markdown(dev, args.quick, test_counts(args.tests), merges, evals, time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
