"""`explorer export --mergekit run.json [-o config.yml]`: a run record written back as a mergekit config."""
from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    parser = sub.add_parser("export", help="write a run record in another tool's format", description="Write a run "
                            "record (the .json beside merged weights) as a mergekit YAML config, for the methods "
                            "mergekit has (task_arithmetic, average, ties, dare, breadcrumbs and mergekit runs).")
    parser.add_argument("--mergekit", required=True, metavar="RECORD", help="the run record (.json) to export")
    parser.add_argument("-o", "--out", help="write the YAML here (default: print it)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=REF",
                        help="the folder or Hugging Face id of 'base' or of a task, repeatable (default: their names)")
    parser.set_defaults(func=run)


def parse_refs(pairs: list[str]) -> dict[str, str]:
    """`["base=meta-llama/Llama-3.2-1B", ...]` -> {"base": "meta-llama/Llama-3.2-1B", ...}."""
    out = {}
    for pair in pairs:
        name, sep, ref = pair.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise ValueError(f"--model {pair!r}: write NAME=REF, e.g. --model base=meta-llama/Llama-3.2-1B")
        out[name.strip()] = ref.strip()
    return out


def run(args) -> int:
    from ..interop.mergekit_export import record_yaml
    from .report import read_record

    text = record_yaml(read_record(args.mergekit), parse_refs(args.model))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
