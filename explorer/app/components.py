"""The handles of the dashboard's components that the handlers read and write, filled in while `ui` and `tabs`
lay the page out (its own module, so the layout modules share it without importing each other)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import views


@dataclass
class UI:
    """The components the handlers read and write (filled in while the layout is built)."""

    state: Any = None
    status: Any = None
    zoo: Any = None
    experts: Any = None
    method: Any = None
    card: Any = None
    widgets: list = field(default_factory=list)
    groups: dict = field(default_factory=dict)
    plots: dict = field(default_factory=dict)
    tabs: dict = field(default_factory=dict)  # result section -> its gr.Tab
    extra: dict = field(default_factory=dict)

    def run_outputs(self) -> list:
        e = self.extra
        return [self.status, self.state, e["table"], *[self.plots[n] for n in views.RUN_FIGURES], e["mask_note"],
                e["history"], e["pick"], e["compare_a"], e["compare_b"], e["accuracy_note"], e["loss"]]  # loss: last
