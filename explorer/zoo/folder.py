"""The one reader of a folder of checkpoints, for the CLI (`--zoo <folder>`), the dashboard and `ex.load_zoo`.

A folder holds the pretrained model as `base.<ext>` (or `pretrained` / `zeroshot`) and one checkpoint per task
(`<task>.<ext>`, or a `save_pretrained` folder `<task>/model.safetensors`), optionally under `experts/`, in any file
format of `formats.py`. Names of a known format become open_clip names; names of no known format stay as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import safe_open

from ..weights import file_sha256
from .formats import CheckpointError, checkpoint_suffixes, detect_format
from .openclip import OpenClipZoo

BASE_NAMES = ("base", "pretrained", "zeroshot")
SAVED_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
LAYOUT = ("a zoo folder holds base.safetensors (the pretrained model; also .pt/.bin, or named pretrained/zeroshot) and "
          "one checkpoint per task (<task>.safetensors, or a save_pretrained folder <task>/model.safetensors), or "
          "a zoo.json naming them; a zoo file is JSON/YAML with \"base\" and \"experts\"")


def checkpoints(folder: Path) -> dict[str, Path]:
    """name -> checkpoint of the checkpoints directly in `folder` (files and save_pretrained folders); of two files
    with one name, the format registered first (safetensors) wins."""
    suffixes = checkpoint_suffixes()
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: (e.stem, suffixes.index(e.suffix) if e.suffix in suffixes
                                                          else len(suffixes))):
        if entry.is_file() and entry.suffix in suffixes:
            found.setdefault(entry.stem, entry)
        elif entry.is_dir():
            saved = next((entry / f for f in SAVED_FILES if (entry / f).is_file()), None)
            if saved is not None:
                found.setdefault(entry.name, saved)
            elif entry.suffix in suffixes:  # a folder where a weight file should be: reading it says so
                found.setdefault(entry.stem, entry)
    return dict(sorted(found.items()))


def scan_folder(folder: Path) -> tuple[Path, dict[str, Path]]:
    """(base checkpoint, {task: checkpoint}) of a folder of checkpoints, or an error saying what is missing."""
    found = checkpoints(folder)
    if (folder / "experts").is_dir():
        found.update(checkpoints(folder / "experts"))
    bases = [n for n in BASE_NAMES if n in found]
    if not found:
        raise ValueError(f"{str(folder)!r} holds no zoo: it has no checkpoint files, so it has no base.safetensors "
                         f"and no experts. Expected: {LAYOUT}")
    if not bases:
        raise ValueError(f"{str(folder)!r} holds {len(found)} checkpoint(s) ({', '.join(sorted(found)[:8])}) but no "
                         f"base: name the pretrained model's file base.safetensors (or pretrained/zeroshot), or "
                         f"write a zoo.json there with \"base\" and \"experts\"")
    base = found.pop(bases[0])
    experts = {t: f for t, f in found.items() if t not in BASE_NAMES}
    if not experts:
        raise ValueError(f"{str(folder)!r} has a base ({base.name}) but no experts: add one checkpoint per task, "
                         f"<task>.safetensors, beside it")
    return base, experts


class FolderZoo(OpenClipZoo):
    """An OpenClipZoo read from a folder of checkpoints; its run records name the files and their hashes."""

    def __init__(self, folder: Path, **options: Any):
        if "experts" in options:
            raise ValueError(f"a folder zoo's experts are its checkpoint files ({str(folder)!r}); experts= (CLI: "
                             f"--experts) swaps demo-zoo expert variants only")
        base, experts = scan_folder(folder)
        self.root = folder
        super().__init__(base=str(base), experts={t: str(f) for t, f in experts.items()}, keep_unknown=True,
                         **{"arch": None, "name": str(folder.resolve()), **options})
        self.source = str(folder.resolve())

    def paths(self) -> list[Path]:
        """The base's file, then each expert's."""
        return [self.files["base"], *(self.files[f"expert {t}"] for t in self.tasks)]

    def input_hashes(self) -> dict[str, str]:
        """{file (relative to the folder): sha256} of the base and the experts: a run record's inputs."""
        return {p.relative_to(self.root).as_posix(): file_sha256(p) for p in self.paths()}

    def stream_refusal(self) -> str | None:
        """Why a merge cannot read this folder parameter by parameter with the in-memory merge's names, or None:
        every checkpoint must be safetensors, its names open_clip's without a prefix (or of no known format),
        since a streamed merge writes the files' own names and an in-memory one writes open_clip names."""
        others = [p.name for p in self.paths() if p.suffix != ".safetensors"]
        if others:
            return f"{', '.join(others[:4])} {'is' if len(others) == 1 else 'are'} not safetensors"
        with safe_open(str(self.files["base"]), framework="pt") as f:
            keys = dict.fromkeys(f.keys())
        try:
            name, prefix = detect_format(keys)
        except CheckpointError:
            return None  # names of no known format: kept as they are on both paths
        if (name, prefix) != ("openclip", ""):
            return (f"its names are in the {name} format{f' under {prefix!r}' if prefix else ''}, which an in-memory "
                    f"merge maps to open_clip names (explorer zoo convert writes them once)")
        return None
