"""The merges that read data statistics run from the dashboard with a progress bar, and re-run fast from the cache."""
from __future__ import annotations

import math

import explorer as ex
from explorer.app import controls, handlers
from explorer.app.background import loss_figure, progress_text
from explorer.methods import stats_passes as S

from .conftest import ZOO


def test_statistics_passes_report_progress_and_alpha_reruns_from_the_cache(zoo):
    S.clear()
    assert not controls.is_live("regmean") and "press Run" in controls.method_card("regmean")
    params = {**ex.merging.registry.get("regmean").defaults(), "examples": 16}
    reports = []
    _, view = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "regmean", params, limit=4, callback=reports.append)
    assert [p.step for p in reports] == [1, 2, 3] and math.isnan(reports[-1].loss)
    assert progress_text(reports[0]) == "Gram matrices: batch 1 / 3"
    assert loss_figure(reports).data[0].x == ()  # no loss to draw during a statistics pass
    again = []
    handlers.run(handlers.new_state(), ZOO, zoo.tasks, "regmean", {**params, "alpha": 0.5}, limit=4,
                 callback=again.append)
    assert again == []  # the Gram matrices came from the cache: no batch was read
    _, fisher = handlers.run(handlers.new_state(), ZOO, zoo.tasks, "fisher", {"examples": 16}, limit=4)
    assert fisher.figures["fisher_share"] is not None and view.figures["fisher_share"] is None
    S.clear()
