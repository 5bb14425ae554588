"""Singular-value building blocks shared by the subspace merges (TSV, Iso-C/CTS, CART, DOGE-TA) and the spectral
analyses: which parameters count as matrices, each task's SVD, polar factors, and a per-TaskVectors cache.

The SVDs depend only on the task vectors, so they are computed once per TaskVectors object (and therefore per device)
and kept while it lives: moving `scale`, `rank` or `common` never recomputes them.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Hashable, Iterable, NamedTuple, TypeVar

import torch
from torch import Tensor

from ..taskvec import TaskVectors, param_info

# The blocks' linear weights: CART's low-rank set, WUDI's and DOGE-TA's targets. open_clip's four, then the
# [out, in] projections of Llama-family decoders (Llama, Qwen2, Gemma, Mistral) as Hugging Face names them.
LINEAR_WEIGHTS = ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight",
                  "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                  "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
_MERGED_KEPT = 8  # unscaled merged vectors kept per TaskVectors (one per recent choice of rank/common)
_THREADS_LOCK = threading.Lock()
T_ = TypeVar("T_")
R_ = TypeVar("R_")


class SVD(NamedTuple):
    """Thin SVD factors, stacked over tasks where they come from `[T, m, n]`: U [.., m, r], S [.., r], Vh [.., r, n]."""

    U: Tensor
    S: Tensor
    Vh: Tensor


class _Store:
    def __init__(self):
        self.factors: dict[Hashable, Any] = {}
        self.merged: OrderedDict[Hashable, Any] = OrderedDict()
        self.lock = threading.RLock()


_STORES: "weakref.WeakKeyDictionary[TaskVectors, _Store]" = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def _store(tv: TaskVectors) -> _Store:
    with _STORES_LOCK:
        store = _STORES.get(tv)
        if store is None:
            store = _STORES[tv] = _Store()
        return store


def cached_factor(tv: TaskVectors, key: Hashable, make: Callable[[], Any]) -> Any:
    """A value derived only from `tv` (an SVD), computed once per TaskVectors object (outside the lock, so that
    threads computing different keys run in parallel)."""
    store = _store(tv)
    with store.lock:
        if key in store.factors:
            return store.factors[key]
    value = make()
    with store.lock:
        return store.factors.setdefault(key, value)


def map_threads(fn: Callable[[T_], R_], items: Iterable[T_], device: torch.device) -> list[R_]:
    """`[fn(x) for x in items]`, on CPU spread over torch's threads with one intra-op thread each: LAPACK's SVD of
    one layer-sized matrix barely uses a second core, so running two layers at once nearly halves the time."""
    items = list(items)
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2 or len(items) < 2:
        return [fn(x) for x in items]
    with _THREADS_LOCK:
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(threads) as pool:
                return list(pool.map(fn, items))
        finally:
            torch.set_num_threads(threads)


def cached_merge(tv: TaskVectors, key: Hashable, make: Callable[[], Any]) -> Any:
    """An unscaled merged vector for one choice of the shape parameters (rank, common); the last few are kept."""
    store = _store(tv)
    with store.lock:
        if key in store.merged:
            store.merged.move_to_end(key)
            return store.merged[key]
    value = make()  # outside the lock: it may run layers in threads that read the cached factors
    with store.lock:
        store.merged[key] = value
        while len(store.merged) > _MERGED_KEPT:
            store.merged.popitem(last=False)
        return value


def clear_cache(tv: TaskVectors) -> None:
    """Forget every SVD and merged vector cached for `tv` (e.g. to time a cold merge)."""
    with _STORES_LOCK:
        _STORES.pop(tv, None)


def is_matrix(tv: TaskVectors, name: str) -> bool:
    """TSV/Iso's rule: every 2-D parameter (positional embedding, proj, the blocks' weights) except a text
    projection; conv kernels, biases, LayerNorms and the class embedding take the mean over tasks instead."""
    return tv[name].dim() == 3 and "text_projection" not in name


def is_linear_weight(name: str) -> bool:
    """One of the blocks' four linear weights: attention in/out projections and the MLP's two layers."""
    return param_info(name).block is not None and name.endswith(LINEAR_WEIGHTS)


def svd(x: Tensor) -> SVD:
    """Thin SVD (batched over leading dimensions), computed in float32 or float64. A wide matrix is decomposed
    through its transpose, which LAPACK does about twice as fast on CPU (the factors are the same up to the signs of
    singular-vector pairs, which no merge or analysis here depends on)."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if work.shape[-2] < work.shape[-1]:
        U, S, Vh = _svd(work.transpose(-2, -1))
        return SVD(Vh.transpose(-2, -1), S, U.transpose(-2, -1))
    return SVD(*_svd(work))


def _svd(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """torch's thin SVD; where LAPACK's float32 divide-and-conquer fails to converge (it can on matrices with many
    exactly repeated singular values, e.g. zeros), the same SVD in float64, cast back."""
    try:
        return torch.linalg.svd(x, full_matrices=False)
    except torch.linalg.LinAlgError:
        if x.dtype == torch.float64:
            raise
        U, S, Vh = torch.linalg.svd(x.double(), full_matrices=False)
        return U.to(x.dtype), S.to(x.dtype), Vh.to(x.dtype)


def task_svd(tv: TaskVectors, name: str) -> SVD:
    """Each task's SVD of parameter `name`, stacked: U [T, m, r], S [T, r], Vh [T, r, n] (cached)."""
    return cached_factor(tv, ("task", name), lambda: svd(tv[name]))


def sum_svd(tv: TaskVectors, name: str) -> SVD:
    """The SVD of the summed task vectors sum_t tau_t of parameter `name` (cached)."""
    return cached_factor(tv, ("sum", name), lambda: svd(tv[name].sum(dim=0)))


def polar(a: Tensor) -> Tensor:
    """The orthogonal polar factor U Vh of `a` (thin SVD): the nearest matrix with orthonormal columns (or rows)."""
    factors = svd(a)
    return factors.U @ factors.Vh


def task_blocks(factors: SVD, k: int) -> SVD:
    """Concatenate each task's top-k singular triplets: U [m, T k], S [T k], Vh [T k, n], task t in block t."""
    T, m, _ = factors.U.shape
    n = factors.Vh.shape[-1]
    U = factors.U[:, :, :k].permute(1, 0, 2).reshape(m, T * k)
    return SVD(U, factors.S[:, :k].reshape(T * k), factors.Vh[:, :k, :].reshape(T * k, n))


def orthogonalised(blocks: SVD) -> Tensor:
    """TSV's step: polar(U) diag(S) polar(Vh), which decorrelates the tasks' singular vectors while keeping
    their singular values (so the result's singular values are exactly `blocks.S`)."""
    if blocks.S.numel() == 0:
        return blocks.U.new_zeros(blocks.U.shape[0], blocks.Vh.shape[1])
    return (polar(blocks.U) * blocks.S) @ polar(blocks.Vh)


def low_rank(factors: SVD, k: int) -> Tensor:
    """The best rank-k approximation from (possibly task-stacked) SVD factors: U[:, :k] diag(S[:k]) Vh[:k]."""
    return (factors.U[..., :k] * factors.S[..., None, :k]) @ factors.Vh[..., :k, :]
