"""`explorer merge`: merge a zoo's experts with one method; optionally evaluate and export."""
from __future__ import annotations

import sys
from pathlib import Path

from . import lora_cli


def add_parser(sub) -> None:
    parser = sub.add_parser("merge", help="merge experts with a method", description="Merge a zoo's experts. "
                            "--zoo is 'demo', a named zoo, a zoo file (JSON/YAML: arch, base, experts, text, "
                            "data_root), a folder with base.safetensors + <task>.safetensors, or a decoder zoo "
                            "(base/ + one save_pretrained folder per expert); or PEFT LoRA adapters over a Hugging "
                            "Face base: --base DIR --lora TASK=DIR --lora TASK=DIR; or a mergekit config: --mergekit.")
    parser.add_argument("--zoo", help="demo | a named zoo | a zoo file | a folder of safetensors files "
                        "| a decoder zoo folder")
    parser.add_argument("--method", help="a method name (see `explorer methods`)")
    parser.add_argument("--mergekit", metavar="CONFIG", help="instead of --zoo and --method: run a mergekit YAML "
                        "config on local save_pretrained folders into the folder --out (see docs/mergekit.md)")
    parser.add_argument("--seed", type=int, default=0, help="with --mergekit: seed of DARE's and DELLA's random masks")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a method parameter, repeatable (e.g. -p density=0.2 -p scale=1.0)")
    parser.add_argument("--tasks", help="comma-separated subset of the zoo's tasks (default: all)")
    parser.add_argument("--experts", help="demo zoo: swap in expert variants, e.g. signs=backdoored,digits=backdoored")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument("--eval", action="store_true", help="evaluate per-task accuracy on the test split")
    parser.add_argument("--limit", type=int, help="with --eval: at most this many test images per task")
    parser.add_argument("--out", help="write the merged weights here (.safetensors) and a JSON record beside them; "
                        "a decoder zoo (Hugging Face folders): a model folder that from_pretrained loads")
    parser.add_argument("--report", help="write the JSON run record here")
    parser.add_argument("--stream", choices=("auto", "on", "off"), default="auto",
                        help="a plain folder of safetensors or a decoder zoo: merge parameter by parameter from disk, "
                             "never holding the experts in memory (auto: when their files exceed 1 GiB and --out is "
                             "given)")
    lora_cli.add_arguments(parser)
    parser.set_defaults(func=run)


def parse_params(method: str, pairs: list[str]) -> dict:
    """`["density=0.2", ...]` -> typed, validated values for `method`'s declared parameters."""
    from ..methods import registry

    m = registry.get(method)
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"-p {pair!r}: write parameters as NAME=VALUE, e.g. -p scale=0.3")
        out[name.strip()] = m.param(name.strip()).parse(text.strip())
    return out


def parse_variants(text: str | None) -> dict[str, str]:
    """`"signs=backdoored,digits=backdoored"` -> {"signs": "backdoored", "digits": "backdoored"}."""
    out = {}
    for pair in (text or "").split(","):
        if pair.strip():
            task, sep, variant = pair.partition("=")
            if not sep:
                raise ValueError(f"--experts {pair!r}: write TASK=VARIANT, e.g. --experts signs=backdoored")
            out[task.strip()] = variant.strip()
    return out


def open_zoo(zoo_arg: str, experts: dict[str, str] | None = None):
    """The zoo `--zoo` names, read by `load_zoo` as the dashboard reads it; `experts`: demo-zoo variants."""
    import explorer as ex

    return ex.load_zoo(zoo_arg, **({"experts": experts} if experts else {}))


def zoo_task_vectors(zoo, zoo_arg: str, tasks: list[str] | None, device: str):
    """(TaskVectors, zoo, zoo id, input hashes) for a run record: a folder zoo names its files, others a fingerprint."""
    import explorer as ex

    from ..checks import check_experts
    from ..zoo.decoder import DecoderZoo
    from ..zoo.folder import FolderZoo

    folder = isinstance(zoo, FolderZoo)
    check_experts(tasks or zoo.tasks, "name two or more with --tasks" if tasks is not None
                  else "put two or more <task>.safetensors beside base.safetensors" if folder
                  else "put two or more expert folders (save_pretrained) beside base/"
                  if isinstance(zoo, DecoderZoo) else "name two or more with --tasks")
    tv = ex.task_vectors(zoo, tasks=tasks, device=device)
    if folder:
        return tv, zoo, str(Path(zoo_arg)), zoo.input_hashes()
    if isinstance(zoo, DecoderZoo):
        return tv, zoo, str(Path(zoo_arg)), zoo.input_hashes(tv.tasks)
    return tv, zoo, zoo.source or zoo_arg, {"zoo_fingerprint": zoo.fingerprint()}


