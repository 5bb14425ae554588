"""TaskVectors: per-parameter stacked deltas tau_t = theta_t - theta_0, shape [T, ...], plus a layer map.

Every merge method reads this one structure, so methods are vectorised over tasks by construction.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import torch
from torch import Tensor

from .checks import nonfinite_problems, raise_nonfinite
from .device import resolve_device, resolve_dtype
from .layouts import ParamInfo, layer_order, param_info  # noqa: F401  (ParamInfo, param_info: imported from here too)

if TYPE_CHECKING:  # pragma: no cover
    from .zoo.base import Zoo


class TaskVectors:
    """Stacked task vectors on one device: `tv[name]` is a `[T, *shape]` tensor, `tv.tasks` names the rows.

    `base` holds theta_0's float tensors (float32), `extras` its non-float entries (passed through
    unchanged when a merged state dict is built).
    """

    def __init__(self, tasks: list[str], base: dict[str, Tensor], deltas: dict[str, Tensor],
                 extras: dict[str, Tensor] | None = None, zoo: "Zoo | None" = None):
        if not tasks:
            raise ValueError("TaskVectors needs at least one task")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"task names must be unique, got {tasks}")
        if not deltas:
            raise ValueError("the base has no floating-point parameter: there is nothing to merge (task vectors are "
                             "differences of float weights)")
        self.tasks = list(tasks)
        self.base = base
        self.deltas = deltas
        self.extras = extras or {}
        self.zoo = zoo
        self.info = {name: param_info(name) for name in deltas}
        blocks = [i.block for i in self.info.values() if i.block is not None]
        self.num_blocks = max(blocks) + 1 if blocks else 0

    # --- read access -------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self.deltas)

    def __getitem__(self, name: str) -> Tensor:
        return self.deltas[name]

    def __contains__(self, name: object) -> bool:
        return name in self.deltas

    def __iter__(self) -> Iterator[str]:
        return iter(self.deltas)

    def items(self):
        return self.deltas.items()

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def device(self) -> torch.device:
        return next(iter(self.deltas.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.deltas.values())).dtype

    def numel(self) -> int:
        """Number of parameters in one task vector."""
        return sum(d[0].numel() for d in self.deltas.values())

    def layers(self) -> list[str]:
        """Layer groups in model order: embed, block.0 ... block.{L-1}, post, other."""
        return sorted({i.layer for i in self.info.values()}, key=layer_order)

    def task_index(self, task: str) -> int:
        if task not in self.tasks:
            raise KeyError(f"unknown task {task!r}; this TaskVectors has {self.tasks}")
        return self.tasks.index(task)

    def task(self, task: str) -> dict[str, Tensor]:
        """One task's vector as a name -> tensor dict (views, no copy)."""
        i = self.task_index(task)
        return {name: d[i] for name, d in self.deltas.items()}

    def flat(self) -> Tensor:
        """All parameters flattened and concatenated: `[T, D]` (a copy)."""
        return torch.cat([d.reshape(self.num_tasks, -1) for d in self.deltas.values()], dim=1)

    # --- derived views -----------------------------------------------------------------------
    def subset(self, tasks: list[str]) -> "TaskVectors":
        """The same task vectors restricted to `tasks` (in that order)."""
        idx = torch.tensor([self.task_index(t) for t in tasks], device=self.device)
        deltas = {n: d.index_select(0, idx) for n, d in self.deltas.items()}
        return TaskVectors(list(tasks), self.base, deltas, self.extras, self.zoo)

    def to(self, device: str | torch.device) -> "TaskVectors":
        dev = resolve_device(device)
        return TaskVectors(self.tasks, {n: b.to(dev) for n, b in self.base.items()},
                           {n: d.to(dev) for n, d in self.deltas.items()},
                           {n: e.to(dev) for n, e in self.extras.items()}, self.zoo)

    def state_dict(self, delta: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """theta_0 + delta as a full state dict (float32), with the non-float entries passed through."""
        out = {}
        for name, theta0 in self.base.items():
            d = delta.get(name)
            out[name] = theta0 if d is None else theta0 + d.to(theta0.dtype)
        out.update(self.extras)
        return out

    def __repr__(self) -> str:
        return (f"TaskVectors(tasks={self.tasks}, params={len(self.deltas)}, numel={self.numel():,}, "
                f"device={self.device}, dtype={self.dtype})")


def _check_types(base: Mapping[str, Tensor], experts: Mapping[str, Mapping[str, Tensor]]) -> None:
    """TypeError unless the base and every expert map parameter names (str) to tensors."""
    for owner, sd in [("the base", base), *((f"expert {t!r}", sd) for t, sd in experts.items())]:
        if not isinstance(sd, Mapping):
            raise TypeError(f"{owner} must be a state dict (name -> tensor), got {type(sd).__name__}")
        wrong = [str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
        if wrong:
            raise TypeError(f"{owner} must map parameter names to tensors; not so for {wrong[:8]}")


def _check_compatible(base: Mapping[str, Tensor], experts: Mapping[str, Mapping[str, Tensor]]) -> None:
    """Raise one error that lists every missing, extra or mis-shaped key across the experts."""
    _check_types(base, experts)
    problems = []
    for task, sd in experts.items():
        missing = sorted(set(base) - set(sd))
        extra = sorted(set(sd) - set(base))
        shapes = [f"{k}: base {tuple(base[k].shape)} vs {tuple(sd[k].shape)}"
                  for k in base if k in sd and base[k].shape != sd[k].shape]
        dtypes = [f"{k}: base {base[k].dtype} vs {sd[k].dtype}" for k in base
                  if k in sd and torch.is_floating_point(base[k]) != torch.is_floating_point(sd[k])]
        if missing:
            problems.append(f"expert {task!r} lacks {len(missing)} key(s): {missing[:8]}")
        if extra:
            problems.append(f"expert {task!r} has {len(extra)} key(s) the base lacks: {extra[:8]}")
        if shapes:
            problems.append(f"expert {task!r} has {len(shapes)} shape mismatch(es): {shapes[:8]}")
        if dtypes:
            problems.append(f"expert {task!r} has {len(dtypes)} integer/float mismatch(es): {dtypes[:8]}")
    if problems:
        raise ValueError("experts do not match the base architecture:\n  " + "\n  ".join(problems)
                         + "\nUse checkpoints fine-tuned from this base (same architecture and parameter names).")


def task_vectors(base: "Mapping[str, Tensor] | Zoo", experts: Mapping[str, Mapping[str, Tensor]] | None = None,
                 *, tasks: list[str] | None = None, device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "float32",
                 progress: Callable[[int, int, str], None] | None = None) -> TaskVectors:
    """Build TaskVectors from a zoo (`task_vectors(zoo)`) or from plain state dicts
    (`task_vectors(base_sd, {"task_a": sd_a, ...})`). Non-float entries are skipped. From a zoo, experts are read
    one at a time into the preallocated stacks (memory: the task vectors plus one expert), and
    `progress(done, total, task)` is called after each."""
    if experts is None:
        if not hasattr(base, "expert_state_dict"):
            raise TypeError("task_vectors() needs a Zoo, or a base state dict plus a dict of expert state dicts")
        return _from_zoo(base, tasks, device, dtype, progress)
    base_sd = base
    if not isinstance(experts, Mapping):
        raise TypeError(f"experts must be a dict {{task: state dict}}, got {type(experts).__name__}")
    names = list(tasks or experts)
    unknown = [t for t in names if t not in experts]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; the experts given are {list(experts)}")
    experts = {t: experts[t] for t in names}
    if not experts:
        raise ValueError("no experts given: pass at least one fine-tuned state dict")
    _check_compatible(base_sd, experts)
    problems = nonfinite_problems("base", base_sd)
    for t in names:
        problems += nonfinite_problems(f"expert {t!r}", experts[t])
    _raise_nonfinite(problems)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    base_f, extras = _split_base(base_sd, dev)
    deltas = {}
    for name, b in base_f.items():
        stacked = torch.stack([experts[t][name].detach().to(dev, torch.float32) for t in names])
        deltas[name] = (stacked - b).to(dt)
    return TaskVectors(names, base_f, deltas, extras, None)


def _raise_nonfinite(problems: list[str]) -> None:
    raise_nonfinite(problems, "non-finite weights (NaN or Inf) cannot be merged",
                    "Task vectors of NaN/Inf weights would merge into NaN: re-export the named checkpoints "
                    "(a diverged fine-tune, or a corrupt file).")


def _split_base(base_sd: Mapping[str, Tensor], dev: torch.device) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(float parameters as float32, non-float entries) of the base, on `dev`."""
    base_f, extras = {}, {}
    for name, theta0 in base_sd.items():
        if torch.is_floating_point(theta0):
            base_f[name] = theta0.detach().to(dev, torch.float32)
        else:
            extras[name] = theta0.to(dev)
    return base_f, extras


def _from_zoo(zoo: "Zoo", tasks: list[str] | None, device: str | torch.device, dtype: str | torch.dtype,
              progress: Callable[[int, int, str], None] | None) -> TaskVectors:
    """Task vectors of a zoo's experts, read one by one into `[T, ...]` stacks allocated up front."""
    names = list(tasks or zoo.tasks)
    unknown = [t for t in names if t not in zoo.tasks]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; the zoo has {zoo.tasks}")
    if not names:
        raise ValueError("no experts given: pass at least one fine-tuned state dict")
    base_sd = zoo.base_state_dict()
    _check_types(base_sd, {})
    _raise_nonfinite(nonfinite_problems("base", base_sd))
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    base_f, extras = _split_base(base_sd, dev)
    deltas = {name: torch.empty((len(names), *b.shape), dtype=dt, device=dev) for name, b in base_f.items()}
    for i, t in enumerate(names):
        sd = zoo.expert_state_dict(t)
        _check_compatible(base_sd, {t: sd})
        _raise_nonfinite(nonfinite_problems(f"expert {t!r}", sd))
        for name, b in base_f.items():
            deltas[name][i] = (sd[name].detach().to(dev, torch.float32) - b).to(dt)
        del sd
        if progress is not None:
            progress(i + 1, len(names), t)
    if not deltas:
        raise ValueError("the base has no floating-point parameter: there is nothing to merge (task vectors are "
                         "differences of float weights)")
    return TaskVectors(names, base_f, deltas, extras, zoo)
