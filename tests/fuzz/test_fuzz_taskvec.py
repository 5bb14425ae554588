"""Fuzz `task_vectors` over shapes, dtypes, keys, NaN/Inf, empty and mismatched state dicts and bad arguments."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import explorer as ex

from .conftest import outcome

KEYS = ["conv1.weight", "transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.1.mlp.c_fc.bias",
        "ln_post.weight", "proj", "step", ""]
DTYPES = [torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int64, torch.bool]
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def tensors(draw, shape=None, dtype=None):
    shape = draw(shapes) if shape is None else shape
    dtype = draw(st.sampled_from(DTYPES)) if dtype is None else dtype
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(shape, generator=gen) * draw(st.sampled_from([1e-3, 1.0, 1e4]))
    if x.numel() and draw(st.booleans()) and draw(st.booleans()):
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(st.sampled_from([float("nan"), float("inf"),
                                                                                 -float("inf")]))
    return x.to(dtype) if dtype.is_floating_point else x.nan_to_num(0, 0, 0).round().to(dtype)


MUTATIONS = ["same", "same", "same", "missing", "extra", "shape", "dtype", "nan", "not_tensor", "int_key"]


@st.composite
def expert_of(draw, base: dict):
    """An expert of `base`: base + noise, perhaps with one mutation (missing/extra key, shape, dtype, NaN, junk)."""
    sd = {k: (v + torch.randn(v.shape).to(v.dtype) * 0.01 if v.is_floating_point() else v.clone())
          for k, v in base.items()}
    mutation = draw(st.sampled_from(MUTATIONS))
    key = draw(st.sampled_from(sorted(sd))) if sd else None
    if mutation == "missing" and key is not None:
        del sd[key]
    elif mutation == "extra":
        sd[draw(st.text(min_size=1, max_size=8))] = draw(tensors())
    elif mutation == "shape" and key is not None:
        sd[key] = draw(tensors())
    elif mutation == "dtype" and key is not None:
        sd[key] = draw(tensors(shape=tuple(sd[key].shape)))
    elif mutation == "nan" and key is not None and sd[key].is_floating_point() and sd[key].numel():
        sd[key] = sd[key].clone()
        sd[key].view(-1)[0] = float("nan")
    elif mutation == "not_tensor" and key is not None:
        sd[key] = draw(st.sampled_from([None, 1.5, [1, 2], "w"]))
    elif mutation == "int_key":
        sd[draw(st.integers())] = torch.zeros(1)
    return sd


@st.composite
def zoos(draw):
    names = draw(st.lists(st.sampled_from(KEYS), min_size=0, max_size=4, unique=True))
    base = {n: draw(tensors()) for n in names}
    tasks = draw(st.lists(st.text(min_size=1, max_size=6), min_size=0, max_size=3, unique=True))
    return base, {t: draw(expert_of(base)) for t in tasks}


def check(tv: ex.TaskVectors, base: dict, experts: dict) -> None:
    """A built TaskVectors holds expert - base for every float tensor, finite, in task order."""
    assert tv.tasks == list(experts)
    for name, d in tv.items():
        assert torch.isfinite(d).all()
        for i, task in enumerate(tv.tasks):
            expected = experts[task][name].double() - base[name].double()
            scale = float(expected.abs().max()) if expected.numel() else 0.0
            assert torch.allclose(d[i].double(), expected, rtol=1e-2, atol=1e-2 * (1 + scale))


@settings(max_examples=300)
@given(zoo=zoos())
def test_task_vectors_build_or_refuse_clearly(zoo):
    base, experts = zoo
    tv = outcome(lambda: ex.task_vectors(base, experts, device="cpu"))
    if isinstance(tv, ex.TaskVectors):
        check(tv, base, experts)


@settings(max_examples=100)
@given(zoo=zoos(), tasks=st.one_of(st.none(), st.lists(st.text(max_size=4), max_size=3)),
       device=st.sampled_from(["cpu", "auto", "banana", None, 3]),
       dtype=st.sampled_from(["float32", "float16", "bfloat16", "int8", None, 5, torch.float64]),
       junk=st.sampled_from([None, [], "base", 3, {"a": 1}]))
def test_task_vectors_arguments(zoo, tasks, device, dtype, junk):
    base, experts = zoo
    outcome(lambda: ex.task_vectors(base, experts, tasks=tasks, device=device, dtype=dtype))
    outcome(lambda: ex.task_vectors(junk, experts))
    outcome(lambda: ex.task_vectors(base, junk))