def load_task_vectors(zoo_arg: str, tasks: list[str] | None, device: str, experts: dict[str, str] | None = None):
    """(TaskVectors, zoo, zoo id, input hashes) of a zoo name, a zoo file, a demo-zoo build or a folder of
    checkpoints."""
    return zoo_task_vectors(open_zoo(zoo_arg, experts), zoo_arg, tasks, device)


def check_evaluable(zoo, tasks: list[str], split: str, need: str) -> None:
    """A ValueError (`need`, then what the zoo lacks) when `tasks` of `zoo` cannot be evaluated on `split`."""
    from ..zoo.base import EvaluationUnavailable

    try:
        zoo.check_evaluable(tasks, split)
    except EvaluationUnavailable as err:
        raise ValueError(f"{need}: {err}") from None


def streamed_tasks(args, zoo) -> list[str] | None:
    """The tasks this merge streams from disk (a folder of safetensors or a decoder zoo, with --out), else None."""
    from ..checks import check_experts
    from ..stream import should_stream
    from ..zoo.decoder import DecoderZoo
    from ..zoo.folder import FolderZoo

    if args.stream == "off":
        return None
    decoder = isinstance(zoo, DecoderZoo)
    refusal = (None if decoder else zoo.stream_refusal() if isinstance(zoo, FolderZoo)
               else "it is not a folder of checkpoints")
    if refusal:
        if args.stream == "on":
            raise ValueError(f"--stream on reads a plain folder of safetensors in open_clip names (base.safetensors "
                             f"+ <task>.safetensors) or a decoder zoo; {args.zoo!r} is not one: {refusal}")
        return None
    experts = {t: zoo.weight_files(t) if decoder else [zoo.files[f"expert {t}"]] for t in zoo.tasks}
    if args.stream == "on" and (not args.out or args.eval):
        raise ValueError("a streamed merge writes its result tensor by tensor: give --out (and no --eval: a folder "
                         "of weights has no evaluation data)")
    if args.stream == "auto" and (not args.out or args.eval or not should_stream(sum(experts.values(), []))):
        return None
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else list(experts)
    unknown = [t for t in tasks if t not in experts]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; the folder has {list(experts)}")
    check_experts(tasks, "put two or more expert folders (save_pretrained) beside base/" if decoder
                  else "put two or more <task>.safetensors beside base.safetensors")
    return tasks


def run_streamed(args, params: dict, zoo, tasks: list[str]) -> int:
    """Merge parameter by parameter from disk into --out (a decoder zoo: a model folder), and write the run record
    (merge_path "streamed", with the peak resident memory)."""
    from ..runs import RunRecord, peak_rss_mib
    from ..stream import merge_folder, merge_readers
    from ..weights import file_sha256
    from ..zoo.decoder import WEIGHTS, DecoderZoo

    out = Path(args.out)
    if isinstance(zoo, DecoderZoo):
        weights, report = out / WEIGHTS, args.report or out / "run.json"
        values, seconds = merge_readers(zoo.readers["base"], {t: zoo.readers[t] for t in tasks}, args.method, params,
                                        weights, base_dtypes=True, metadata={"format": "pt"})
        zoo.copy_companions(out)
        inputs = zoo.input_hashes(tasks)
    else:
        weights, report = out, args.report or out.with_suffix(".json")
        base, experts = zoo.files["base"], {t: zoo.files[f"expert {t}"] for t in tasks}
        values, seconds = merge_folder(base, experts, args.method, params, out)
        inputs = {p.name: file_sha256(p) for p in (base, *experts.values())}
    record = RunRecord(args.method, values, list(tasks), str(Path(args.zoo)), inputs, seconds,
                       merge_path="streamed", peak_rss_mib=peak_rss_mib())
    record.weights = {weights.name: file_sha256(weights)}
    report = record.to_json(report)
    print(f"{args.method} merged parameter by parameter from disk in {seconds:.3f} s "
          f"(peak memory {record.peak_rss_mib:.0f} MiB RSS)")
    print(f"wrote {args.out} and {report}")
    sys.stdout.flush()
    return 0


