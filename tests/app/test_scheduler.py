"""The fair queue in front of the dashboard's computations: first come first served, one waiting job per session,
bounded, errors raised in the caller, nested jobs inline, and a fixed set of long-lived worker threads."""
from __future__ import annotations

import threading
import time

import pytest

from explorer.app.scheduler import FairQueue, Full, Superseded, busy_note


def blocked(queue: FairQueue) -> tuple[threading.Event, threading.Thread]:
    """Occupy the queue's only worker until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)
    t = threading.Thread(target=queue.run, args=(hold,))
    t.start()
    assert started.wait(10)
    return release, t


def until(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_jobs_run_first_come_first_served_and_hear_how_many_are_ahead():
    queue = FairQueue(workers=1)
    release, holder = blocked(queue)
    order, heard, threads = [], {}, []
    for name in "abc":
        heard[name] = []
        t = threading.Thread(target=queue.run, args=(lambda n=name: order.append(n), name, heard[name].append))
        t.start()
        threads.append(t)
        until(lambda n=len(threads): queue.busy == (1, n))  # joined in this order
    until(lambda: all(heard[n] for n in "abc"))
    release.set()
    for t in (holder, *threads):
        t.join(10)
    assert order == ["a", "b", "c"]
    assert [heard[n][0] for n in "abc"] == [1, 2, 3]  # the running job, then those waiting before it
    assert queue.busy == (0, 0)


def test_a_newer_job_of_a_session_replaces_its_waiting_one():
    queue = FairQueue(workers=1)
    release, holder = blocked(queue)
    outcome = {}

    def first() -> None:
        try:
            queue.run(lambda: "old", "alice")
        except Superseded as err:
            outcome["old"] = err
    t = threading.Thread(target=first)
    t.start()
    until(lambda: queue.busy == (1, 1))
    newer = threading.Thread(target=lambda: outcome.setdefault("new", queue.run(lambda: "new", "alice")))
    newer.start()
    t.join(10)
    assert isinstance(outcome["old"], Superseded)
    release.set()
    newer.join(10)
    holder.join(10)
    assert outcome["new"] == "new"


def test_a_full_queue_refuses_at_once():
    queue = FairQueue(workers=1, limit=1)
    release, holder = blocked(queue)
    waiter = threading.Thread(target=queue.run, args=(lambda: None, "a"))
    waiter.start()
    until(lambda: queue.busy == (1, 1))
    with pytest.raises(Full, match="1 runs are waiting for 1 workers"):
        queue.run(lambda: None, "b")
    release.set()
    waiter.join(10)
    holder.join(10)


def test_errors_are_raised_in_the_caller_and_nested_jobs_run_inline():
    queue = FairQueue(workers=1)

    def fails() -> None:
        raise ValueError("density must be in [0, 1]")
    with pytest.raises(ValueError, match="density must be"):
        queue.run(fails)
    assert queue.run(lambda: queue.run(lambda: 41) + 1) == 42  # one worker: a nested turn must not wait for itself


def test_work_runs_on_the_same_long_lived_workers_which_warm_up_only_while_no_job_waits():
    order, gate, entered = [], threading.Event(), threading.Event()

    def step(name: str, wait: bool = False):
        def run() -> None:
            if wait:
                entered.set()
                gate.wait(10)
            order.append((name, threading.current_thread().name))
        return run
    queue = FairQueue(workers=1, warmup=lambda: [step("warm 1", wait=True), step("warm 2"), step("warm 3")])
    queue.configure(start=True)
    assert entered.wait(10)  # the worker is in its first warm-up step
    job = threading.Thread(target=queue.run, args=(step("job"),))
    job.start()
    until(lambda: queue.busy == (0, 1))
    gate.set()
    job.join(10)
    until(lambda: len(order) == 4)
    assert [name for name, _ in order] == ["warm 1", "job", "warm 2", "warm 3"]  # the job went first
    assert {thread for _, thread in order} == {"explorer-worker-0"}
    two = FairQueue(workers=2)
    assert {two.run(lambda: threading.current_thread().name) for _ in range(20)} <= {"explorer-worker-0",
                                                                                     "explorer-worker-1"}
    with pytest.raises(ValueError, match="at least 1"):
        queue.configure(0)


def test_busy_note_counts_the_runs_ahead():
    assert busy_note(1) == "⏳ Busy: 1 run ahead of you; yours starts as soon as a worker is free."
    assert "3 runs ahead of you" in busy_note(3)
