"""`explorer zoo build-demo` (train the demo zoo from seeds), `explorer zoo probe` (measure a candidate recipe
before shipping it) and `explorer zoo card demo` (its accuracy card)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_verbs(verbs) -> None:
    from ..demozoo.data import TASKS

    build = verbs.add_parser("build-demo", help="rebuild the demo zoo from its seeds (CPU minutes; the card "
                                                 "records how long)")
    build.add_argument("--out", default=None, help="output folder (default: explorer/demozoo/weights)")
    build.add_argument("--steps-scale", type=float, default=1.0, help="multiply every training step count by F")
    build.add_argument("--tasks", nargs="+", default=None, choices=TASKS, metavar="TASK",
                       help=f"build only these tasks (default: all of {', '.join(TASKS)})")
    build.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    build.add_argument("--no-card", action="store_true", help="skip writing the zoo card (README.md)")
    build.set_defaults(func=run_build)

    bd = verbs.add_parser("add-backdoors", help="add backdoored experts (BadNets corner trigger) to a demo zoo "
                                                 "without rebuilding it")
    bd.add_argument("--tasks", nargs="+", required=True, choices=TASKS, metavar="TASK", help="tasks to backdoor")
    bd.add_argument("--rate", type=float, default=0.2, help="poisoned copies per clean train image (default 0.2)")
    bd.add_argument("--target", type=int, default=0, help="the class index triggered images are relabelled to")
    bd.add_argument("--root", default=None, help="the demo zoo folder (default: explorer/demozoo/weights)")
    bd.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the build)")
    bd.set_defaults(func=run_backdoors)

    probe = verbs.add_parser("probe", help="build a candidate demo-zoo recipe (or read a built zoo) and print the "
                                           "figures that decide whether the test-time methods can work on it")
    probe.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                       help="change one field of the recipe, e.g. --set pretrain_labels=fine --set logit_scale=30")
    probe.add_argument("--seeds", nargs="+", type=int, default=[0], help="model seeds to build (default 0)")
    probe.add_argument("--steps-scale", type=float, default=1.0, help="multiply every training step count by F")
    probe.add_argument("--root", default=None, help="probe this built zoo instead of building (e.g. "
                                                    "explorer/demozoo/weights: the shipped recipe)")
    probe.add_argument("--out", default=None, help="where builds go, one folder per seed (default: a temporary "
                                                   "folder, deleted afterwards)")
    probe.add_argument("--name", default="", help="the recipe's name in the table (default: its changed fields)")
    probe.add_argument("--record", action="store_true", help="store the records in explorer/demozoo/probes.json, "
                                                             "the table the zoo card shows")
    probe.add_argument("--adamerging-steps", type=int, default=100, help="layer-wise AdaMerging's steps (default 100)")
    probe.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    probe.set_defaults(func=run_probe)

    card = verbs.add_parser("card", help="print (or write) a zoo's card with its accuracy table")
    card.add_argument("zoo", choices=["demo"], help="the zoo (only the demo zoo has a card)")
    card.add_argument("--root", default=None, help="the demo zoo folder (default: explorer/demozoo/weights)")
    card.add_argument("--write", action="store_true", help="also write the card to <root>/README.md")
    card.add_argument("--device", default="auto", help="auto, cpu or cuda")
    card.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    card.set_defaults(func=run_card)


def run_build(args: argparse.Namespace) -> int:
    import torch

    from ..demozoo.build import Recipe, build
    from ..demozoo.zoo import DEFAULT_DIR

    torch.set_num_threads(args.threads)
    recipe = Recipe(tasks=tuple(args.tasks)) if args.tasks else Recipe()
    out = Path(args.out) if args.out else DEFAULT_DIR
    build(out, recipe.scaled(args.steps_scale), log=lambda msg: print(msg, flush=True))
    print(f"wrote the demo zoo to {out}")
    if not args.no_card:
        _write_card(out, "auto")
    return 0


def run_backdoors(args: argparse.Namespace) -> int:
    import torch

    from ..demozoo.backdoor import add_backdoors
    from ..demozoo.zoo import DEFAULT_DIR
    from ..security.trigger import Trigger

    torch.set_num_threads(args.threads)
    root = Path(args.root) if args.root else DEFAULT_DIR
    add_backdoors(root, args.tasks, Trigger(target=args.target), args.rate, log=lambda msg: print(msg, flush=True))
    print(f"wrote backdoored experts to {root / 'experts' / 'backdoored'}")
    return 0


def run_probe(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from dataclasses import replace

    import torch

    from ..demozoo import probe as p
    from ..demozoo.build import Recipe

    torch.set_num_threads(args.threads)
    recipe = replace(Recipe(), **p.parse_settings(args.settings)).scaled(args.steps_scale)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for seed in ([None] if args.root else args.seeds):
            folder = Path(args.root) if args.root else out / f"seed{seed}"
            seeded = recipe if seed is None else replace(recipe, seed=seed)
            entry = p.probe(seeded, folder, args.name, build_zoo=not args.root, adamerging_steps=args.adamerging_steps,
                            log=lambda m: print(m, flush=True))
            print(json.dumps({k: entry[k] for k in ("name", "seed", "mean", "chosen")}, indent=1), flush=True)
            records.append(entry)
            if args.record:
                p.record(entry)
    print(p.table(records))
    return 0


def _write_card(root: Path | None, device: str) -> str:
    from ..demozoo.card import card, render
    from ..demozoo.zoo import DemoZoo

    zoo = DemoZoo(root)
    text = render(zoo, card(zoo, device=device))
    (zoo.root / "README.md").write_text(text)
    return text


def run_card(args: argparse.Namespace) -> int:
    import torch

    from ..demozoo.card import card, render
    from ..demozoo.zoo import DemoZoo

    torch.set_num_threads(args.threads)
    if args.write:
        print(_write_card(Path(args.root) if args.root else None, args.device))
    else:
        zoo = DemoZoo(args.root)
        print(render(zoo, card(zoo, device=args.device)))
    return 0
