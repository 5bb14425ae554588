"""Zoos: where base models, experts, heads and task data come from. `load_zoo(name)` picks one."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

from ..registry import Registry
from .base import SPLITS, Zoo

_LOADERS: Registry[Callable[..., Zoo]] = Registry("zoo")  # "*": the fallback for names of no loader (named zoos)
NAMED_DIR = Path(__file__).with_name("zoos")  # one JSON description per named real zoo


def register_zoo(name: str) -> Callable[[Callable[..., Zoo]], Callable[..., Zoo]]:
    """Register a zoo loader under `name` (used by `load_zoo`); a name registered twice is an error."""
    return _LOADERS.register(name)


def list_zoos() -> list[str]:
    """The zoos `load_zoo` opens by name alone: "demo", then the named real zoos (zoos/*.json), sorted."""
    return ["demo", *sorted(p.stem for p in NAMED_DIR.glob("*.json"))]


def looks_like_path(name: str) -> bool:
    """Whether a zoo argument names a folder (has a path separator, or starts with . or ~) rather than a zoo."""
    return os.sep in name or "/" in name or name.startswith((".", "~"))


def load_zoo(name: "str | os.PathLike", **kwargs: Any) -> Zoo:
    """Load a zoo by name: "demo" (embedded, offline), "openclip" (real CLIP experts), a named zoo, or a path: a
    folder of checkpoints (base + one per task), a zoo file (JSON/YAML) or a demo-zoo build (see `zoo.local`)."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(f"a zoo is named by a string (one of {list_zoos()}) or a path, got {type(name).__name__}")
    if looks_like_path(name) or (name not in list_zoos() and name != "openclip" and Path(name).expanduser().exists()):
        if is_demo_build(Path(name).expanduser()):  # another build of the demo zoo: its own loader opens it
            _import_loaders()
            return _LOADERS.get("demo")(root=Path(name).expanduser())
        return load_path(name, **kwargs)
    _import_loaders()
    if name in _LOADERS or "*" not in _LOADERS:
        return _LOADERS.get(name)(**kwargs)
    return _LOADERS.get("*")(name, **kwargs)


def _import_loaders() -> None:
    """Import the zoo modules so that their `@register_zoo` loaders are known (the demo's is at the zoo layer)."""
    for module in ("explorer.demozoo.zoo", f"{__name__}.openclip"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


from .local import is_demo_build, load_path  # noqa: E402  (last: it imports the zoo modules, which register themselves above)

__all__ = ["SPLITS", "Zoo", "list_zoos", "load_zoo", "register_zoo"]
