"""What a researcher's own real-size zoo costs in the dashboard: open (task vectors), the weight-space views, the first
merge, a slider re-merge, and each tab's merge, through the functions the page calls (no browser).

    python bench/make_random_zoo.py --out /tmp/own-zoo-b32 --experts 8
    OMP_NUM_THREADS=2 python bench/bench_own_zoo.py /tmp/own-zoo-b32

Prints one markdown table (seconds, peak resident memory of the process so far); the README quotes it.
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a researcher's machine without the text tower cached


def main(folder: str) -> None:
    import torch

    from explorer.app import cache, handlers, ui, views

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    rows: list[tuple[str, float, str]] = []

    def timed(step: str, fn, note: str = ""):
        start = time.perf_counter()
        out = fn()
        rows.append((step, time.perf_counter() - start, note))
        print(f"{step}: {rows[-1][1]:.1f} s, peak {cache.peak_memory_gb():.1f} GB {note}", flush=True)
        return out

    steps = timed("open: read 8 experts into task vectors", lambda: list(ui.open_zoo(folder, lambda *a, **k: None)))
    print(steps[-1][0], flush=True)
    tasks = list(cache.zoo(folder).tasks)
    print(views.size_note(folder, tasks), flush=True)
    marks: list[tuple[str, float]] = []

    def mark(i: int, n: int, name: str) -> None:
        if marks:
            print(f"  view {marks[-1][0]}: {time.perf_counter() - marks[-1][1]:.1f} s", flush=True)
        marks.append((name, time.perf_counter()))

    timed("weight-space views (cosine, signs, layer norms, spectra)",
          lambda: views.zoo_figures(folder, tasks, progress=mark))
    ends = [t for _, t in marks[1:]] + [time.perf_counter()]
    for (name, began), ended in zip(marks, ends):
        rows.append((f"  view {name}", ended - began, ""))
    state = handlers.new_state()
    state, view = timed("first merge (task arithmetic, live view)",
                        lambda: handlers.run(state, folder, tasks, "task_arithmetic", {"scale": 0.3}))
    assert view.record["scores"] is None  # no data, no text tower: the accuracy view explains instead
    state, _ = timed("slider re-merge (scale 0.3 -> 0.4)",
                     lambda: handlers.run(state, folder, tasks, "task_arithmetic", {"scale": 0.4}))
    for tab, method, params in (("Mask overlaps", "ties", {"density": 0.2}), ("Layer-wise scaling", "lines", {}),
                                ("Spectra", "tsv", {})):
        state, _ = timed(f"{tab} tab: {method} merge with its figures",
                         lambda: handlers.run(state, folder, tasks, method, params))
    state, _ = timed("slider re-merge (ties density 0.2 -> 0.3)",
                     lambda: handlers.run(state, folder, tasks, "ties", {"density": 0.3}))
    print("\n| step | seconds |\n|---|---:|")
    for step, seconds, _ in rows:
        print(f"| {step} | {seconds:.1f} |")
    print(f"\npeak resident memory of the process: {cache.peak_memory_gb():.1f} GB; "
          f"{torch.get_num_threads()} torch threads")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/own-zoo-b32")
