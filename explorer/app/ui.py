"""The dashboard's layout and wiring: pick a zoo, experts and a merge method, move its sliders, see what happened.

Only wiring lives here: the handlers are in `explorer/app/` (handlers, history, views, export), the Security,
History and Export tabs' layout in `tabs`, analyses in `explorer/analysis`, figures in `explorer/plots/`;
`explorer.app.serve` starts it. Nothing is fetched from the network (analytics off, assets bundled, share off by
default).
"""
from __future__ import annotations

import functools
import tempfile
import time
from typing import Any, Callable

import gradio as gr

from .. import plots as P
from ..methods import registry
from ..zoo import list_zoos
from . import cache, controls, export, handlers, history, scheduler, security_handlers, shown, tabs, views
from .background import loss_figure, progress_text, stream
from .components import UI
from .widgets import guarded, widget

DEFAULT_METHOD = "task_arithmetic"
UPDATE_EVERY = 0.25  # seconds between progress updates of a long run (loss curve, status)
CSS = """
#status {min-height: 2.5em}
.method-card code {white-space: pre-wrap}
"""
# A slider's number box has no submit event: Enter leaves the box, which applies the value as Tab does (a release).
HEAD = """<script>
document.addEventListener("keydown", (e) => {
  const box = e.target;
  if (e.key !== "Enter" || !box.matches || !box.matches("input[type=number]")) return;
  const block = box.closest(".block");
  if (block && block.querySelector("input[type=range]")) box.blur();
}, true);
</script>"""


def zoo_choices(default: str) -> list[str]:
    """The demo zoo, the named real zoos (zoos/*.json) and the zoo given on the command line (or opened by path)."""
    names = [*list_zoos(), security_handlers.BACKDOORED_ZOO]
    return names if default in names else [default, *names]


def run_values(ui: UI, state: dict, view: handlers.RunView, loss: Any = None, tab: str | None = None,
               session: str | None = None) -> tuple:
    """The values of `ui.run_outputs()` after a run for the page of `session`; the History tab's table and pickers
    only while it is open (`tab`: the open tab, None for the History tab's own buttons), else when it opens."""
    figures = shown.figure_outputs(session, view.figures, views.RUN_FIGURES)
    listed = history_values(state) if tab in (None, "history") else (gr.skip(),) * 4
    return (view.status, state, view.table, *figures, view.mask_note, *listed, view.accuracy_note,
            gr.skip() if loss is None else loss)


def history_values(state: dict) -> tuple:
    """The History tab's table and its three run pickers (current run; A = current, B = the one before)."""
    labels = history.run_labels(state)
    current = labels[0] if labels else None
    second = labels[1] if len(labels) > 1 else current
    return (history.history_table(state), gr.update(choices=labels, value=current),
            gr.update(choices=labels, value=current), gr.update(choices=labels, value=second))


# --- layout ---------------------------------------------------------------------------------------------------
HEADER = ("# Model Merging Explorer\nMerge fine-tuned CLIP experts (task vectors τ_t = θ_t − θ_0) and see what "
          "happened. Pick experts and a method; data-free methods re-run as soon as you release a slider.")


def _sidebar(ui: UI, zoo: str) -> tuple:
    """Zoo, experts, method with its card and generated controls, Run / Cancel / full evaluation."""
    ui.zoo = gr.Dropdown(zoo_choices(zoo), value=zoo, label="Zoo", elem_id="zoo",
                         info="demo: a tiny CLIP-style ViT with 8 experts, offline; others need their checkpoints")
    with gr.Row(equal_height=True):
        ui.extra["zoo_path"] = gr.Textbox(label="…or your own zoo", placeholder="/path/to/checkpoints or zoo.json",
                                          elem_id="zoo-path", scale=4, info="a folder (base + one checkpoint per "
                                          "task: open_clip, Hugging Face CLIP, TALL) or a zoo file (JSON/YAML)")
        ui.extra["open_zoo"] = gr.Button("Open", elem_id="open-zoo", scale=1, size="sm")
    ui.experts = gr.CheckboxGroup(choices=[], label="Experts to merge", elem_id="experts")
    ui.method = gr.Dropdown(controls.method_choices(), value=DEFAULT_METHOD, label="Method", elem_id="method")
    ui.card = gr.Markdown(controls.method_card(DEFAULT_METHOD), elem_id="method-card", elem_classes="method-card")
    specs = controls.controls()
    for m in registry.all_methods():
        with gr.Group(visible=m.name == DEFAULT_METHOD, elem_id=f"controls-{m.name}") as group:
            mine = [c for c in specs if c.method == m.name]
            if not mine:
                gr.Markdown("This method has no parameters.")
            ui.widgets += [widget(c) for c in mine]
        ui.groups[m.name] = group
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="run")
        cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")  # stops learned merges and slow views
    full = gr.Button(f"Score on the full test split (live view: first {handlers.LIVE_LIMIT} images per task)",
                     elem_id="full-eval", size="sm")
    return run, cancel, full


