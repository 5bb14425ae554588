"""`explorer merge` with LoRA adapters: `--base DIR --lora TASK=DIR ...` as experts, `--lora-out DIR` as output."""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    """The LoRA options of `explorer merge`."""
    parser.add_argument("--base", help="with --lora: the Hugging Face model folder (safetensors) the adapters share")
    parser.add_argument("--lora", action="append", default=[], metavar="TASK=DIR",
                        help="a PEFT LoRA adapter folder as the expert of TASK, repeatable (instead of --zoo)")
    parser.add_argument("--lora-out", metavar="DIR", help="write the merged delta here as a PEFT LoRA adapter "
                        "(truncated SVD per module; needs Hugging Face parameter names) and print the energy kept")
    parser.add_argument("--lora-rank", type=int, default=16, metavar="R", help="with --lora-out: the rank (default 16)")


def wanted(args) -> bool:
    """Whether the experts are LoRA adapters (--base / --lora) rather than a zoo."""
    return bool(args.lora or args.base)


def parse_adapters(pairs: list[str]) -> dict[str, Path]:
    """`["math=adapters/math", ...]` -> {"math": Path("adapters/math")}, names unique."""
    out: dict[str, Path] = {}
    for pair in pairs:
        task, sep, folder = pair.partition("=")
        if not sep or not task.strip() or not folder.strip():
            raise ValueError(f"--lora {pair!r}: write TASK=ADAPTER_DIR, e.g. --lora math=adapters/math")
        if task.strip() in out:
            raise ValueError(f"--lora: task {task.strip()!r} is given twice")
        out[task.strip()] = Path(folder.strip())
    return out


def lora_experts(args):
    """(TaskVectors, None, base folder, input hashes) of `--base` and its `--lora` adapters."""
    from ..checks import check_experts
    from ..interop.lora import WEIGHTS, lora_task_vectors, read_base_folder
    from ..weights import file_sha256

    clash = [flag for flag, value in (("--zoo", args.zoo), ("--experts", args.experts), ("--tasks", args.tasks))
             if value]
    if clash or not args.base:
        raise ValueError("LoRA experts take --base HF_FOLDER and --lora TASK=DIR (two or more)"
                         + (f", not {' / '.join(clash)}" if clash else ": --base is missing"))
    adapters = parse_adapters(args.lora)
    check_experts(list(adapters), "give two or more --lora TASK=ADAPTER_DIR")
    tv = lora_task_vectors(read_base_folder(args.base), adapters, device=args.device)
    inputs = {f"lora {t}": file_sha256(Path(folder) / WEIGHTS) for t, folder in adapters.items()}
    return tv, None, str(Path(args.base)), inputs


def write_lora_out(args, result, base: str) -> None:
    """Write the merge's delta as a LoRA adapter in --lora-out and print the energy kept, per module and overall."""
    from ..interop.lora_write import write_lora

    if result.delta is None or result.per_task:
        raise ValueError(f"--lora-out needs one merged delta; {result.method} gives "
                         f"{'one model per task' if result.per_task else 'a model that depends on its input'}")
    export = write_lora(result.delta, args.lora_out, args.lora_rank, base_model_name_or_path=base)
    print(f"wrote LoRA adapter {args.lora_out} (r = lora_alpha = {args.lora_rank}, scaling 1): "
          f"{100 * export.fraction:.2f}% of the merged delta's energy kept")
    for module, energy in export.modules.items():
        print(f"  {module}: rank {energy.rank}, {100 * energy.fraction:.2f}% kept")
    for name, dropped in export.dropped.items():
        print(f"  {name}: dropped (not a 2-D module weight), {100 * dropped / export.total:.2f}% of the energy")
