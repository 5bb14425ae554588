"""Engines that map one function over many items with one shared input: in this process (`serial`), in a pool of
processes on this machine (`local`, one per core), or as tasks on a Ray cluster (`ray`, the optional `cluster` extra).

`run(fn, shared, items)` returns `[fn(shared, item) for item in items]` in item order on every engine, so a caller
(a sweep of merges) is engine-agnostic. The shared input (task vectors and zoo) is sent once: pickled once per
worker process of the pool, put once into Ray's object store, then read once by each worker process that runs a task.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

ENGINES = ("serial", "local", "ray")
RAY_HINT = "pip install 'model-merging-explorer[cluster]' (or pip install 'ray[default]')"

# What a worker process holds between items: (key, shared input). One entry, so a long-lived Ray worker that runs
# several sweeps keeps only the latest one's inputs.
_WORKER: dict[str, tuple[str, Any]] = {}


def run(fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any], engine: str = "serial",
        workers: int | None = None, address: str | None = None) -> list:
    """`[fn(shared, item) for item in items]` on `engine`; `fn` must be a module-level function (it is pickled).

    `workers` caps the local pool (default: one process per core); `address` is the Ray cluster to join
    ("auto", "ray://host:port"; default: the running Ray instance, else a new local one)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise ValueError(f"an address ({address!r}) only applies to engine='ray'")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be a positive number of processes, got {workers}")
    if engine == "ray":
        return _ray(fn, shared, list(items), address)
    if engine == "local":
        workers = min(workers or os.cpu_count() or 1, len(items))
        if workers > 1:
            return _local(fn, shared, list(items), workers)
    return [fn(shared, item) for item in items]  # serial, or a pool of one: no process to start


def _local(fn: Callable, shared: Any, items: list, workers: int) -> list:
    """A pool of fresh (spawned: safe after CUDA or threads started here) processes, each unpickling `shared` once
    and using its share of the cores for torch."""
    try:
        payload = pickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise ValueError(f"engine='local' sends the task vectors and zoo to worker processes, but they cannot be "
                         f"pickled ({err}); use engine='serial'") from err
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(payload, threads)) as pool:
        return list(pool.map(_local_item, [fn] * len(items), items))


def _start_worker(payload: bytes, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["shared"] = ("local", pickle.loads(payload))


def _local_item(fn: Callable, item: Any) -> Any:
    return fn(_WORKER["shared"][1], item)


def _ray(fn: Callable, shared: Any, items: list, address: str | None) -> list:
    """One Ray task per item; `shared` is put into the object store once and each task reads it from there (once per
    worker process). Joins `address`, else the running instance, else starts a local one (and stops it after)."""
    try:
        import ray
    except ImportError as err:
        raise RuntimeError(f"engine='ray' needs Ray, which is not installed: {RAY_HINT}") from err
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        ref = ray.put(shared)
        task = ray.remote(_ray_item)
        # The reference travels inside a list, so Ray does not fetch it for every task; `_ray_item` fetches it.
        return ray.get([task.remote(fn, [ref], item) for item in items])
    finally:
        if started:
            ray.shutdown()


def _ray_item(fn: Callable, ref: list, item: Any) -> Any:
    import ray

    key = ref[0].hex()
    if _WORKER.get("shared", ("",))[0] != key:
        _WORKER["shared"] = (key, ray.get(ref[0]))
    return fn(_WORKER["shared"][1], item)
