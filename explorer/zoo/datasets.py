"""Task metadata (class names, templates, data layout; JSON in `tasks/`) and the benchmark's datasets.

Datasets load from a local `data_root`, laid out as the task_vectors / TALL-masks code expects
(torchvision datasets under their usual folders; SUN397, DTD, EuroSAT and RESISC45 as prepared image
folders). Splits follow the benchmark: test is the test split; validation is the held-out part of train
(10 %, at most 5000 images, random_split with seed 0) unless the task ships its own; train is the rest.
"""
from __future__ import annotations

import inspect
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

TASK_DIR = Path(__file__).with_name("tasks")
VAL_FRACTION, MAX_VAL, VAL_SEED = 0.1, 5000, 0
HOW_TO_GET = ("torchvision datasets download with `torchvision.datasets.{cls}(root='{root}', download=True, ...)` "
              "where the dataset allows it; the others (SUN397, DTD, EuroSAT, RESISC45, Cars) are prepared as in "
              "https://github.com/mlfoundations/task_vectors/issues/1. See docs/real_zoos.md.")


class DataMissing(FileNotFoundError):
    """A task's data is not under data_root."""


@lru_cache(maxsize=None)
def _task_file(task: str) -> dict[str, Any]:
    path = TASK_DIR / f"{task}.json"
    if not path.is_file():
        known = ", ".join(task_names())
        raise KeyError(f"no task metadata for {task!r}; known tasks: {known} (or pass task_specs={{task: spec}})")
    return json.loads(path.read_text())


def task_spec(task: str) -> dict[str, Any]:
    """The metadata of a known task: name, classnames, templates, data layout (and prompt_names where they differ)."""
    return dict(_task_file(task))


def task_names() -> list[str]:
    return sorted(p.stem for p in TASK_DIR.glob("*.json") if not p.stem.startswith("_"))


def task_set(size: int | str) -> list[str]:
    """The standard 8-, 14- or 20-task lists (TALL-masks order; the 8 in the order AdaMerging reports them)."""
    sets = json.loads((TASK_DIR / "_sets.json").read_text())
    if str(size) not in sets:
        raise ValueError(f"no task set {size!r}; use one of {sorted(sets)}")
    return list(sets[str(size)])


def task_dataset(spec: dict[str, Any], data_root: str | Path | None, split: str,
                 transform: Callable | None = None) -> Dataset:
    """`split` (train/validation/test) of the task described by `spec`, images passed through `transform`."""
    if data_root is None:
        raise DataMissing(f"no data_root given for task {spec.get('name', '?')}: pass data_root='/path/to/data' "
                          f"to load_zoo (or set EXPLORER_DATA_ROOT). "
                          + _how_to_get(spec, Path("DATA_ROOT")))
    data, root = spec["data"], Path(data_root).expanduser()
    splits = data["splits"]
    if split == "test" or "validation" in splits:  # the task ships its own validation split
        return _build(data, root, split, transform, spec)
    from torch import Generator
    from torch.utils.data import random_split

    full = _build(data, root, "train", transform, spec)
    n_val = min(int(len(full) * VAL_FRACTION), MAX_VAL)
    train, val = random_split(full, [len(full) - n_val, n_val], generator=Generator().manual_seed(VAL_SEED))
    if split == "validation":
        return val
    return train


def data_problem(spec: dict[str, Any], data_root: str | Path | None, split: str) -> str | None:
    """Why `split` of the task described by `spec` cannot be read from `data_root` (a cheap look at the folders, no
    image is read), with how to provide it; None when its folder is there."""
    if data_root is None:
        return ("no data root is set: set \"data_root\" in the zoo file (or data_root= in load_zoo, or the "
                "EXPLORER_DATA_ROOT environment variable) to the folder that holds the task data. "
                + _how_to_get(spec, Path("DATA_ROOT")))
    data, root = spec.get("data"), Path(data_root).expanduser()
    if not data:
        return f"the task has no data layout; add \"data\" to its entry in the zoo file (see {TASK_DIR}/dtd.json)"
    if data["kind"] == "folder":
        split_dir = data["splits"].get(split if split == "test" or split in data["splits"] else "train")
        where = root / split_dir if split_dir else None
    else:
        where = root / data.get("root", "")
    if where is None or not where.exists():
        return f"{where or root} does not exist. " + _how_to_get(spec, root)
    return None


def _build(data: dict, root: Path, split: str, transform: Callable | None, spec: dict) -> Dataset:
    target = _offset(data.get("label_offset", 0))
    try:
        if data["kind"] == "folder":
            return _folder(data, root, split, transform, target)
        if data["kind"] == "torchvision":
            return _torchvision(data, root, split, transform, target)
    except (FileNotFoundError, RuntimeError) as err:
        raise DataMissing(f"{spec['name']} ({split}) is missing under {root}: {err}. "
                          + _how_to_get(spec, root)) from None
    raise ValueError(f"unknown data kind {data['kind']!r} for {spec['name']}: use 'folder' or 'torchvision'")


class _Shift:
    """Label shift as a picklable callable (DataLoader workers pickle the dataset)."""

    def __init__(self, offset: int):
        self.offset = offset

    def __call__(self, label: int) -> int:
        return label + self.offset


def _offset(offset: int) -> _Shift | None:
    return _Shift(offset) if offset else None


def _folder(data: dict, root: Path, split: str, transform: Callable | None, target) -> Dataset:
    from torchvision.datasets import ImageFolder

    folder = root / data["splits"][split]
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    valid = None
    if "lists" in data:  # only the files named in the split's list (RESISC45's official splits)
        names = set((root / data["lists"][split]).read_text().split())
        valid = lambda path: Path(path).name in names  # noqa: E731
    return ImageFolder(str(folder), transform=transform, target_transform=target, is_valid_file=valid)


def _torchvision(data: dict, root: Path, split: str, transform: Callable | None, target) -> Dataset:
    import torchvision.datasets as tvd

    cls = getattr(tvd, data["class"])
    kwargs = {**data.get("kwargs", {}), **data["splits"][split]}
    if "download" in inspect.signature(cls).parameters:
        kwargs["download"] = False
    return cls(root=str(root / data["root"]), transform=transform, target_transform=target, **kwargs)


def _how_to_get(spec: dict, root: Path) -> str:
    data = spec["data"]
    if data["kind"] == "folder":
        where = ", ".join(f"{s}: {root / p}" for s, p in data["splits"].items())
        return f"Expected image folders ({where}). " + HOW_TO_GET.format(cls="...", root="...")
    return HOW_TO_GET.format(cls=data["class"], root=root / data["root"])