def _plots(ui: UI, *names: str) -> None:
    for name in names:
        ui.plots[name] = gr.Plot(elem_id=name.replace("_", "-"), show_label=False)


def _tabs(ui: UI) -> dict:
    """The result tabs; returns the buttons the wiring needs."""
    e, b = ui.extra, {}
    with gr.Tabs(elem_id="tabs"):
        with gr.Tab("Accuracy", id="accuracy") as ui.tabs["accuracy"]:
            e["accuracy_note"] = gr.Markdown(elem_id="accuracy-note")
            e["table"] = gr.Dataframe(label="Accuracy per task (%)", elem_id="accuracy-table", interactive=False)
            _plots(ui, *views.TABS["accuracy"])
            e["loss"] = gr.Plot(elem_id="loss-curve", show_label=False, visible=False)
        with gr.Tab("Cosine conflicts", id="cosine") as ui.tabs["cosine"]:
            e["zoom"] = gr.Checkbox(False, label="Zoom the colour scales to the values shown (cosine and sign maps; "
                                    "off: the natural ranges, cosine −1 … 1 and sign conflict 0 … 1)",
                                    elem_id="zoom")
            _plots(ui, *views.TABS["cosine"])
        with gr.Tab("Sign conflicts", id="signs") as ui.tabs["signs"]:
            _plots(ui, *views.TABS["signs"])
        with gr.Tab("Mask overlaps", id="masks") as ui.tabs["masks"]:
            e["mask_note"] = gr.Markdown(elem_id="mask-note")
            _plots(ui, *views.TABS["masks"])
        with gr.Tab("Layer-wise scaling", id="layers") as ui.tabs["layers"]:
            _plots(ui, *views.TABS["layers"])
        with gr.Tab("Spectra", id="spectra") as ui.tabs["spectra"]:
            gr.Markdown("Each layer's task matrices through their singular vectors: tasks whose weights are almost "
                        "orthogonal (cosine ≈ 0) can still share their top singular directions, and that overlap is "
                        "what the subspace merges (TSV, Iso-C/CTS, CART) remove. The spectrum and effective ranks "
                        "show the current run's merge beside the tasks.", elem_id="spectra-note")
            _plots(ui, *views.TABS["spectra"])
        with gr.Tab("Security", id="security") as e["tab_security"]:
            tabs.security_tab(ui, b)
        with gr.Tab("History & compare", id="history") as e["tab_history"]:
            tabs.history_tab(ui, b)
        with gr.Tab("Export", id="export") as e["tab_export"]:
            tabs.export_tab(ui, b)
    return b


# --- handlers: read the widgets, call explorer.app, write the widgets ---------------------------------------
def make_run(ui: UI, live: bool, toast: bool = True) -> Callable:
    """The Run handler (live=False) or the slider-release one (live=True: data-free methods only). Slow methods
    run in a thread of this process and stream progress, the loss curve and the status."""
    n = len(ui.run_outputs())

    @guarded(n, toast)
    def on_run(data: dict, request: gr.Request, progress=gr.Progress()):
        method = data[ui.method]
        params = controls.params_from_values(method, [data[w] for w in ui.widgets])
        args = (data[ui.state], data[ui.zoo], data[ui.experts], method, params)
        tab = data[ui.extra["tab"]]
        if controls.is_live(method):
            if live and handlers.repeats_current(*args):  # e.g. Enter, then Tab out of the same box
                yield (gr.skip(),) * n
                return
            if note := handlers.merge_note(data[ui.zoo], data[ui.experts], method):
                yield (note, *[gr.skip()] * (n - 1))  # a large zoo: say so before the merge starts
            try:
                for kind, payload in stream(lambda ahead: handlers.run(*args, session=request.session_hash,
                                                                       waiting=ahead, tab=tab)):
                    if kind == "done":
                        yield run_values(ui, *payload, tab=tab, session=request.session_hash)
                    else:  # the fair queue: how many runs are ahead of this one
                        yield (scheduler.busy_note(payload), *[gr.skip()] * (n - 1))
            except scheduler.Superseded:  # the same session asked for a newer run meanwhile: that one answers
                yield (gr.skip(),) * n
            return
        if note := handlers.data_note(data[ui.zoo], data[ui.experts], method):
            yield (note, *[gr.skip()] * (n - 1))  # said in the page, not raised: the zoo simply has no data
            return
        if live:
            yield (f"{method} reads the zoo's images: press **Run** to start it.", *[gr.skip()] * (n - 1))
            return
        flag = cache.cancel_flag(request.session_hash)
        flag.clear()
        reports: list = []
        shown = 0.0
        work = lambda report: handlers.run(*args, callback=report, cancel=flag.is_set,  # noqa: E731
                                           session=request.session_hash, waiting=report, tab=tab)
        for kind, payload in stream(work):
            if kind == "done":
                losses = payload[1].losses
                yield run_values(ui, *payload, loss=P.loss_curve(losses) if losses else None, tab=tab,
                                 session=request.session_hash)
                return
            if isinstance(payload, int):  # still waiting in the fair queue: this many runs ahead
                yield (scheduler.busy_note(payload), *[gr.skip()] * (n - 1))
                continue
            reports.append(payload)
            if time.monotonic() - shown >= UPDATE_EVERY:  # the page gets at most a few updates a second
                shown = time.monotonic()
                progress((payload.step, payload.total), desc=progress_text(payload))
                yield (progress_text(payload), *[gr.skip()] * (n - 2), loss_figure(reports))
    return on_run


