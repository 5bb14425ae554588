"""RunRecord: what was merged, how, and with what result; saved as JSON beside the merged weights."""
from __future__ import annotations

import json
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import methods  # noqa: F401  (registers every method's add-on kind, so a saved record's add-on rebuilds)
from .result import MergeResult, get_addon
from .taskvec import TaskVectors
from .weights import file_sha256, read_weights, write_weights

_PACKAGES = ("model-merging-explorer", "torch", "open_clip_torch", "numpy", "safetensors")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class RunRecord:
    """Everything needed to reproduce a merge: method, params, seed, inputs, versions, timings, scores."""

    method: str
    params: dict[str, Any]
    tasks: list[str]
    zoo: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> sha256 or fingerprint
    seconds: float | None = None
    scores: list[dict] | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)  # split and limit the scores used (empty: not scored)
    attack: list[dict] | None = None  # attack success rate per backdoored task (task, base, expert, merged)
    weights: dict[str, str] = field(default_factory=dict)  # written file -> sha256
    layout: str = "merged"  # "merged": one model; "per_task": keys are "<task>/<name>"
    data: dict[str, Any] = field(default_factory=dict)  # what a data-reading method read: split, examples per task
    merge_path: str = "in-memory"  # "in-memory": stacked task vectors; "streamed": parameter by parameter from disk
    peak_rss_mib: float | None = None  # the merging process's peak resident memory, where the CLI measured it
    addon: dict[str, Any] = field(default_factory=dict)  # trained extras: kind, config, file (see result.AddOn)
    versions: dict[str, str] = field(default_factory=package_versions)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def seed(self) -> int | None:
        return self.params.get("seed")

    @classmethod
    def of(cls, result: MergeResult, *, zoo: Any = None, inputs: dict[str, str] | None = None,
           scores: Any = None) -> "RunRecord":
        """The record of a MergeResult; `scores` may be a Scores object or a DataFrame."""
        if zoo is not None and not isinstance(zoo, str):  # a Zoo: the file or folder it came from, else its name
            zoo = getattr(zoo, "source", None) or getattr(zoo, "name", None)
        table = getattr(scores, "table", scores)
        rows = table.to_dict(orient="records") if table is not None else None
        attack = getattr(scores, "attack", None)
        evaluation = {"split": scores.split, "limit": scores.limit} if hasattr(scores, "split") else {}
        return cls(result.method, dict(result.params), list(result.tasks), zoo, dict(inputs or {}),
                   result.info.get("seconds"), rows, evaluation,
                   attack.to_dict(orient="records") if attack is not None else None,
                   layout="per_task" if result.per_task else "merged",
                   data=dict(result.info.get("data") or {}))

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, default=float) + "\n")
        return path


def merged_state_dict(result: MergeResult) -> dict:
    """The weights to export: one state dict, or for per-task methods every task's model as `<task>/<name>`."""
    if not result.per_task:
        return result.state_dict()
    return {f"{t}/{n}": v for t in result.tasks for n, v in result.state_dict(task=t).items()}


def save(result: MergeResult, path: str | Path, *, zoo: Any = None, inputs: dict[str, str] | None = None,
         scores: Any = None, report: str | Path | None = None) -> RunRecord:
    """Write the merged weights (safetensors) and the RunRecord JSON beside them (or at `report`). `zoo` is a zoo
    name or a Zoo; for a zoo of your own the record names the zoo file or folder, so `load_zoo(record.zoo)` opens it.
    A result's add-on goes to `<name>.addon.safetensors`, and the record says its kind and config to rebuild it."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"merged weights are written as safetensors: use a path ending in .safetensors, "
                         f"not {path.name!r}")
    record = RunRecord.of(result, zoo=zoo, inputs=inputs, scores=scores)
    write_weights(merged_state_dict(result), path, metadata={"method": result.method, "layout": record.layout})
    record.weights = {path.name: file_sha256(path)}
    if result.addon is not None:
        addon_path = path.with_suffix(".addon.safetensors")
        write_weights(result.addon.tensors(), addon_path, metadata={"kind": result.addon.kind})
        record.weights[addon_path.name] = file_sha256(addon_path)
        record.addon = {"kind": result.addon.kind, "config": result.addon.config(), "file": addon_path.name,
                        "inference": result.inference}
    record.to_json(report or path.with_suffix(".json"))
    return record


def save_folder(result: MergeResult, folder: str | Path, zoo: Any, *, inputs: dict[str, str] | None = None,
                scores: Any = None, report: str | Path | None = None) -> RunRecord:
    """Write a decoder zoo's merge as a Hugging Face model folder that `AutoModelForCausalLM.from_pretrained` loads:
    model.safetensors (each tensor in the base's dtype), the base's config and tokenizer files
    (`zoo.copy_companions`), and the RunRecord as run.json (or at `report`)."""
    folder = Path(folder)
    if folder.suffix == ".safetensors" or folder.is_file():
        raise ValueError(f"a decoder zoo's merge is a model folder (config.json, model.safetensors, tokenizer): "
                         f"give a directory, not {folder.name!r}")
    if result.per_task or result.addon is not None:
        raise ValueError(f"{result.method} gives {'one model per task' if result.per_task else 'an add-on'}, which a "
                         f"model folder cannot hold: use a method that gives one merged model")
    record = RunRecord.of(result, zoo=zoo, inputs=inputs, scores=scores)
    dtypes = zoo.base_dtypes()
    weights = {n: v.to(dtypes[n]) for n, v in result.state_dict().items()}
    write_weights(weights, folder / "model.safetensors", metadata={"format": "pt", "method": result.method})
    zoo.copy_companions(folder)
    record.weights = {"model.safetensors": file_sha256(folder / "model.safetensors")}
    record.to_json(report or folder / "run.json")
    return record


def load_run(path: str | Path) -> RunRecord:
    """Read a RunRecord JSON written by `save` (or `explorer merge --report`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run record {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
        return RunRecord(**data)
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{str(path)!r} is not a run record written by explorer ({err})") from err


def load_result(path: str | Path, tv: TaskVectors, record: str | Path | None = None) -> MergeResult:
    """The MergeResult saved by `save` at `path` (merged weights, add-on), over the task vectors `tv` of the zoo it
    was merged from: delta = saved weights - theta_0. Per-task layouts are not read back (no shared delta)."""
    path = Path(path)
    run = load_run(record or path.with_suffix(".json"))
    if run.layout != "merged":
        raise ValueError(f"{str(path)!r} holds one model per task (layout {run.layout!r}); load_result reads merged "
                         "weights: evaluate its '<task>/<name>' state dicts directly")
    weights = read_weights(path)
    missing = [n for n in tv.deltas if n not in weights]
    if missing:
        raise ValueError(f"{str(path)!r} lacks {len(missing)} tensors of the task vectors ({missing[:4]}); pass the "
                         "task vectors of the zoo it was merged from")
    delta = {n: weights[n].to(tv.device, tv.dtype) - tv.base[n] for n in tv.deltas}
    addon = None
    if run.addon:
        tensors = {k: v.to(tv.device) for k, v in read_weights(path.parent / run.addon["file"]).items()}
        addon = get_addon(run.addon["kind"]).rebuild(run.addon["config"], tensors)
    return MergeResult(tv, delta, method=run.method, params=dict(run.params), addon=addon,
                       info={"loaded_from": str(path)})