def save_out(args, result, zoo, zoo_id: str, inputs: dict, scores) -> None:
    """Write --out: merged safetensors and a record beside them, or for a decoder zoo a model folder."""
    import explorer as ex

    from ..runs import save_folder
    from ..zoo.decoder import DecoderZoo

    if isinstance(zoo, DecoderZoo):
        save_folder(result, args.out, zoo, inputs=inputs, scores=scores, report=args.report)
        print(f"wrote the model folder {args.out} (from_pretrained loads it) and "
              f"{args.report or Path(args.out) / 'run.json'}")
    else:
        ex.save(result, args.out, zoo=zoo_id, inputs=inputs, scores=scores, report=args.report)
        print(f"wrote {args.out} and {args.report or Path(args.out).with_suffix('.json')}")


def check_out(args, zoo) -> None:
    """Before any merge: a decoder zoo's --out is a folder (CLIP zoos write .safetensors)."""
    from ..zoo.decoder import DecoderZoo

    if args.out and isinstance(zoo, DecoderZoo) and (args.out.endswith(".safetensors") or Path(args.out).is_file()):
        raise ValueError(f"--out {args.out!r}: a decoder zoo's merge is a model folder (config.json, "
                         f"model.safetensors, tokenizer files); give a directory, e.g. --out merged/")


def run(args) -> int:
    import explorer as ex

    from ..evaluate import percent

    if args.mergekit:
        from . import mergekit_run

        return mergekit_run.run(args)
    if not args.method:
        raise ValueError("give --method (see `explorer methods`) with --zoo or --base/--lora, or --mergekit CONFIG")
    params = parse_params(args.method, args.param)
    if lora_cli.wanted(args):
        tv, zoo, zoo_id, inputs = lora_cli.lora_experts(args)
    else:
        if not args.zoo:
            raise ValueError("give --zoo, or --base with two or more --lora TASK=ADAPTER_DIR, or --mergekit CONFIG")
        variants = parse_variants(args.experts)
        zoo = open_zoo(args.zoo, variants)
        check_out(args, zoo)
        streamed = None if args.lora_out else streamed_tasks(args, zoo)  # --lora-out merges in memory
        if streamed is not None:
            return run_streamed(args, params, zoo, streamed)
        tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
        tv, zoo, zoo_id, inputs = zoo_task_vectors(zoo, args.zoo, tasks, args.device)
        if variants:
            inputs["experts"] = args.experts
    result = ex.merge(tv, args.method, **params)
    print(f"{result!r} in {result.info['seconds']:.3f} s")
    if args.lora_out:
        lora_cli.write_lora_out(args, result, zoo_id)
    scores = None
    if args.eval:
        if zoo is None:
            raise ValueError("--eval needs a zoo with heads and data (e.g. --zoo demo); LoRA experts have neither")
        check_evaluable(zoo, tv.tasks, "test", "--eval needs a zoo with heads and data (e.g. --zoo demo)")
        scores = ex.evaluate(zoo, result, split="test", limit=args.limit, device=args.device)
        images = "" if args.limit is None else f" (first {args.limit} images per task)"
        print(f"accuracy (%) on the test split{images}:")
        print(percent(scores.table, digits=2).to_string(index=False))
        if scores.attack is not None:
            print("attack success rate (%) on triggered test images of the non-target classes:")
            print(percent(scores.attack, digits=2).to_string(index=False))
    if args.out:
        save_out(args, result, zoo, zoo_id, inputs, scores)
    elif args.report:
        from ..runs import RunRecord

        RunRecord.of(result, zoo=zoo_id, inputs=inputs, scores=scores).to_json(args.report)
        print(f"wrote {args.report}")
    sys.stdout.flush()
    return 0
