"""What the dashboard's buttons do, as plain functions: merge, evaluate, keep a per-session run history.

A session's state is a small dict of run records ({"runs": [...], "current": id}); every function takes it and
returns a new one, so sessions never share runs. Heavy results stay in `cache`, keyed by run id.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
import plotly.graph_objects as go

from ..checks import check_experts
from ..evaluate import Scores, evaluate, percent, reference_accuracies
from ..merging import merge
from ..methods import registry
from ..result import MergeResult
from . import cache, scheduler, views

LIVE_LIMIT = 32        # test images per task in the live view (the first ones, the same every time): 0.5 s budget
MAX_UNPINNED = 20      # older unpinned runs drop out of the history
MAX_PINNED = 10        # so a session's history holds at most 30 small records (and the server 12 results)
ATTACK = {"base": "attack base", "expert": "attack expert", "merged": "attack merged"}  # ASR columns of the table
HISTORY_NOTE = (f"Runs of this session, newest first: the last {MAX_UNPINNED} runs are kept, plus up to "
                f"{MAX_PINNED} pinned ones")


def new_state() -> dict[str, Any]:
    return {"runs": [], "current": None}


@dataclass
class RunView:
    """What the page shows for one run: its record, the accuracy table (in %) and its figures."""

    record: dict[str, Any]
    table: pd.DataFrame
    figures: dict[str, go.Figure | None]
    mask_note: str
    losses: list[float] | None = None  # the objective at every step, for methods that learn their coefficients

    @property
    def accuracy_note(self) -> str:
        return accuracy_note(self.record)

    @property
    def status(self) -> str:
        r = self.record
        if r["scores"] is None:
            return (f"**Run {r['label']}** on {len(r['tasks'])} experts of `{r['zoo']}`: merged in "
                    f"{r['seconds']:.2f} s. Accuracy not measured: this zoo lacks what evaluation needs (the "
                    f"Accuracy tab says what and how to add it); every weight-space view and the export work.")
        where = "the full test split" if r["limit"] is None else f"the first {r['limit']} test images per task"
        stopped = " Cancelled: these are the coefficients learned until then." if r["cancelled"] else ""
        took = ("the same settings as an earlier run: its merge reused" if r.get("reused")
                else f"merge took {r['seconds']:.2f} s")
        return (f"**Run {r['label']}** on {len(r['tasks'])} experts of `{r['zoo']}`: mean accuracy "
                f"{r['mean_merged']:.1%}, normalized {r['mean_normalized']:.1%} (on {where}; {took}).{stopped}")


def accuracy_note(record: dict[str, Any]) -> str:
    """What the Accuracy tab says under its table: nothing when the run was scored, else precisely what the zoo
    lacks for evaluation and how to provide it."""
    missing = record.get("missing") or []
    if record["scores"] is not None or not missing:
        return ""
    lines = "\n".join(f"- {p}" for p in missing)
    return (f"**No accuracy for this zoo yet.** Scoring a merge needs the encoder's model definition, zero-shot heads "
            f"(from a CLIP text tower) and each task's test images; `{record['zoo']}` lacks:\n\n{lines}\n\n"
            "Provide them in a zoo file (JSON: `arch`, `base`, `experts`, `text`, `data_root`, `tasks` with "
            "`classnames`) and open it from the zoo picker. Cosine, sign, mask, layer and spectral views, the history "
            "and the export need none of this.")


def data_note(zoo_name: str, tasks: list[str], method: str) -> str:
    """Why a method that reads the zoo's images cannot run on this zoo ("" when it can)."""
    if not registry.get(method).reads_data:
        return ""
    missing = cache.problems(zoo_name, check_tasks(tasks))
    if not missing:
        return ""
    return (f"**{method}** reads the zoo's images and heads, which `{zoo_name}` lacks ({'; '.join(missing)}). "
            "Pick a data-free method (task arithmetic, TIES, TSV, ...), or add data to the zoo file.")


def merge_note(zoo_name: str, tasks: list[str] | None, method: str) -> str:
    """What the page says before a merge of a large zoo starts ("" for a small zoo, or before it is loaded)."""
    tasks = list(tasks or [])
    if not cache.loaded(zoo_name, tasks):
        return ""
    tv = cache.vectors(zoo_name, tasks)
    if tv.numel() * tv.num_tasks < views.LARGE:
        return ""
    return (f"Merging {tv.num_tasks} experts × {tv.numel() / 1e6:.1f} M parameters with **{method}** and redrawing "
            f"its views: at this size that takes 10 s to a minute on a 2-core CPU.")


def check_tasks(tasks: list[str] | None) -> list[str]:
    return check_experts(tasks or [], "tick two or more under “Experts”")


