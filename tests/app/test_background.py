"""Long runs in a background thread (`explorer.app.background`): progress, the result, errors re-raised."""
from __future__ import annotations

import pandas as pd
import pytest

from explorer.app.background import loss_figure, progress_text, stream
from explorer.methods.runner import Progress


def test_stream_yields_progress_then_the_result_and_reraises_errors():
    def work(report):
        for step in (1, 2):
            report(Progress(step, 2, 1.0 / step, pd.DataFrame()))
        return "merged"
    events = list(stream(work))
    assert [k for k, _ in events] == ["progress", "progress", "done"] and events[-1][1] == "merged"
    curve = loss_figure([p for k, p in events if k == "progress"]).data[0]
    assert list(curve.x) == [1, 2] and list(curve.y) == [1.0, 0.5]
    assert progress_text(events[1][1]) == "step 2 / 2: loss 0.5000"

    def broken(report):
        raise ValueError("bad parameter")
    with pytest.raises(ValueError, match="bad parameter"):
        list(stream(broken))
