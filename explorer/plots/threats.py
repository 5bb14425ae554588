"""Security: backdoors through merging (accuracy beside attack success) and MergeLock's protected expert."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .style import METHOD_COLORS, SERIES, _styled


def backdoor_survival(frame: pd.DataFrame, title: str = "Backdoor through merging: accuracy and attack success"
                      ) -> go.Figure:
    """Grouped bars per merge and backdoored task (`analysis.threats.backdoor_survival`): the task's clean accuracy,
    the average accuracy and the attack success rate, in %."""
    x = [f"{m} · {t}" for m, t in zip(frame["merge"], frame["task"])]
    fig = go.Figure()
    for column, label, color in (("accuracy", "accuracy on the task", METHOD_COLORS[0]),
                                 ("average_accuracy", "average accuracy", METHOD_COLORS[1]),
                                 ("attack_success", "attack success rate", "#d62728")):
        fig.add_bar(x=x, y=100 * frame[column], name=label, marker_color=color,
                    hovertemplate=f"{label}<br>%{{x}}: %{{y:.1f}} %<extra></extra>")
    return _styled(fig, title, "merge · backdoored task", "%", barmode="group", yaxis={"range": [0, 100]})


def mergelock_study(frame: pd.DataFrame, title: str = "MergeLock: Task Arithmetic with the protected expert"
                    ) -> go.Figure:
    """Bars per expert variant (`analysis.threats.mergelock_study`): the expert alone, Task Arithmetic on its task
    and on the other tasks (%), with the base model's accuracy on the task as a dashed line."""
    fig = go.Figure()
    for column, label, color in (("expert_alone", "expert alone", SERIES["expert"]),
                                 ("merged_task", "Task Arithmetic, this task", METHOD_COLORS[0]),
                                 ("merged_others", "Task Arithmetic, other tasks", METHOD_COLORS[1])):
        fig.add_bar(x=frame["expert"], y=100 * frame[column], name=label, marker_color=color,
                    hovertemplate=f"{label}<br>%{{x}}: %{{y:.1f}} %<extra></extra>")
    fig.add_hline(y=100 * float(frame["base"].iloc[0]), line_dash="dash", annotation_text="base on this task")
    return _styled(fig, title, "expert merged", "accuracy (%)", barmode="group", yaxis={"range": [0, 100]})
