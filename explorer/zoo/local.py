"""Zoos of your own: a folder of checkpoints (read by `folder.py`), or a small zoo file (JSON or YAML) by hand.

A zoo file names the base, the experts (in any format `formats.py` knows) and what evaluation needs:

    {"arch": "ViT-B-32", "base": "base.safetensors", "experts": {"mnist": "mnist.safetensors", ...},
     "text": "openai", "data_root": "~/data", "tasks": {"mytask": {"classnames": [...], "templates": [...]}}}

Relative paths are relative to the zoo file. Without `arch` the architecture is recognised from the base's shapes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import Zoo
from .decoder import DecoderZoo, is_decoder_folder
from .folder import LAYOUT, FolderZoo, checkpoints
from .openclip import OpenClipZoo

ZOO_FILES = ("zoo.json", "zoo.yaml", "zoo.yml")
FILE_KEYS = {"name", "arch", "base", "experts", "text", "data_root", "tasks", "allow_pickle", "description"}
DEFAULT_TEMPLATES = ["a photo of a {}."]


def load_path(path: str | Path, **kwargs: Any) -> Zoo:
    """The zoo at `path`: a zoo file, a folder with a zoo file, a decoder zoo (`base/config.json` of a Hugging Face
    causal LM beside one save_pretrained folder per expert: `decoder.py`) or a folder of checkpoints (a demo-zoo
    build is opened by its registered loader: `is_demo_build`)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"zoo folder {str(path)!r} not found: no such file or folder. Give the folder of your "
                                f"checkpoints or a zoo file ({LAYOUT})")
    if p.is_file():
        if p.suffix in (".json", ".yaml", ".yml"):
            return load_zoo_file(p, **kwargs)
        raise ValueError(f"{str(path)!r} is a {p.suffix or 'plain'} file, not a zoo: give the folder that holds it, "
                         f"or a zoo file ({LAYOUT})")
    for name in ZOO_FILES:
        if (p / name).is_file():
            return load_zoo_file(p / name, **kwargs)
    if is_decoder_folder(p):
        return DecoderZoo(p, **kwargs)
    return FolderZoo(p, **kwargs)


def is_demo_build(p: Path) -> bool:
    """Whether a folder is a build of the demo zoo (`explorer zoo build-demo`): its config and heads are there."""
    return (p / "config.json").is_file() and (p / "heads.safetensors").is_file()


def read_zoo_file(path: Path) -> dict[str, Any]:
    """The parsed zoo file (JSON, or YAML when PyYAML is installed), checked for its keys."""
    text = path.read_text()
    if path.suffix == ".json":
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"zoo file {str(path)!r} is not valid JSON ({err})") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ValueError(f"zoo file {str(path)!r} is YAML, which needs PyYAML (pip install pyyaml); or write "
                             f"it as JSON") from None
        spec = yaml.safe_load(text)
    if not isinstance(spec, dict):
        raise ValueError(f"zoo file {str(path)!r} must hold a mapping with \"base\" and \"experts\"")
    unknown = sorted(set(spec) - FILE_KEYS)
    missing = [k for k in ("base", "experts") if k not in spec]
    if unknown or missing:
        raise ValueError(f"zoo file {str(path)!r}: " + "; ".join(
            ([f"unknown key(s) {unknown} (allowed: {sorted(FILE_KEYS)})"] if unknown else [])
            + ([f"missing {missing}: \"base\" is the pretrained checkpoint, \"experts\" maps each task to its "
                f"checkpoint (or names a folder of them)"] if missing else [])))
    return spec


def load_zoo_file(path: str | Path, **kwargs: Any) -> Zoo:
    """The zoo a zoo file describes (see the module docstring); relative paths are taken from its folder."""
    path = Path(path).expanduser().resolve()
    spec = read_zoo_file(path)
    here = path.parent

    def local(value: str) -> str:
        p = Path(str(value)).expanduser()
        return str(p if p.is_absolute() or str(value).startswith("hf-hub:") else here / p)

    experts = spec["experts"]
    if isinstance(experts, str):  # a folder of expert checkpoints
        experts = {t: str(f) for t, f in checkpoints(Path(local(experts))).items()}
    if not isinstance(experts, dict) or not experts:
        raise ValueError(f"zoo file {str(path)!r}: \"experts\" must map task names to checkpoints "
                         f"({{\"mnist\": \"mnist.safetensors\"}}) or name a folder of them")
    fields = {"base": local(spec["base"]), "experts": {str(t): local(f) for t, f in experts.items()},
              "arch": spec.get("arch"), "text": spec.get("text"), "allow_pickle": bool(spec.get("allow_pickle")),
              "tasks": _task_specs(spec.get("tasks") or {}, path)}
    if spec.get("arch") and str(spec["arch"]).endswith(".json"):
        fields["arch"] = local(spec["arch"])
    if spec.get("text") and Path(local(spec["text"])).exists():
        fields["text"] = local(spec["text"])
    if spec.get("data_root"):
        fields["data_root"] = local(spec["data_root"])
    return _openclip(str(path), fields, kwargs, name=spec.get("name"))


def _task_specs(tasks: dict[str, Any], path: Path) -> dict[str, dict]:
    """Task metadata from the zoo file: classnames (required), templates, data layout (default: image folders
    <data_root>/<task>/train and <data_root>/<task>/test)."""
    if not isinstance(tasks, dict):
        raise ValueError(f"zoo file {str(path)!r}: \"tasks\" must map task names to {{\"classnames\": [...]}}")
    out = {}
    for task, entry in tasks.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("classnames"), list):
            raise ValueError(f"zoo file {str(path)!r}: task {task!r} needs \"classnames\": a list of class names in "
                             f"label order")
        data = entry.get("data") or {"kind": "folder", "splits": {"train": f"{task}/train", "test": f"{task}/test"}}
        out[task] = {"name": task, "templates": DEFAULT_TEMPLATES, **entry, "data": data}
    return out


def _openclip(source: str, fields: dict[str, Any], kwargs: dict[str, Any], name: str | None = None) -> Zoo:
    options = {"arch": fields.get("arch"), "text": fields.get("text"), "data_root": fields.get("data_root"),
               "allow_pickle": fields.get("allow_pickle", False), "task_specs": fields.get("tasks"), **kwargs}
    zoo = OpenClipZoo(base=fields["base"], experts=fields["experts"], name=name or source, **options)
    zoo.source = source
    return zoo
