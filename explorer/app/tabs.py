"""The layout of the dashboard's tool tabs: Security (backdoors, MergeLock), History & compare, and Export."""
from __future__ import annotations

import gradio as gr

from . import cache, export, handlers, history, security_handlers
from .components import UI


def security_tab(ui: UI, b: dict) -> None:
    """Backdoored experts through merging (accuracy beside attack success) and MergeLock with its unlock attempt."""
    e = ui.extra
    gr.Markdown("**Backdoors.** The `demo-backdoored` zoo swaps in experts fine-tuned on data where a corner "
                "checkerboard relabels images to a target class (⚠ in the expert picker). Merging inherits the "
                "backdoor: attack success = share of triggered test images of the other classes classified as the "
                "target. The Accuracy tab shows it for every run on that zoo (try `dam`).", elem_id="security-note")
    b["backdoor"] = gr.Button("Merge the backdoored experts with Task Arithmetic and TIES", elem_id="backdoor-run")
    e["backdoor_table"] = gr.Dataframe(label="Accuracy and attack success (%)", elem_id="backdoor-table",
                                       interactive=False)
    ui.plots["backdoor_plot"] = gr.Plot(elem_id="backdoor-plot", show_label=False)
    gr.Markdown("**MergeLock.** Per-head invertible transforms of the attention Q–K and V–O branches keep an "
                "expert's outputs but move its weights far from the base: Task Arithmetic with it (λ chosen on "
                "validation) collapses. The unlock attempt solves each head's transform back towards the base "
                "(least squares, or Kabsch: a rotation).")
    with gr.Row():
        e["lock_task"] = gr.Dropdown(load_zoo_tasks(), value="scenes", label="Expert", elem_id="lock-task")
        e["lock_on"] = gr.Checkbox(True, label="Protect this expert", elem_id="lock-on")
        e["lock_unlock"] = gr.Radio(list(security_handlers.UNLOCKS), value="lstsq", label="Unlock attempt",
                                    elem_id="lock-unlock")
    b["lock"] = gr.Button("Merge it with Task Arithmetic (about a minute)", elem_id="lock-run", variant="primary")
    e["lock_table"] = gr.Dataframe(label="Accuracy (%), test split", elem_id="lock-table", interactive=False)
    for name in ("lock_plot", "lock_cosine", "lock_norms"):
        ui.plots[name] = gr.Plot(elem_id=name.replace("_", "-"), show_label=False)


def load_zoo_tasks() -> list[str]:
    return list(cache.zoo("demo").tasks)


def history_tab(ui: UI, b: dict) -> None:
    """The session's runs, a picker to show or pin one, and two pickers to compare runs side by side."""
    e = ui.extra
    e["history"] = gr.Dataframe(label=handlers.HISTORY_NOTE, elem_id="history", interactive=False)
    with gr.Row():
        e["pick"] = gr.Dropdown([], label="Run", elem_id="pick-run", scale=3)
        b["show"] = gr.Button("Show", elem_id="show-run", scale=1)
        b["pin"] = gr.Button("Pin / unpin", elem_id="pin-run", scale=1)
    with gr.Row():
        e["compare_a"] = gr.Dropdown([], label="Run A", elem_id="compare-a")
        e["compare_b"] = gr.Dropdown([], label="Run B", elem_id="compare-b")
        b["compare"] = gr.Button("Compare A and B", elem_id="compare", variant="primary")
    e["compare_table"] = gr.Dataframe(history.compare_frame(), label="Merged accuracy (%): A, B and B − A",
                                      elem_id="compare-table", interactive=False)
    ui.plots["compare_plot"] = gr.Plot(elem_id="compare-plot", show_label=False)


def export_tab(ui: UI, b: dict) -> None:
    """Buttons that write the current run's weights + record, its figures or its report, and the files to download."""
    e = ui.extra
    gr.Markdown("Export the current run: merged weights (safetensors) with its JSON run record, or all "
                "of its figures (one offline HTML page, or PNGs in a zip).")
    b["weights"] = gr.Button("Export merged weights + run record", elem_id="export-weights")
    e["weights_files"] = gr.File(label="Weights and record", file_count="multiple", elem_id="weights-files",
                                 interactive=False, height=140)
    e["format"] = gr.Radio(list(export.FORMATS), value="html", label="Figure format", elem_id="fig-format")
    b["figures"] = gr.Button("Export figures", elem_id="export-figures")
    e["figure_file"] = gr.File(label="Figures", elem_id="figure-file", interactive=False, height=100)
    gr.Markdown("The report: one HTML file anyone can open offline, with the run's parameters, per-task accuracy "
                "against base and experts, every figure (interactive) and the commands that reproduce it.")
    b["report"] = gr.Button("Download report", elem_id="export-report", variant="primary")
    e["report_file"] = gr.File(label="Report", elem_id="report-file", interactive=False, height=100)