def on_tab(section: str) -> Callable:
    """When a result tab opens: remember it (runs draw only the open tab's figures) and draw the current run's."""
    names = views.SHOWN[section]

    def opened(state: dict, request: gr.Request) -> tuple:
        figures = handlers.tab_figures(state, section)
        return (gr.skip(), section, *shown.figure_outputs(request.session_hash, figures, names))
    return opened


def on_cancel(request: gr.Request) -> str:
    cache.cancel_flag(request.session_hash).set()
    return ("Cancelling: a learning merge stops after its current step and keeps what it has learned so far; "
            "views being computed stop before the next one.")


def open_zoo(zoo_name: str, progress: Callable) -> Any:
    """Load a zoo and read its experts into task vectors, yielding a status line per expert (with the process's
    peak memory) and finally (summary, experts update)."""
    z = cache.zoo(zoo_name)
    tasks = list(z.tasks)
    start = time.monotonic()
    if not cache.loaded(zoo_name, tasks):
        work = lambda report: cache.vectors(zoo_name, tasks, progress=lambda *p: report(p))  # noqa: E731
        for kind, payload in stream(work):
            if kind == "progress":
                done, total, task = payload
                progress((done, total), desc=f"reading expert {task}")
                yield (f"Opening `{zoo_name}`: read {done} / {total} experts ({task}) in "
                       f"{time.monotonic() - start:.1f} s · peak memory {cache.peak_memory_gb():.1f} GB", None)
    tv = cache.vectors(zoo_name, tasks)
    size = tv.numel() * tv.num_tasks * tv.dtype.itemsize / 1e9
    missing = cache.problems(zoo_name, tasks)
    scored = (" Accuracy: not available, the Accuracy tab says what is missing." if missing else "")
    summary = (f"Zoo `{zoo_name}`: {len(tasks)} experts, {tv.numel() / 1e6:.1f} M parameters each; task vectors "
               f"{size:.2f} GB, ready in {time.monotonic() - start:.1f} s · peak memory "
               f"{cache.peak_memory_gb():.1f} GB.{scored}")
    yield summary, gr.update(choices=[(security_handlers.expert_label(zoo_name, t), t) for t in tasks], value=tasks)


def on_zoo(zoo_name: str, progress=gr.Progress()):
    for status, experts in open_zoo(zoo_name, progress):
        yield status, gr.skip(), gr.skip() if experts is None else experts


def on_open_path(path: str, progress=gr.Progress()):
    """Open a folder of checkpoints or a zoo file typed into the path box; it joins the zoo picker."""
    path = (path or "").strip()
    if not path:
        raise ValueError("Type the path of a folder of checkpoints (base + one per task) or of a zoo file first.")
    for status, experts in open_zoo(path, progress):
        picked = gr.skip() if experts is None else gr.update(choices=zoo_choices(path), value=path)
        yield status, picked, gr.skip() if experts is None else experts


