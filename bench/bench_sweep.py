"""Wall time of one sweep on the demo zoo on each engine: this process, local processes (one per core), local Ray.

Run: .venv/bin/python bench/bench_sweep.py [--limit 128] [--workers N]   (Ray: pip install -e '.[cluster]')
The grid is `explorer sweep --zoo demo --method ties -p density=0.1:0.5:0.1 -p scale=0.3,0.6,1.0 --split
validation`, 15 points x 8 tasks; every engine's table is checked equal to the serial one. Times include starting the
worker processes (and, for Ray, its start-up, given on its own line too).
"""
from __future__ import annotations

import argparse
import os
import time

import explorer as ex
from explorer.sweep import parse_grid

GRID = ["density=0.1:0.5:0.1", "scale=0.3,0.6,1.0"]


def timed(tv, grid, limit, engine, workers=None):
    start = time.perf_counter()
    done = ex.sweep(tv, "ties", grid, split="validation", limit=limit, engine=engine, workers=workers, device="cpu")
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=128, help="validation images per task (default 128)")
    parser.add_argument("--workers", type=int, help="local processes (default: one per core)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    zoo = ex.load_zoo("demo")
    tv = ex.task_vectors(zoo, device="cpu")
    grid = parse_grid("ties", GRID)
    ex.evaluate(zoo, ex.merge(tv, "ties"), "validation", limit=args.limit, device="cpu")  # images made, cached
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; 15 points x 8 tasks, "
          f"{args.limit} validation images per task")
    serial, seconds = timed(tv, grid, args.limit, "serial")
    print(f"serial (this process)      : {seconds:6.1f} s  best {serial.best()}")
    local, seconds = timed(tv, grid, args.limit, "local", args.workers)
    assert local.table.equals(serial.table), "the local engine's table differs from the serial one"
    label = f"local ({args.workers or os.cpu_count()} processes)"
    print(f"{label:27s}: {seconds:6.1f} s  same table")
    try:
        import ray
    except ImportError:
        print("ray                        : not installed (pip install -e '.[cluster]')")
        return
    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    print(f"ray start-up (local)       : {time.perf_counter() - start:6.1f} s")
    on_ray, seconds = timed(tv, grid, args.limit, "ray")
    assert on_ray.table.equals(serial.table), "the Ray engine's table differs from the serial one"
    label = f"ray ({int(ray.cluster_resources()['CPU'])} CPUs, tasks)"
    print(f"{label:27s}: {seconds:6.1f} s  same table")
    ray.shutdown()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
