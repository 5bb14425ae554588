"""Fuzz `merge` for every registered method: each parameter at, inside and outside its range, wrong types, unknown
names; a result is finite and carries the validated parameters, a wrong parameter is refused by its name, and a
valid set is refused only for the one reason these task vectors allow (they carry no zoo with data)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import explorer as ex
from explorer.methods import registry
from explorer.methods.registry import Param

from .conftest import outcome

JUNK = [None, "", "abc", [0.5], {"x": 1}, float("nan"), float("inf"), -float("inf"), True, 10**30, object()]


def valid(p: Param) -> st.SearchStrategy:
    """Values inside the declared range: its bounds and points between (small ints, so methods run fast)."""
    if p.type is bool:
        return st.booleans()
    if p.choices is not None:
        return st.sampled_from(p.choices)
    if p.type is str:
        return st.text(max_size=6)
    low = -1e6 if p.low is None else p.low
    high = 1e6 if p.high is None else p.high
    if p.type is int:
        return st.one_of(st.sampled_from([int(low), int(high)]), st.integers(int(low), min(int(high), int(low) + 50)))
    return st.one_of(st.sampled_from([low, high]), st.floats(low, high))


def invalid(p: Param) -> st.SearchStrategy:
    """Values just or far outside the range, of the wrong type, or junk."""
    junk = st.sampled_from(JUNK)
    if p.type is bool:
        return st.one_of(st.sampled_from([0, 1, "true", None, 0.5]), junk.filter(lambda v: not isinstance(v, bool)))
    if p.choices is not None:
        return st.one_of(st.text(max_size=6).filter(lambda s: s not in p.choices), junk)
    if p.type is str:  # a free string (e.g. surgery's on_params, where "" means the defaults): only a non-string is
        return junk.filter(lambda v: not isinstance(v, str))  # wrong for every method
    low = -1e6 if p.low is None else p.low
    high = 1e6 if p.high is None else p.high
    if p.type is int:
        return st.one_of(st.sampled_from([int(low) - 1, int(high) + 1, low + 0.5]), st.integers(max_value=int(low) - 1),
                         junk)
    return st.one_of(st.sampled_from([low - 1e-9, math.nextafter(high, math.inf), high + 1]),
                     st.floats(allow_nan=True).filter(lambda v: not low <= v <= high), junk)


@st.composite
def params_of(draw, method: registry.Method) -> tuple[dict, str | None]:
    """Half the cases valid throughout (wrong = None), the other half with one parameter or an unknown name wrong
    (wrong = its name)."""
    chosen = draw(st.lists(st.sampled_from(method.params), unique_by=lambda p: p.name)) if method.params else []
    out = {p.name: draw(valid(p)) for p in chosen}
    wrong = None
    if draw(st.booleans()):
        if method.params and draw(st.integers(0, 5)):
            bad = draw(st.sampled_from(method.params))
            wrong, out[bad.name] = bad.name, draw(invalid(bad))
        else:
            wrong = draw(st.text(min_size=1, max_size=5).filter(lambda s: s not in out))
            out[wrong] = 1.0  # an unknown name
    return out, wrong


@pytest.fixture(scope="module")
def tv() -> ex.TaskVectors:
    """3 tasks, 4 small tensors across 2 blocks: fast enough for hundreds of merges."""
    gen = torch.Generator().manual_seed(0)
    shapes = {"conv1.weight": (4, 3), "transformer.resblocks.0.attn.in_proj_weight": (6, 2),
              "transformer.resblocks.1.mlp.c_fc.bias": (5,), "proj": (2, 2)}
    base = {n: torch.randn(s, generator=gen) for n, s in shapes.items()}
    experts = {t: {n: v + 0.1 * torch.randn(v.shape, generator=gen) for n, v in base.items()} for t in "abc"}
    return ex.task_vectors(base, experts, device="cpu")


def check(res: ex.MergeResult, method: registry.Method, given_params: dict) -> None:
    assert res.method == method.name and set(res.params) == {p.name for p in method.params}
    for name, value in given_params.items():
        assert res.params[name] == value or (isinstance(value, float) and res.params[name] == int(value))
    if res.delta is not None:
        assert all(torch.isfinite(d).all() for d in res.delta.values())
    for task in res.tasks:
        assert set(res.state_dict(task=task) if res.per_task else res.state_dict()) >= set(res.tv.base)


@pytest.mark.parametrize("name", [m.name for m in registry.all_methods()])
@settings(max_examples=45)
@given(data=st.data())
def test_merge_params_fuzz(tv, name, data):
    method = registry.get(name)
    params, wrong = data.draw(params_of(method), label="params")
    # a wrong parameter must be refused by its name; valid ones only because these task vectors carry no zoo
    named = (wrong, repr(wrong)) if wrong is not None else ("needs a zoo with data",)
    res = outcome(lambda: ex.merge(tv, name, **params), *named)
    if wrong is None and isinstance(res, ex.MergeResult):
        check(res, method, params)
    assert wrong is None or not isinstance(res, ex.MergeResult), f"{name} accepted {wrong}={params[wrong]!r}"


@settings(max_examples=40)
@given(method=st.one_of(st.text(max_size=8), st.sampled_from(JUNK)), target=st.sampled_from(["tv", None, 3, "x"]))
def test_merge_bad_method_or_target(tv, method, target):
    outcome(lambda: ex.merge(tv if target == "tv" else target, method))
