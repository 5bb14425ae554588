"""`explorer merge --mergekit config.yml --out DIR`: a mergekit config run on local `save_pretrained` folders, tensor
by tensor, into a folder that from_pretrained loads (the base's config and tokenizer files copied beside it)."""
from __future__ import annotations

import sys
import time
from pathlib import Path


def check_args(args) -> None:
    """One error when --mergekit is mixed with the zoo flags or has nowhere to write."""
    mixed = [flag for flag, given in (("--zoo", args.zoo), ("--method", args.method), ("-p", args.param),
                                      ("--tasks", args.tasks), ("--experts", args.experts), ("--eval", args.eval))
             if given]
    if mixed:
        raise ValueError(f"--mergekit takes the method, models and parameters from its config: drop {mixed[0]}")
    if not args.out:
        raise ValueError("--mergekit writes a model folder: give --out DIR")


def run(args) -> int:
    import torch

    from ..interop.hf_folder import read_hf_folder, write_hf_folder
    from ..interop.mergekit import parse_config
    from ..interop.mergekit_export import MERGEKIT
    from ..interop.mergekit_merge import merged_tensors
    from ..runs import RunRecord
    from ..weights import file_sha256

    check_args(args)
    start = time.perf_counter()
    plan = parse_config(Path(args.mergekit))
    names = plan.inputs() + ([plan.base_model] if plan.base_model and plan.base_model not in plan.inputs() else [])
    folders = {name: read_hf_folder(name) for name in names}
    source = plan.base_model or plan.inputs()[0]
    reference = folders[source]
    out_dtype = getattr(torch, plan.out_dtype or plan.dtype) if (plan.out_dtype or plan.dtype) else None
    layout = {n: (out_dtype if out_dtype and reference.dtype(n).is_floating_point else reference.dtype(n),
                  reference.shape(n)) for n in reference}
    base = folders[plan.base_model] if plan.base_model else None
    merged = merged_tensors(plan, folders, base, seed=args.seed)
    weights = write_hf_folder(args.out, merged, layout, source)
    (Path(args.out) / "mergekit_config.yml").write_text(plan.to_yaml())
    seconds = time.perf_counter() - start
    record = RunRecord(MERGEKIT, {"config": plan.to_config(), "seed": args.seed}, plan.inputs(),
                       str(Path(args.mergekit)), {n: str(Path(n).resolve()) for n in names}, seconds,
                       merge_path="streamed")
    record.weights = {weights.name: file_sha256(weights)}
    report = record.to_json(args.report or Path(args.out) / "run.json")
    print(f"mergekit {plan.method} of {len(plan.inputs())} models merged tensor by tensor in {seconds:.3f} s")
    print(f"wrote {args.out} (from_pretrained loads it) and {report}")
    sys.stdout.flush()
    return 0