def on_zoo_figures(zoo_name: str, tasks: list[str], zoom: bool, request: gr.Request, progress=gr.Progress()):
    """The task vectors' views; a large zoo's are announced first, computed with progress, and can be cancelled."""
    tasks = handlers.check_tasks(tasks)
    n = len(views.ZOO_FIGURES)
    if not views.ready(zoo_name, tasks, zoom):
        note = views.size_note(zoo_name, tasks)
        flag = cache.cancel_flag(request.session_hash)
        flag.clear()
        if note:
            yield (note, *[gr.skip()] * n)
        work = lambda report: views.zoo_figures(zoo_name, tasks, zoom, lambda *p: report(p), flag.is_set)  # noqa
        start = time.monotonic()
        try:
            for kind, payload in stream(work):
                if kind == "progress" and note:
                    done, total, name = payload
                    progress((done, total), desc=name)
                    yield (f"{note}\n\nComputing view {done + 1} / {total} ({name}), "
                           f"{time.monotonic() - start:.0f} s so far.", *[gr.skip()] * n)
        except views.Cancelled as err:
            yield (f"Views not computed ({err}): pick the experts again to compute them.", *[gr.skip()] * n)
            return
    figures = views.zoo_figures(zoo_name, tasks, zoom)
    yield (gr.skip(), *[figures[name] for name in views.ZOO_FIGURES])


def on_method(method: str) -> tuple:
    m = registry.get(method)
    return (controls.method_card(method), *[gr.update(visible=g.name == method) for g in registry.all_methods()],
            gr.update(visible=m.needs_data))


def on_export_weights(state: dict) -> tuple:
    files = export.export_weights(state, None, tempfile.mkdtemp(prefix="explorer-export-"))
    return f"Exported {files[0].name} and its run record.", [str(f) for f in files]


def on_export_figures(state: dict, fmt: str) -> tuple:
    path = export.export_figures(state, None, fmt, tempfile.mkdtemp(prefix="explorer-figures-"))
    return f"Exported the figures as {path.name}.", str(path)


def on_export_report(state: dict) -> tuple:
    path = export.export_report(state, None, tempfile.mkdtemp(prefix="explorer-report-"))
    return f"Exported the report as {path.name}: one HTML file that opens offline.", str(path)


def on_compare(state: dict, a: str, b: str) -> tuple:
    figure, table = history.compare(state, a, b)
    return gr.skip(), table, figure


def on_pin(state: dict, run_id: str) -> tuple:
    state = history.toggle_pin(state, run_id)
    return gr.skip(), state, history.history_table(state)


# --- wiring ----------------------------------------------------------------------------------------
def queued(fn: Callable) -> Callable:
    """`fn` run in a turn of the fair queue (the Security and Export buttons' computations)."""
    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        return scheduler.QUEUE.run(lambda: fn(*args))
    return call


