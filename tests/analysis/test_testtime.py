"""Views of the test-time merges: representation bias, learned mask density/overlap, routing and its confusion."""
from __future__ import annotations

import pytest

import explorer as ex
from explorer.analysis import (
    concrete_mask_density,
    learned_mask_overlap,
    representation_bias,
    router_confusion,
    routing,
)


def test_representation_bias_has_before_and_after_per_task(tv):
    bias = representation_bias(ex.merge(tv, "surgery", steps=10, lr=1e-2))
    assert list(bias.index) == tv.tasks and list(bias.columns) == ["before", "after"]
    with pytest.raises(ValueError, match="surgery"):
        representation_bias(ex.merge(tv, "task_arithmetic"))


def test_learned_mask_density_and_overlap_with_itself_and_ties(tv):
    res = ex.merge(tv, "concrete", merge="task_arithmetic", steps=3)
    density = concrete_mask_density(res)
    assert set(density.index) == set(tv.deltas) and ((density >= 0) & (density <= 1)).all()
    overlap = learned_mask_overlap(res, {"itself": res, "ties": ex.merge(tv, "ties")})
    assert overlap["itself"] == 1.0 and 0.0 <= overlap["ties"] <= 1.0


@pytest.mark.parametrize("method, params, blocks", [("twin", {"epochs": 2}, ["all"]), ("wemoe", {"steps": 0}, [0, 1])])
def test_routing_weights_per_block_and_confusion_rows_sum_to_one(zoo, tv, method, params, blocks):
    res = ex.merge(tv, method, **params)
    table = routing(zoo, res, limit=8)
    assert list(table.index.get_level_values("block").unique()) == blocks
    confusion = router_confusion(zoo, res, limit=8)
    assert confusion.shape == (3, 3) and (confusion.sum(axis=1) - 1).abs().max() < 1e-6
    if method == "wemoe":  # untrained: every expert gets the initial weight 0.3
        assert (table - 0.3).abs().max().max() < 0.05


def test_the_figure_table_draws_each_view_only_for_its_method(zoo, tv):
    from explorer import figure_catalog as F

    names = ("representation_bias", "learned_mask", "routing")
    runs = {"surgery": ex.merge(tv, "surgery", steps=5), "concrete": ex.merge(tv, "concrete", steps=2,
                                                                              adamerging_steps=2),
            "twin": ex.merge(tv, "twin", epochs=2)}
    drawn = {}
    for method, res in runs.items():
        inp = F.Inputs(tv, merge=lambda section, res=res: res, zoo=zoo)
        drawn[method] = [f.name for f in F.FIGURES if f.name in names and f.make(inp) is not None]
    assert drawn == {"surgery": ["representation_bias"], "concrete": ["learned_mask"], "twin": ["routing"]}
    bias = F.Inputs(tv, merge=lambda section: runs["surgery"], zoo=zoo)
    made = next(f for f in F.FIGURES if f.name == "representation_bias").make(bias)
    assert [trace.name for trace in made.figure.data] == ["before", "after"]
