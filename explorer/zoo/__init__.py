"""Zoos: where base models, experts, heads and task data come from. `load_zoo(name)` picks one."""
from __future__ import annotations

from typing import Any, Callable

from .base import SPLITS, Zoo

_LOADERS: dict[str, Callable[..., Zoo]] = {}


def register_zoo(name: str) -> Callable[[Callable[..., Zoo]], Callable[..., Zoo]]:
    """Register a zoo loader under `name` (used by `load_zoo`)."""

    def wrap(fn: Callable[..., Zoo]) -> Callable[..., Zoo]:
        _LOADERS[name] = fn
        return fn

    return wrap


def load_zoo(name: str, **kwargs: Any) -> Zoo:
    """Load a zoo by name: "demo" (embedded, offline), "openclip" (real CLIP experts) or a named zoo."""
    _import_loaders()
    if name in _LOADERS:
        return _LOADERS[name](**kwargs)
    fallback = _LOADERS.get("*")
    if fallback is not None:
        return fallback(name, **kwargs)
    raise ValueError(f"unknown zoo {name!r}; known zoos: {', '.join(sorted(_LOADERS))}")


def _import_loaders() -> None:
    """Import the zoo modules so that their `@register_zoo` loaders are known."""
    import importlib

    for module in ("demo", "openclip"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{module}":
                raise


__all__ = ["SPLITS", "Zoo", "load_zoo", "register_zoo"]
