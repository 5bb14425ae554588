"""Long runs in a background thread of the dashboard, with their progress, live loss curve and cancel.

AdaMerging, aTLAS and TALL masks' validation search run in a thread of the server's own process, so the page can
show progress and a live loss curve while they run, and a Cancel button can stop them."""
from __future__ import annotations

import math
import queue
import threading
from typing import Any, Callable, Iterator

import plotly.graph_objects as go

from .. import plots as P
from ..methods.runner import Progress


def stream(work: Callable[[Callable[[Progress], None]], Any]) -> Iterator[tuple[str, Any]]:
    """Run `work(report)` in a thread; yield ("progress", Progress) for every report and finally ("done", value).
    An exception raised by `work` is raised here, in the caller's thread."""
    events: queue.Queue = queue.Queue()

    def target() -> None:
        try:
            events.put(("done", work(lambda p: events.put(("progress", p)))))
        except BaseException as err:  # handed to the consumer, which re-raises it
            events.put(("error", err))

    threading.Thread(target=target, name="explorer-merge", daemon=True).start()
    while True:
        kind, payload = events.get()
        if kind == "error":
            raise payload
        yield kind, payload
        if kind == "done":
            return


def loss_figure(reports: list[Progress]) -> go.Figure:
    """The loss curve so far, at the steps the progress reports came from (the finished run shows every step);
    reports of a statistics pass (no loss) are left out."""
    reports = [p for p in reports if math.isfinite(p.loss)]
    return P.loss_curve([p.loss for p in reports], [p.step for p in reports])


def progress_text(p: Progress) -> str:
    """One line for the status box: step, loss and, when measured, the mean held-out accuracy; for a statistics
    pass (Fisher, Gram matrices) its name and the batches read."""
    if p.stage and not math.isfinite(p.loss):
        return f"{p.stage}: batch {p.step} / {p.total}"
    acc = "" if not p.accuracy else f", held-out accuracy {sum(p.accuracy.values()) / len(p.accuracy):.1%}"
    return f"step {p.step} / {p.total}: loss {p.loss:.4f}{acc}"
