"""`explorer report`: one self-contained HTML page of a saved run (parameters, accuracy, every figure, the commands
that reproduce it), rebuilt from its run record and the zoo the record names."""
from __future__ import annotations

from pathlib import Path
from typing import Any

FIX = "give the .json that `explorer merge --out x.safetensors` writes beside the weights (x.json)"


def add_parser(sub) -> None:
    parser = sub.add_parser("report", help="one offline HTML page of a saved run", description="Write one "
                            "self-contained HTML page (plotly.js inlined, works offline) of a run saved by "
                            "`explorer merge --out`: parameters, accuracy, every figure, the commands to reproduce.")
    parser.add_argument("record", help="the run record (.json) written beside the merged weights")
    parser.add_argument("-o", "--out", default="report.html", help="the HTML page to write (default report.html)")
    parser.add_argument("--zoo", help="open this zoo instead of the one the record names (e.g. it moved)")
    parser.add_argument("--weights", help="the merged weights, when they are not beside the record under the name "
                        "it gives (read for methods that learn from data; data-free ones are merged again)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | mps (default: cpu)")
    parser.set_defaults(func=run)


def read_record(path: str):
    """The RunRecord at `path`, or one error naming what is wrong with the file and what to give instead."""
    from ..runs import load_run

    try:
        return load_run(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}; {FIX}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"run record {path!r} cannot be read ({type(err).__name__}); {FIX}") from None
    except ValueError as err:
        raise ValueError(f"{err}; {FIX}") from None


def open_record_zoo(record, zoo_arg: str | None, device: str):
    """(TaskVectors, zoo, zoo id) of the zoo the record names (or --zoo), or one error saying how to point at it."""
    from .merge import open_zoo, parse_variants, zoo_task_vectors

    name = zoo_arg or record.zoo
    if not name:
        raise ValueError("the run record names no zoo; pass the one it was merged from with --zoo")
    try:
        zoo = open_zoo(name, parse_variants(record.inputs.get("experts")))
    except (OSError, ValueError, KeyError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ValueError(f"the zoo {name!r} cannot be opened ({message}); pass the zoo this run was merged from "
                         "with --zoo") from None
    tv, zoo, zoo_id, _ = zoo_task_vectors(zoo, name, record.tasks, device)
    return tv, zoo, zoo_id


def rebuild(record, record_path: Path, tv, weights: str | None):
    """The run's MergeResult: a data-free method merges again (deterministic, and its masks and coefficients come
    back); a method that learned from data is read from its saved weights and add-on."""
    import explorer as ex

    from ..methods import registry
    from ..runs import load_result

    if not registry.get(record.method).reads_data:
        return ex.merge(tv, record.method, **record.params)
    path = Path(weights) if weights else record_path.parent / next(iter(record.weights), "")
    if not path.is_file():
        raise FileNotFoundError(f"the merged weights {str(path)!r} of this {record.method} run are missing; pass "
                                "them with --weights (a method that learns from data is not merged again)")
    return load_result(path, tv, record=record_path)


def build(record, record_path: Path, result, zoo_id: str) -> Any:
    """The report of a saved run: the record's parameters and scores, the result's figures, the merge command."""
    import pandas as pd

    from .. import report as R

    scores = None if record.scores is None else pd.DataFrame(record.scores)
    attack = None if record.attack is None else pd.DataFrame(record.attack)
    evaluation = record.evaluation or {}
    merge = R.merge_command(zoo_id, record.method, record.params, record.tasks, evaluate=scores is not None,
                            limit=evaluation.get("limit"), experts=record.inputs.get("experts"),
                            stream=record.merge_path == "streamed")
    facts = {"zoo": zoo_id, "tasks": record.tasks, "merge path": record.merge_path,
             "merge time (s)": "—" if record.seconds is None else f"{record.seconds:.3f}",
             "scored on": (f"{evaluation.get('split', 'test')} split" + ("" if evaluation.get("limit") is None else
                           f", first {evaluation['limit']} images per task")) if scores is not None else "—",
             "created": record.created, "record": str(record_path)}
    facts.update({f"version {k}": v for k, v in record.versions.items()})
    return R.Report(f"{record.method} on {zoo_id}", record.method, record.params, facts, scores,
                    R.figures(result, scores), R.commands(merge), attack=attack,
                    no_scores="the run was not evaluated (merge with --eval on a zoo with heads and test data, e.g. "
                    "--zoo demo, to record per-task accuracy)")


def run(args) -> int:
    record_path = Path(args.record)
    record = read_record(args.record)
    tv, _, zoo_id = open_record_zoo(record, args.zoo, args.device)
    result = rebuild(record, record_path, tv, args.weights)
    page = build(record, record_path, result, zoo_id).write(args.out)
    print(f"wrote {page}")
    return 0