def _wire(demo: gr.Blocks, ui: UI, run: gr.Button, cancel: gr.Button, full: gr.Button, b: dict) -> None:
    e, outs = ui.extra, ui.run_outputs()
    # Runs all enter at once and wait in the fair queue, which says how many are ahead; the other heavy buttons
    # run one at a time and also take a turn in that queue.
    runs = {"concurrency_id": "runs", "concurrency_limit": scheduler.QUEUE.limit}
    merge = {"concurrency_id": "heavy", "concurrency_limit": 1}
    run_inputs = {ui.state, ui.zoo, ui.experts, ui.method, e["tab"], *ui.widgets}
    for section, tab in ui.tabs.items():
        tab.select(guarded(2 + len(views.SHOWN[section]))(on_tab(section)), ui.state,
                   [ui.status, e["tab"], *[ui.plots[n] for n in views.SHOWN[section]]], **runs)
    history_outs = [e["history"], e["pick"], e["compare_a"], e["compare_b"]]
    e["tab_history"].select(lambda s: ("history", *history_values(s)), ui.state, [e["tab"], *history_outs])
    for name in ("security", "export"):
        e[f"tab_{name}"].select(functools.partial(lambda n: n, name), None, e["tab"])
    # preprocess=False: our validation names the parameter. Undocumented: each slider's release is the /run endpoint
    # again (every control an input); listed in the API description, their copies made it 2.7 MB, which each
    # gradio_client read at connect in 0.4-1 s of a core. Clients call /run; the page calls these as before.
    live = {"inputs": run_inputs, "outputs": outs, "preprocess": False, "trigger_mode": "always_last",
            "show_progress": "minimal", "api_visibility": "undocumented", **runs}
    zoo_outs = [ui.status, *[ui.plots[n] for n in views.ZOO_FIGURES]]
    zoo_figures = guarded(len(zoo_outs), toast=False)(on_zoo_figures)
    follow_up = make_run(ui, live=True, toast=False)  # a live run after a zoo, expert or method change

    load_zoo, open_path = guarded(3)(on_zoo), guarded(3)(on_open_path)
    for listener in (demo.load, ui.zoo.input):
        listener(load_zoo, ui.zoo, [ui.status, ui.zoo, ui.experts], show_progress="minimal") \
            .then(zoo_figures, [ui.zoo, ui.experts, e["zoom"]], zoo_outs).then(follow_up, **live)
    for listener in (e["open_zoo"].click, e["zoo_path"].submit):
        listener(open_path, e["zoo_path"], [ui.status, ui.zoo, ui.experts], show_progress="minimal") \
            .then(zoo_figures, [ui.zoo, ui.experts, e["zoom"]], zoo_outs).then(follow_up, **live)
    ui.experts.input(zoo_figures, [ui.zoo, ui.experts, e["zoom"]], zoo_outs, trigger_mode="always_last") \
        .then(follow_up, **live)
    e["zoom"].input(zoo_figures, [ui.zoo, ui.experts, e["zoom"]], zoo_outs)
    ui.method.change(on_method, ui.method, [ui.card, *ui.groups.values(), e["loss"]]).then(follow_up, **live)
    for c, w in zip(controls.controls(), ui.widgets):
        if controls.is_live(c.method):  # a number box applies on Enter (submit) and on Tab (blur)
            for event in {"slider": ["release"], "number": ["submit", "blur"]}.get(c.kind, ["input"]):
                getattr(w, event)(make_run(ui, live=True), **live)
        elif c.kind == "number":  # methods that read data run on Run only: Enter checks the value now
            w.submit(guarded(1)(functools.partial(controls.value_note, c)), w, ui.status, preprocess=False)
    run.click(make_run(ui, live=False), inputs=run_inputs, outputs=outs, preprocess=False, api_name="run", **runs)
    cancel.click(on_cancel, None, ui.status, concurrency_limit=None)
    def on_full(state: dict, request: gr.Request) -> tuple:
        return run_values(ui, *handlers.evaluate_full(state), session=request.session_hash)

    def on_show(state: dict, run_id: str, request: gr.Request) -> tuple:
        return run_values(ui, *handlers.show(state, run_id), session=request.session_hash)

    full.click(guarded(len(outs))(on_full), ui.state, outs, **merge)
    b["show"].click(guarded(len(outs))(on_show), [ui.state, e["pick"]], outs, **merge)
    b["pin"].click(guarded(3)(on_pin), [ui.state, e["pick"]], [ui.status, ui.state, e["history"]])
    b["compare"].click(guarded(3)(on_compare), [ui.state, e["compare_a"], e["compare_b"]],
                       [ui.status, e["compare_table"], ui.plots["compare_plot"]])
    b["backdoor"].click(guarded(3)(queued(lambda: (gr.skip(), *security_handlers.backdoor_view()))), None,
                        [ui.status, e["backdoor_table"], ui.plots["backdoor_plot"]], **merge)
    b["lock"].click(guarded(5)(queued(lambda t, on, u: (gr.skip(), *security_handlers.mergelock_view(t, on, u)))),
                    [e["lock_task"], e["lock_on"], e["lock_unlock"]],
                    [ui.status, e["lock_table"], *[ui.plots[n] for n in ("lock_plot", "lock_cosine", "lock_norms")]],
                    **merge)
    b["weights"].click(guarded(2)(queued(on_export_weights)), ui.state, [ui.status, e["weights_files"]], **merge)
    b["figures"].click(guarded(2)(queued(on_export_figures)), [ui.state, e["format"]], [ui.status, e["figure_file"]],
                       **merge)
    b["report"].click(guarded(2)(queued(on_export_report)), ui.state, [ui.status, e["report_file"]], **merge)


def build_demo(zoo: str = "demo") -> gr.Blocks:
    """The dashboard, opened on zoo `zoo`; nothing heavy happens until a page loads."""
    ui = UI()
    with gr.Blocks(title="Model Merging Explorer", fill_width=True) as demo:
        ui.state = gr.State(handlers.new_state())
        ui.extra["tab"] = gr.State("accuracy")  # the open result tab: a run draws its figures only
        gr.Markdown(HEADER)
        with gr.Row():
            with gr.Column(scale=1, min_width=360):
                run, cancel, full = _sidebar(ui, zoo)
            with gr.Column(scale=3):
                ui.status = gr.Markdown("Loading the zoo…", elem_id="status")
                buttons = _tabs(ui)
        _wire(demo, ui, run, cancel, full, buttons)
    return demo.queue(max_size=32, default_concurrency_limit=1)
