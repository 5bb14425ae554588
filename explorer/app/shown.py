"""Which run figures each session's page shows, so that a run sends a figure as a plain value where its plot is
visible already. A `gr.update(value=..., visible=...)` makes Gradio build a new component and its config for that
session (a plot's constructor and `config_for_block`: 14 % of the server's time under 16 students, py-spy); a plain
value is only serialised. What a page was last sent is kept per session hash; a session not known (new, reloaded,
or forgotten by the LRU) gets full updates, as before."""
from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import gradio as gr

from . import cache

_LOCK = threading.Lock()  # decide and record together, so two events of one session record what they sent
SENT = cache.LRU(4096)  # session hash -> {run figure name: whether its plot was last sent visible}


def figure_outputs(session: str | None, figures: Mapping[str, Any], names: Sequence[str]) -> list:
    """One output per plot of `names`: `gr.skip()` where `figures` lacks the name (a closed tab's, drawn when it
    opens) or where a plot that has no figure is hidden already; the figure itself where its plot is visible
    already; else `gr.update(value=figure, visible=figure is not None)`. `session` None: always the update."""
    with _LOCK:
        known = dict(SENT.get(session) or {}) if session else {}
        out = []
        for name in names:
            if name not in figures:
                out.append(gr.skip())
                continue
            figure = figures[name]
            visible = figure is not None
            if known.get(name) is visible:
                out.append(figure if visible else gr.skip())
            else:
                out.append(gr.update(value=figure, visible=visible))
            known[name] = visible
        if session:
            SENT.put(session, known)
    return out
