"""The Fisher-weight share per layer: by hand from a result's per-tensor weights, drawn, and in the figures table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import explorer as ex
from explorer import figure_catalog as F
from explorer.result import MergeResult

from .conftest import NAMES, make_tv


def fisher_result(tv) -> MergeResult:
    # mean weight per tensor of tasks a, b, c; every tensor is its own layer (embed, block.0, block.1)
    table = pd.DataFrame({NAMES[0]: [0.5, 0.25, 0.25], NAMES[1]: [0.1, 0.1, 0.8], NAMES[2]: [1 / 3] * 3},
                         index=pd.Index(tv.tasks, name="task"))
    return MergeResult(tv, {n: tv[n].mean(0) for n in tv.keys()}, method="fisher", coefficients=table)


def test_share_by_hand():
    tv = make_tv()
    share = ex.analysis.fisher_share(fisher_result(tv))
    wide = share.pivot(index="layer", columns="task", values="share").loc[["embed", "block.0", "block.1"]]
    assert wide.to_numpy() == pytest.approx(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3] * 3]))
    assert list(share.depth.unique()) == [0, 1, 2]


def test_other_methods_are_refused():
    tv = make_tv()
    with pytest.raises(ValueError, match="needs a Fisher merge"):
        ex.analysis.fisher_share(ex.merge(tv, "task_arithmetic"))


def test_figure_stacks_the_tasks_per_layer_and_only_for_fisher():
    tv = make_tv()
    res = fisher_result(tv)
    fig = ex.plots.fisher_share(ex.analysis.fisher_share(res))
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == tv.tasks and list(bars[2].y) == pytest.approx([0.25, 0.8, 1 / 3])
    assert fig.layout.barmode == "stack"
    made = F.make(F.select(sections=("layers",), needs_merge=True), F.Inputs(tv, merge=lambda _: res))
    assert made["fisher_share"].heading.startswith("fisher:") and made["fisher_share"].table is not None
    other = ex.merge(tv, "ties")
    assert F.make(F.select(sections=("layers",), needs_merge=True),
                  F.Inputs(tv, merge=lambda _: other))["fisher_share"] is None
