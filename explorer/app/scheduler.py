"""Who computes next: a fair, bounded queue in front of the dashboard's merges and evaluations, served by a few
long-lived worker threads.

At most `workers` jobs compute at once (one per CPU core by default), each on a worker thread of its own that lives
as long as the server: torch.compile traces a kernel again in every new thread, so work never runs in a fresh one.
The other jobs wait first come, first served, and each session waits at most once: a newer job of a session
replaces its older waiting one, which ends with `Superseded`. A waiting job hears how many jobs are ahead of it (the
page says "busy, N ahead of you"), and a full queue refuses at once instead of piling up. A job that itself asks
for a turn (nested) runs at once on its worker.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

POLL = 0.25  # seconds between checks of a waiting job's place


class Superseded(Exception):
    """The session asked for a newer run while this one waited: nothing to show for this one."""


class Full(ValueError):
    """Too many jobs are waiting already."""


@dataclass(eq=False)
class Job:
    fn: Callable[[], Any]
    session: str | None
    done: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    superseded: bool = False
    value: Any = None
    error: BaseException | None = None


def default_workers() -> int:
    """One worker per CPU core, at most 4 (beyond that the demo-sized merges gain nothing on a laptop)."""
    return max(1, min(4, os.cpu_count() or 1))


class FairQueue:
    """`run(fn)` computes `fn()` on one of `workers` worker threads, first come first served, at most `limit`
    waiting. `warmup()` gives the steps each worker runs while no job waits (e.g. compile the kernels on that
    thread): a user's job never waits behind a warm-up step that has not started."""

    def __init__(self, workers: int | None = None, limit: int = 64,
                 warmup: Callable[[], list[Callable[[], Any]]] | None = None):
        self.workers, self.limit, self.warmup = workers or default_workers(), limit, warmup
        self._cond = threading.Condition()
        self._waiting: list[Job] = []
        self._running = 0
        self._threads: list[threading.Thread] = []
        self._warming = 0  # workers with warm-up steps left
        self._local = threading.local()

    def configure(self, workers: int | None = None, warmup: Callable[[], list[Callable[[], Any]]] | None = None,
                  start: bool = False) -> None:
        """Set how many jobs run at once (the dashboard's --workers) and the warm-up steps of each worker; `start`
        starts the workers now (else with the first job)."""
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        with self._cond:
            self.workers = workers or self.workers
            self.warmup = warmup or self.warmup
            if start:
                self._start_workers()
            self._cond.notify_all()

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Block until every started worker has run its warm-up steps (True), or `timeout` seconds passed; False at
        once when no worker has started (no job came: nothing is warming)."""
        with self._cond:
            return bool(self._threads) and self._cond.wait_for(lambda: not self._warming, timeout)

    @property
    def busy(self) -> tuple[int, int]:
        """(jobs computing, jobs waiting) now."""
        with self._cond:
            return self._running, len(self._waiting)

    def run(self, fn: Callable[[], Any], session: str | None = None,
            waiting: Callable[[int], None] | None = None) -> Any:
        """`fn()` computed on a worker when its turn comes; its value, or its exception raised here. `waiting(n)`
        hears the number of jobs ahead each time it changes; raises Superseded when the same session queued a newer
        job meanwhile, Full when `limit` jobs wait already."""
        if getattr(self._local, "worker", False):
            return fn()
        job, told = self._join(fn, session), None
        while not job.done.wait(POLL if waiting else None):
            ahead = self._ahead(job)
            if ahead is not None and ahead != told:
                told = ahead
                waiting(ahead)
        if job.superseded:
            raise Superseded("a newer run of this session replaced this one")
        if job.error is not None:
            raise job.error
        return job.value

    def _join(self, fn: Callable[[], Any], session: str | None) -> Job:
        with self._cond:
            if session is not None:
                for older in [j for j in self._waiting if j.session == session]:
                    self._waiting.remove(older)
                    older.superseded = True
                    older.done.set()
            if len(self._waiting) >= self.limit:
                raise Full(f"The dashboard is full: {len(self._waiting)} runs are waiting for {self.workers} "
                           "workers. Try again in a few seconds.")
            job = Job(fn, session)
            self._waiting.append(job)
            self._start_workers()
            self._cond.notify_all()
            return job

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            worker = threading.Thread(target=self._serve, args=(len(self._threads),), daemon=True,
                                      name=f"explorer-worker-{len(self._threads)}")
            self._threads.append(worker)
            self._warming += 1
            worker.start()

    def _ahead(self, job: Job) -> int | None:
        """Jobs computing plus jobs waiting before `job`; None once it computes."""
        with self._cond:
            return None if job not in self._waiting else self._running + self._waiting.index(job)

    def _serve(self, index: int) -> None:
        self._local.worker = True
        steps = list(self.warmup()) if self.warmup is not None else []
        warming = True
        while True:
            if warming and not steps:
                with self._cond:
                    self._warming -= 1
                    self._cond.notify_all()
                warming = False
            with self._cond:
                while (not self._waiting or index >= self.workers) and not steps:
                    self._cond.wait()
                job = self._waiting.pop(0) if self._waiting and index < self.workers else None
                if job is not None:
                    job.started = True
                    self._running += 1
            if job is None:
                _warm(steps.pop(0))
                continue
            try:
                job.value = job.fn()
            except BaseException as err:  # handed to the caller, which raises it in its own thread
                job.error = err
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
                job.done.set()


def _warm(step: Callable[[], Any]) -> None:
    try:
        step()
    except Exception as err:  # noqa: BLE001 - a failed warm-up costs its user a slower first run, nothing more
        logging.getLogger(__name__).warning("a warm-up step failed (%s: %s)", type(err).__name__, err)


# The one queue of the dashboard process: every merge, evaluation and heavy view computes on its workers.
QUEUE = FairQueue()


def busy_note(ahead: int) -> str:
    """What the status line says while a run waits."""
    runs = "run" if ahead == 1 else "runs"
    return f"⏳ Busy: {ahead} {runs} ahead of you; yours starts as soon as a worker is free."
