"""Process-wide caches that every dashboard session shares: zoos, task vectors, zoo-level figures, recent merge
results and cancel flags. Heavy tensors live here, never in per-session `gr.State`; keys are plain tuples such as
(zoo name, tasks, device), so two sessions looking at the same zoo share one copy."""
from __future__ import annotations

import math
import resource
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable

from ..device import resolve_device
from ..taskvec import TaskVectors, task_vectors
from ..zoo import Zoo, load_zoo


class LRU:
    """A small thread-safe least-recently-used map. `get(key, make)` computes a missing value once: callers asking
    for the same key meanwhile wait for it, callers of other keys do not. With `weigh`, the map holds values up to a
    total weight `budget` (e.g. bytes) instead of `size` entries."""

    def __init__(self, size: int, weigh: Callable[[Any], float] | None = None, budget: float = math.inf):
        self.size, self.weigh, self.budget = size, weigh, budget
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.RLock()
        self._making: dict[Hashable, threading.Event] = {}

    def get(self, key: Hashable, make: Callable[[], Any] | None = None) -> Any:
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
                if make is None:
                    return None
                making = self._making.get(key)
                if making is None:
                    self._making[key] = threading.Event()
                    break
            making.wait()  # another caller makes it: take theirs (or make it ourselves if theirs failed)
        try:
            return self.put(key, make())
        finally:
            with self._lock:
                self._making.pop(key).set()

    def put(self, key: Hashable, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > 1 and (len(self._items) > self.size or self._weight() > self.budget):
                self._items.popitem(last=False)
            return value

    def _weight(self) -> float:
        return 0.0 if self.weigh is None else sum(self.weigh(v) for v in self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


ZOOS = LRU(4)            # zoo name -> Zoo
TASK_VECTORS = LRU(4)    # (zoo, tasks, device) -> TaskVectors
ZOO_FIGURES = LRU(16)    # (zoo, tasks, device) -> {figure name: go.Figure}
# (zoo, tasks, device, method, params, limit) -> a data-free run's result, scores and figures, shared by every
# session (students move the same sliders): up to RUN_BYTES of merged weights and masks.
RUN_BYTES = 1e9
RUNS = LRU(256, weigh=lambda computed: computed.nbytes, budget=RUN_BYTES)
# run id -> its Computed (result, scores, figures drawn so far) for histories and tabs; older runs are merged again
RESULTS = LRU(64, weigh=lambda computed: computed.nbytes, budget=RUN_BYTES)
FINGERPRINTS = LRU(8)    # zoo name -> weight fingerprint (for run records)
PROBLEMS = LRU(16)       # (zoo, tasks) -> what evaluation lacks (asked once: the text-tower lookup can probe the hub)
CANCEL: dict[str, threading.Event] = {}  # session id -> set when its user pressed Cancel


def zoo(name: str) -> Zoo:
    """The zoo called `name` ("demo", a named zoo, or a path: a folder of checkpoints, a zoo file or a demo-zoo
    build), loaded once."""
    try:
        return ZOOS.get(name, lambda: load_zoo(name))
    except Exception as err:  # a zoo's files can fail in many ways; the page shows one readable line
        if Path(name).expanduser().exists() or "/" in name:
            raise ValueError(f"could not load zoo {name!r}: {err}") from err
        raise ValueError(f"could not load zoo {name!r}: {err}. The demo zoo works offline; real zoos need "
                         "their checkpoints on disk or in the Hugging Face cache (see `explorer zoos`).") from err


def register_zoo(name: str, value: Zoo) -> None:
    """Make an already-built zoo available under `name` (used for zoos built in code, e.g. in tests)."""
    ZOOS.put(name, value)


def device_name() -> str:
    return str(resolve_device("auto"))


def tv_key(zoo_name: str, tasks: list[str]) -> tuple[str, tuple[str, ...], str]:
    return (zoo_name, tuple(tasks), device_name())


def vectors(zoo_name: str, tasks: list[str], progress: Callable[[int, int, str], None] | None = None) -> TaskVectors:
    """The task vectors of `tasks` (in that order) from zoo `zoo_name`, on the best device, built once;
    `progress(done, total, task)` hears of each expert read while they are built."""
    z = zoo(zoo_name)
    return TASK_VECTORS.get(tv_key(zoo_name, tasks), lambda: task_vectors(z, tasks=list(tasks), progress=progress))


def loaded(zoo_name: str, tasks: list[str]) -> bool:
    """Whether the task vectors of `tasks` are built already (then views of them start right away)."""
    return TASK_VECTORS.get(tv_key(zoo_name, tasks)) is not None


def problems(zoo_name: str, tasks: list[str]) -> list[str]:
    """What evaluating `tasks` of the zoo lacks (model definition, heads, data); [] when it can evaluate."""
    return PROBLEMS.get((zoo_name, tuple(tasks)), lambda: zoo(zoo_name).evaluation_problems(list(tasks), "test"))


def peak_memory_gb() -> float:
    """The server process's peak resident memory so far, in GB (what opening a large zoo costs)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1e9 if sys.platform == "darwin" else 1e6)


def fingerprint(zoo_name: str) -> str:
    return FINGERPRINTS.get(zoo_name, lambda: zoo(zoo_name).fingerprint())


def remember(run_id: str, computed: Any) -> None:
    """Keep a run's `handlers.Computed` (its result and the figures drawn so far) for its history and tabs."""
    RESULTS.put(run_id, computed)


def cancel_flag(session: str) -> threading.Event:
    """The cancel flag of one browser session (created cleared)."""
    return CANCEL.setdefault(session, threading.Event())
