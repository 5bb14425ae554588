"""`explorer zoo convert SRC DST`: any supported checkpoint -> a safetensors vision-tower state dict."""
from __future__ import annotations

from pathlib import Path


def add_verbs(verbs) -> None:
    parser = verbs.add_parser("convert", help="convert a checkpoint (open_clip, HF CLIP, pickled ImageEncoder) "
                              "into safetensors")
    parser.add_argument("src", help="checkpoint file: .safetensors, .pt/.bin state dict, or a pickled module")
    parser.add_argument("dst", help="output .safetensors file")
    parser.add_argument("--format", choices=("openclip", "hf"), default="openclip",  # formats.NAME_FORMATS (lazy)
                        help="output names: open_clip vision tower (default) or Hugging Face CLIP vision keys")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow unpickling SRC (runs code from the file: only for files you trust)")
    parser.add_argument("--base", help="base checkpoint supplying `proj` to HF vision-only checkpoints")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..weights import write_weights
    from ..zoo.formats import NAME_FORMATS, detect_format, read_checkpoint, to_openclip

    dst = Path(args.dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"DST must end in .safetensors (got {dst.name}): weights are written as safetensors")
    raw = read_checkpoint(args.src, allow_pickle=args.allow_pickle)
    src_format, _ = detect_format(raw)
    fill = to_openclip(read_checkpoint(args.base, allow_pickle=args.allow_pickle)) if args.base else None
    sd = to_openclip(raw, fill=fill, source=args.src)
    out = NAME_FORMATS.get(args.format).from_openclip(sd)
    write_weights(out, dst, metadata={"format": args.format, "converted_from": src_format})
    print(f"wrote {dst}: {len(out)} tensors ({args.format} names, converted from {src_format} format)")
    return 0
