"""`explorer analyse`: conflict maps, mask overlaps, layer profiles and accuracy of a zoo, as tables on stdout
and, with --html, one self-contained page (plotly.js inlined, works offline)."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

WHAT = ("cosine", "signs", "masks", "layers", "spectra", "accuracy")  # figure_catalog.SECTIONS (a test checks)
DEFAULT_METHOD = {"masks": "ties", "layers": "task_arithmetic", "spectra": "tsv", "accuracy": "task_arithmetic"}


def add_parser(sub) -> None:
    parser = sub.add_parser("analyse", aliases=["analyze"], help="conflict maps, masks, layer profiles, accuracy",
                            description="Analyse a zoo's task vectors (and a merge of them). --zoo is 'demo', a "
                            "named zoo, a folder with base.safetensors + <task>.safetensors, or a decoder zoo "
                            "(base/ + one save_pretrained folder per expert).")
    parser.add_argument("--zoo", required=True, help="demo | a named zoo | a folder of safetensors files | a decoder "
                        "zoo folder")
    parser.add_argument("--what", default="cosine", help=f"comma-separated, from {', '.join(WHAT)} (default cosine)")
    parser.add_argument("--matrix", help="spectra: the parameter whose singular values are drawn (default: the "
                        "middle one of the matrices, e.g. transformer.resblocks.2.mlp.c_fc.weight on the demo zoo)")
    parser.add_argument("--method", help="the merge for masks/layers/spectra/accuracy (default: ties for masks, "
                        "tsv for spectra, "
                        "task_arithmetic otherwise)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a method parameter, repeatable (e.g. -p density=0.2)")
    parser.add_argument("--tasks", help="comma-separated subset of the zoo's tasks (default: all)")
    parser.add_argument("--topk", type=float, default=0.2, help="signs: also count each task's top-k fraction of "
                        "entries by magnitude (default 0.2)")
    parser.add_argument("--lambdas", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
                        help="accuracy: the values of the method's `scale` to sweep (comma-separated)")
    parser.add_argument("--pair", help="accuracy: two tasks A,B for the lambda_A x lambda_B interpolation grid")
    parser.add_argument("--split", default="test", help="accuracy: the split to evaluate (default test)")
    parser.add_argument("--limit", type=int, help="accuracy: at most this many images per task")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument("--zoom", action="store_true", help="cosine/signs: fit the colour scales to the values "
                        "(default: the natural ranges, cosine -1..1 and sign conflict 0..1)")
    parser.add_argument("--html", help="write every figure into this self-contained HTML page")
    parser.add_argument("--png", metavar="DIR", help="also write each figure as DIR/<name>.png (needs kaleido and "
                        "a Chromium: `apt-get install chromium`)")
    parser.set_defaults(func=run)


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"{flag} {text!r}: give comma-separated numbers, e.g. {flag} 0,0.5,1") from err


def _merge(ctx: dict, section: str):
    """The merge a section analyses: --method with its -p values, or the section's default method."""
    import explorer as ex

    from .merge import parse_params

    args = ctx["args"]
    if args.param and not args.method:
        raise ValueError("-p sets a parameter of --method; name the method too, e.g. --method ties -p density=0.1")
    method = args.method or DEFAULT_METHOD[section]
    if method not in ctx["merges"]:
        params = parse_params(method, args.param) if args.method else {}
        ctx["merges"][method] = ex.merge(ctx["tv"], method, zoo=ctx["zoo"], **params)
    return ctx["merges"][method]


def page(title: str, subtitle: str, sections: list) -> str:
    """One HTML page with every figure; plotly.js is inlined once, so the page works offline."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
             f"<body style='font-family:sans-serif;margin:2em'><h1>{html.escape(title)}</h1>"
             f"<p>{html.escape(subtitle)}</p>"]
    for i, (heading, _, fig) in enumerate(sections):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0))
    parts.append("</body></html>")
    return "\n".join(parts)


def slug(heading: str) -> str:
    """A file name from a figure heading: `TIES: mask overlap (Jaccard)` -> `ties-mask-overlap-jaccard`."""
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def write_pngs(folder: str, sections: list) -> list[Path]:
    """Each figure as a PNG at its own size (one browser session for all of them); returns the paths."""
    import plotly.io as pio

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    figs = [fig for _, _, fig in sections]
    paths = [out / f"{slug(heading)}.png" for heading, _, _ in sections]
    try:
        pio.write_images(figs, paths, width=[f.layout.width or 1000 for f in figs],
                         height=[f.layout.height or 560 for f in figs], scale=2)
    except (RuntimeError, ValueError, ImportError) as err:
        raise RuntimeError(f"--png could not render with kaleido ({err}); install Chromium "
                           "(`apt-get install chromium`) and kaleido (`pip install kaleido`), or use --html") from err
    return paths


def _inputs(args: Any, tv, zoo, what: list[str]):
    """The figure table's inputs for these flags: the merges each section shows, accuracy tables, options."""
    from .. import analysis as A
    from ..figure_catalog import Inputs
    from .merge import check_evaluable

    merges: dict = {}
    if "accuracy" in what:
        check_evaluable(zoo, tv.tasks, args.split, "--what accuracy needs a zoo with heads and data (e.g. --zoo demo)")
    pair = None
    if args.pair:
        pair = tuple(t.strip() for t in args.pair.split(","))
        if len(pair) != 2:
            raise ValueError(f"--pair {args.pair!r}: name exactly two tasks, e.g. --pair {','.join(tv.tasks[:2])}")
    return Inputs(tv, merge=lambda section: _merge({"args": args, "tv": tv, "zoo": zoo, "merges": merges}, section),
                  scores=lambda res: A.compare(zoo, {res.method: res}, split=args.split, limit=args.limit),
                  zoo=zoo, topk=args.topk, zoom=args.zoom, lambdas=_floats(args.lambdas, "--lambdas"), pair=pair,
                  split=args.split, limit=args.limit, matrix=args.matrix)


def run(args: Any) -> int:
    from .. import figure_catalog as F
    from ..evaluate import percent
    from .merge import load_task_vectors

    what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = [w for w in what if w not in WHAT]
    if unknown or not what:
        raise ValueError(f"--what {args.what!r}: choose from {', '.join(WHAT)} (comma-separated)")
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    tv, zoo, zoo_id, _ = load_task_vectors(args.zoo, tasks, args.device)
    inputs = _inputs(args, tv, zoo, what)
    if "masks" in what and not inputs.merge("masks").masks:
        raise ValueError(f"{inputs.merge('masks').method} keeps no masks; use a masking method such as ties, dare, "
                         "magnitude, breadcrumbs, tall_masks, consensus or emr")
    made = F.make(F.select(sections=tuple(what)), inputs)
    sections = [(m.heading, m.table, m.figure) for m in made.values() if m is not None]
    for heading, table, _ in sections:
        if table is not None:
            shown = percent(table, digits=2) if "merged" in table.columns else table  # accuracy: in %
            print(f"== {heading}\n{shown.to_string(float_format=lambda v: f'{v:.4f}')}\n")
    if args.html:
        subtitle = f"zoo {zoo_id} · tasks {', '.join(tv.tasks)} · {len(sections)} figures"
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(page(f"Model Merging Explorer: {', '.join(what)}", subtitle, sections),
                                   encoding="utf-8")
        print(f"wrote {args.html}")
    if args.png:
        for path in write_pngs(args.png, sections):
            print(f"wrote {path}")
    return 0