def label(n: int, method: str, params: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return f"#{n} {method}({shown})"


@dataclass
class Computed:
    """What a run computes from its settings alone, the same for every session: a data-free run's is shared. Its
    figures are drawn when a page first shows them (the open tab's), then kept."""

    result: MergeResult
    scores: pd.DataFrame | None
    drawn: dict[str, go.Figure | None] = field(default_factory=dict)

    def figures(self, names: tuple[str, ...]) -> dict[str, go.Figure | None]:
        """The figures `names`, drawing (on a worker of the fair queue) those not drawn yet."""
        missing = tuple(n for n in names if n not in self.drawn)
        if missing:
            self.drawn.update(scheduler.QUEUE.run(lambda: views.run_figures(self.result, self.scores, missing)))
        return {n: self.drawn[n] for n in names}

    @property
    def nbytes(self) -> int:
        """About what it holds in memory: the merged delta and the masks (one byte per entry for 8 tasks)."""
        tv, masks = self.result.tv, self.result.masks or {}
        return tv.numel() * (tv.dtype.itemsize + -(-len(masks) // 8))


def run(state: dict, zoo_name: str, tasks: list[str] | None, method: str, params: dict[str, Any], *,
        limit: int | None = LIVE_LIMIT, callback: Callable | None = None, cancel: Callable[[], bool] | None = None,
        session: str | None = None, waiting: Callable[[int], None] | None = None,
        tab: str | None = None) -> tuple[dict, RunView]:
    """Merge `tasks` of zoo `zoo_name` with `method` and `params`, score it on `limit` test images per task,
    and add the run to the session's history. The work waits its turn in the fair queue (`waiting(n)` hears how
    many runs are ahead); a data-free run with the settings of an earlier one (any session's) reuses its work.
    Only the figures of the open `tab` are drawn (all of them for None)."""
    tasks = check_tasks(tasks)
    if note := data_note(zoo_name, tasks, method):
        raise ValueError(note)
    missing = cache.problems(zoo_name, tasks)
    resolved = registry.get(method).resolve(params)
    names, made = views.shown(tab), []

    def work() -> Computed:
        result = merge(cache.vectors(zoo_name, tasks), method, callback=callback, cancel=cancel, **resolved)
        scores = None if missing else scored(evaluate(cache.zoo(zoo_name), result, split="test", limit=limit))
        made.append(True)
        computed = Computed(result, scores)
        computed.figures(names)  # drawn in this turn: a worker is held already
        return computed

    def compute() -> Computed:
        return scheduler.QUEUE.run(work, session, waiting)

    if registry.get(method).reads_data:  # learns on the zoo's images, may be cancelled: never shared
        computed = compute()
    else:
        key = (*cache.tv_key(zoo_name, tasks), method, tuple((k, repr(v)) for k, v in sorted(resolved.items())),
               limit)
        computed = cache.RUNS.get(key, compute)
    result = computed.result
    n = 1 + max((r["n"] for r in state["runs"]), default=0)
    record = {"id": uuid.uuid4().hex[:12], "n": n, "label": label(n, method, result.params), "zoo": zoo_name,
              "tasks": tasks, "method": method, "params": dict(result.params), "limit": limit,
              "seconds": float(result.info.get("seconds", 0.0)), "reused": not made, "pinned": False,
              "missing": missing, "cancelled": bool(result.info.get("cancelled", False)),
              **_score_fields(computed.scores)}
    cache.remember(record["id"], computed)
    return _with_run(state, record), view(record, result, computed.figures(names))


def repeats_current(state: dict, zoo_name: str, tasks: list[str] | None, method: str, params: dict[str, Any]) -> bool:
    """Whether the session's current run already has these settings (a repeated event need not merge again)."""
    current = next((r for r in state["runs"] if r["id"] == state["current"]), None)
    return current is not None and (current["zoo"], current["tasks"], current["method"]) == \
        (zoo_name, list(tasks or []), method) and current["params"] == registry.get(method).resolve(params)


def scored(scores: Scores) -> pd.DataFrame:
    """The accuracy table with each backdoored task's attack success rate beside it (columns "attack ...")."""
    if scores.attack is None:
        return scores.table
    return scores.table.merge(scores.attack.rename(columns=ATTACK), on="task", how="left")


def shown(scores: pd.DataFrame) -> pd.DataFrame:
    """A scores table in % for the page: accuracies as `percent` writes them, attack success "—" where no trigger."""
    attack = [c for c in ATTACK.values() if c in scores.columns]
    return percent(scores).assign(**{c: ["—" if pd.isna(v) else f"{100 * v:.1f}" for v in scores[c]] for c in attack})


def _score_fields(scores: pd.DataFrame | None) -> dict[str, Any]:
    if scores is None:  # the zoo cannot evaluate: the record says what it lacks instead
        return {"scores": None, "mean_merged": None, "mean_normalized": None}
    return {"scores": scores.to_dict(orient="records"), "mean_merged": float(scores.merged.mean()),
            "mean_normalized": float(scores.normalized.mean())}


def _with_run(state: dict, record: dict) -> dict:
    """The state with `record` added (or replacing the run with its id) and made current; old unpinned runs
    beyond MAX_UNPINNED are dropped."""
    runs = [r for r in state["runs"] if r["id"] != record["id"]] + [record]
    runs.sort(key=lambda r: r["n"])
    unpinned = [r["id"] for r in runs if not r["pinned"]]
    dropped = set(unpinned[:-MAX_UNPINNED])
    return {"runs": [r for r in runs if r["id"] not in dropped], "current": record["id"]}


def find(state: dict, run_id: str | None) -> dict[str, Any]:
    """The run record with id (or label) `run_id` in this session, or a readable error."""
    for r in state["runs"]:
        if run_id in (r["id"], r["label"]):
            return r
    if not state["runs"]:
        raise ValueError("No runs yet: press Run (or move a slider) first.")
    raise ValueError(f"Run {run_id!r} is not in this session's history.")


def computed_of(record: dict[str, Any]) -> Computed:
    """A run's result, scores and drawn figures: kept in memory for recent runs, merged again from its record
    otherwise (data-free methods are deterministic given their parameters and seed)."""
    computed = cache.RESULTS.get(record["id"])
    if computed is not None:
        return computed
    if registry.get(record["method"]).reads_data:
        raise ValueError(f"Run {record['label']} learned from data and is no longer in memory: run it again.")
    result = scheduler.QUEUE.run(lambda: merge(cache.vectors(record["zoo"], record["tasks"]), record["method"],
                                               **record["params"]))
    computed = Computed(result, None if record["scores"] is None else pd.DataFrame(record["scores"]))
    cache.remember(record["id"], computed)
    return computed


def result_of(record: dict[str, Any]) -> MergeResult:
    """The MergeResult of a run (see `computed_of`)."""
    return computed_of(record).result


def view(record: dict[str, Any], result: MergeResult, figures: dict[str, go.Figure | None] | None = None) -> RunView:
    """What the page shows for a run; its figures are drawn (in a turn of the queue) unless given."""
    scores = None if record["scores"] is None else pd.DataFrame(record["scores"])
    table = pd.DataFrame(columns=["task"]) if scores is None else shown(scores)
    if figures is None:
        figures = scheduler.QUEUE.run(lambda: views.run_figures(result, scores))
    losses = result.info.get("loss")
    return RunView(record, table, figures, views.mask_note(result), [float(v) for v in losses] if losses else None)


def evaluate_full(state: dict, run_id: str | None = None) -> tuple[dict, RunView]:
    """Score a run (the current one by default) on the whole test split and update its record."""
    record = find(state, run_id or state["current"])
    if record["scores"] is None and record.get("missing"):
        raise ValueError(f"Run {record['label']} cannot be scored: zoo `{record['zoo']}` lacks "
                         + "; ".join(record["missing"]))
    result = result_of(record)
    scores = scheduler.QUEUE.run(lambda: scored(evaluate(cache.zoo(record["zoo"]), result, split="test", limit=None)))
    record = {**record, "limit": None, **_score_fields(scores)}
    computed = Computed(result, scores)  # its own: the live-subset run may be shared with other sessions
    cache.remember(record["id"], computed)
    return _with_run(state, record), view(record, result, computed.figures(views.shown(None)))


def tab_figures(state: dict, tab: str) -> dict[str, go.Figure | None]:
    """The current run's figures of `tab`, when the page opens that tab (runs draw only the open tab's)."""
    names = views.shown(tab)
    if not names or state["current"] is None:
        return {}
    return computed_of(find(state, state["current"])).figures(names)


def show(state: dict, run_id: str) -> tuple[dict, RunView]:
    """Make a run of the history current again (its figures and table come back)."""
    record = find(state, run_id)
    return {**state, "current": record["id"]}, view(record, result_of(record))


KERNEL_METHODS = ("ties", "dare", "magnitude", "breadcrumbs", "consensus", "emr")  # merges with compiled kernels


def warm_steps(zoo_name: str) -> list[Callable[[], Any]]:
    """What each worker runs while idle: every merge with compiled kernels at each slider's lowest, default and
    highest value (torch.compile traces its kernels again in every thread and for each branch a value takes), so
    the first students do not wait for a compile; none for a large zoo (its merges are too slow to run for this)."""
    z = cache.zoo(zoo_name)
    tv = cache.vectors(zoo_name, list(z.tasks))
    if tv.numel() * tv.num_tasks >= views.LARGE:
        return []
    steps = []
    for method in KERNEL_METHODS:
        sliders = [p for p in registry.get(method).params if p.type in (int, float) and p.low is not None
                   and p.high is not None and p.high - p.low <= 100]
        steps.append(functools.partial(merge, tv, method))
        steps += [functools.partial(merge, tv, method, **{p.name: v}) for p in sliders for v in (p.low, p.high)]
    return steps


def warm(zoo_name: str, tasks: list[str] | None = None, limit: int | None = LIVE_LIMIT) -> None:
    """Fill the shared caches for a zoo (task vectors, zoo figures, test images, base and expert accuracies),
    so that the first page view and the first slider release are fast."""
    z = cache.zoo(zoo_name)
    tasks = list(tasks or z.tasks)
    views.zoo_figures(zoo_name, tasks)
    if cache.problems(zoo_name, tasks):
        return  # nothing to score: the accuracy view explains why
    scheduler.QUEUE.run(lambda: [reference_accuracies(z, task, "test", limit) for task in tasks])
