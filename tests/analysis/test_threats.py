"""Security studies on the tiny zoo: every MergeLock variant keeps the expert's own accuracy, and the backdoor table
has one row per merge and backdoored task with attack success from the evaluation."""
from __future__ import annotations

import pytest

from explorer.analysis.threats import backdoor_survival, mergelock_study
from tests.security.test_attack import TriggeredTinyZoo
from tests.tinyzoo import TinyZoo, one_thread  # noqa: F401  (autouse fixture)


def test_mergelock_study_keeps_the_expert_alone_and_picks_lambda_on_validation():
    zoo = TinyZoo(noise=0.05)
    study = mergelock_study(zoo, "task0", scales=[0.2, 0.6])
    assert study["expert"].tolist() == ["clean", "protected", "unlocked (lstsq)", "unlocked (kabsch)"]
    assert study["expert_alone"].nunique() == 1 and set(study["scale"]) <= {0.2, 0.6}
    assert mergelock_study(zoo, "task0", scales=[0.2], protected=False)["expert"].tolist() == ["clean"]


def test_backdoor_survival_rows_and_a_clean_zoo_is_named():
    zoo = TriggeredTinyZoo(predicts=0)
    table = backdoor_survival(zoo, {"ta": {"method": "task_arithmetic", "scale": 0.3},
                                    "avg": {"method": "average"}})
    assert table[["merge", "task"]].values.tolist() == [["ta", "a"], ["avg", "a"]]
    assert (table["attack_success"] == 1.0).all() and (table["base_attack_success"] == 1.0).all()
    with pytest.raises(ValueError, match="no backdoored expert"):
        backdoor_survival(TinyZoo(2, names=["a", "b"]), {"ta": {"method": "task_arithmetic"}})
