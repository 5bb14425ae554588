"""`explorer sweep`: merge + evaluate every point of a grid of one method's parameters, here or on Ray; the table,
the best setting and a figure of accuracy over the grid."""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    parser = sub.add_parser("sweep", help="merge + evaluate a grid of a method's parameters (local processes or Ray)",
                            description="Merge and evaluate every combination of the -p values. VALUES is a list "
                            "(scale=0.3,0.6,1.0) or start:stop:step with stop included (density=0.1:0.5:0.1); each "
                            "value is checked against the method's declared range. Runs a process per core "
                            "(--engine local), or one Ray task per grid point (--engine ray, needs `pip install "
                            "model-merging-explorer[cluster]`).")
    parser.add_argument("--zoo", required=True, help="demo | a named zoo | a zoo file (needs heads and data)")
    parser.add_argument("--method", required=True, help="a method name (see `explorer methods`)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUES", required=True,
                        help="a swept parameter, repeatable (e.g. -p density=0.1:0.5:0.1 -p scale=0.3,0.6,1.0)")
    parser.add_argument("--split", default="validation", help="the split every point is scored on "
                        "(default validation: choose on validation, report on test)")
    parser.add_argument("--tasks", help="comma-separated subset of the zoo's tasks (default: all)")
    parser.add_argument("--limit", type=int, help="at most this many images per task")
    parser.add_argument("--engine", default="local", choices=("local", "ray", "serial"),
                        help="local: a process per core (default); ray: one Ray task per point; serial: this process")
    parser.add_argument("--workers", type=int, help="local: at most this many processes (default: one per core)")
    parser.add_argument("--address", help="ray: the cluster to join, auto | ray://host:port (default: a new local "
                        "Ray instance)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument("--out", help="write the table here: .csv, or .json with the best setting and timing")
    parser.add_argument("--html", help="write the figure (mean accuracy over the grid) into this HTML page")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..evaluate import percent
    from ..plots import sweep_grid
    from ..sweep import parse_grid, sweep
    from .merge import check_evaluable, load_task_vectors

    grid = parse_grid(args.method, args.param)  # bad names and ranges fail before the zoo is read
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    tv, zoo, zoo_id, _ = load_task_vectors(args.zoo, tasks, args.device)
    check_evaluable(zoo, tv.tasks, args.split, "a sweep evaluates every merge: --zoo needs heads and data "
                    "(e.g. --zoo demo)")
    done = sweep(tv, args.method, grid, zoo=zoo, split=args.split, limit=args.limit, engine=args.engine,
                 workers=args.workers, address=args.address, device=args.device)
    summary, best = done.summary(), done.best()
    images = "" if args.limit is None else f", first {args.limit} images per task"
    print(f"{args.method} on {zoo_id}: {len(summary)} grid points x {len(tv.tasks)} tasks in {done.seconds:.1f} s "
          f"(engine {args.engine}); mean accuracy (%) on {args.split}{images}:")
    print(percent(summary, digits=2).to_string(index=False))
    print("best (mean normalized accuracy): " + " ".join(f"{k}={v}" for k, v in best.items()))
    if args.out:
        print(f"wrote {done.save(args.out)}")
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        sweep_grid(summary, done.params, best, title=f"{args.method} on {zoo_id}: mean normalized accuracy "
                   f"on {args.split}").write_html(args.html)
        print(f"wrote {args.html}")
    sys.stdout.flush()
    return 0
