"""Run records written back as mergekit configs: our method and parameters mapped onto mergekit's nearest method,
with the places where the two do not compute the same numbers said in comments at the top of the YAML."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..runs import RunRecord
from .mergekit import Plan, parse_config

MERGEKIT = "mergekit"  # the method name of a run made from a mergekit config (`explorer merge --mergekit`)
Mapped = tuple[str, dict[str, Any], list[str]]  # mergekit method, global parameters, notes


def _task_arithmetic(p: dict[str, Any]) -> Mapped:
    return "task_arithmetic", {"weight": 1.0, "lambda": p["scale"]}, []


def _average(p: dict[str, Any]) -> Mapped:
    return "task_arithmetic", {"weight": 1.0, "normalize": True}, []


def _ties(p: dict[str, Any]) -> Mapped:
    if p["scope"] != "tensor":
        raise ValueError(f"this ties run trims over the whole model (scope={p['scope']!r}, the official code); "
                         "mergekit trims each tensor: merge again with -p scope=tensor to export it")
    if p["sign"] != "mass":
        raise ValueError(f"this ties run elects signs by count (sign={p['sign']!r}); mergekit's ties elects by mass: "
                         "merge again with -p sign=mass to export it")
    return "ties", {"weight": 1.0, "density": p["density"], "normalize": p["aggregate"] == "mean",
                    "lambda": p["scale"]}, []


def _dare(p: dict[str, Any]) -> Mapped:
    if p["base"] == "ties" and p["density"] < 1:
        raise ValueError(f"this dare run trims the dropped task vectors to density {p['density']}; mergekit's "
                         "dare_ties does not trim: merge again with -p density=1 to export it")
    notes = ["mergekit draws its own random masks, and its rescale matches each tensor's L1 norm where ours "
             "divides by 1-p: the same merge in expectation, not the same numbers."]
    method = "dare_ties" if p["base"] == "ties" else "dare_linear"
    params = {"weight": 1.0, "density": round(1.0 - p["drop"], 10), "rescale": p["rescale"] == "inverse",
              "lambda": p["scale"]}
    if method == "dare_ties":
        params["normalize"] = p["aggregate"] == "mean"
    return method, params, notes


def _breadcrumbs(p: dict[str, Any]) -> Mapped:
    notes = ["mergekit ranks each whole tensor's magnitudes where ours ranks each row: a nearby merge, not the "
             "same numbers (equal for 1-D tensors)."]
    return "breadcrumbs", {"weight": 1.0, "density": p["keep"], "gamma": p["remove"], "lambda": p["scale"]}, notes


EXPORTS: dict[str, Callable[[dict[str, Any]], Mapped]] = {
    "task_arithmetic": _task_arithmetic, "average": _average, "ties": _ties, "dare": _dare,
    "breadcrumbs": _breadcrumbs}


def record_plan(record: RunRecord, refs: Mapping[str, str] | None = None) -> tuple[Plan, list[str]]:
    """(the mergekit plan of a run, notes on where mergekit computes other numbers). `refs` maps "base" and each task
    to a model reference (a folder or a hub id); unmapped ones keep their names. A mergekit run gives its config."""
    refs = dict(refs or {})
    if record.method == MERGEKIT:
        import yaml

        return parse_config(yaml.safe_dump(record.params["config"], sort_keys=False)), []
    if record.method not in EXPORTS:
        raise ValueError(f"method {record.method!r} has no mergekit equivalent; runs of {', '.join(EXPORTS)} "
                         "export to mergekit configs")
    method, params, notes = EXPORTS[record.method](record.params)
    unknown = sorted(set(refs) - {"base", *record.tasks})
    if unknown:
        raise ValueError(f"--model {unknown[0]}=...: the run has no such model; name 'base' or one of {record.tasks}")
    plan = Plan(method, refs.get("base", "base"), [(refs.get(t, t), {}) for t in record.tasks], params)
    return parse_config(plan.to_yaml()), notes  # validated as any config read from a file


def record_yaml(record: RunRecord, refs: Mapping[str, str] | None = None) -> str:
    """The mergekit YAML of a run (`record_plan`), its notes as comments at the top."""
    plan, notes = record_plan(record, refs)
    head = [f"# mergekit config of an explorer {record.method} run on {record.zoo or 'a zoo'} "
            f"({', '.join(f'{k}={v}' for k, v in record.params.items() if k != 'config')})"]
    if record.method != MERGEKIT and not refs:
        head.append("# the models are named by task: replace them with their folders or Hugging Face ids")
    head += [f"# note: {n}" for n in notes]
    return "\n".join(head) + "\n" + plan.to_yaml()
