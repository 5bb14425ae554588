"""Parameter declarations shared by several methods, so each is described once."""
from __future__ import annotations

from .registry import Param


def scale(default: float = 0.3, paper: float | None = 0.3) -> Param:
    return Param("scale", float, default, "lambda: how much of the merged task vector is added to theta_0",
                 low=0.0, high=3.0, step=0.05, paper=paper)


def density(default: float = 0.2, help: str = "fraction of each task vector's entries kept, by magnitude (top-k)",
            paper: float | None = 0.2) -> Param:
    return Param("density", float, default, help, low=0.0, high=1.0, step=0.01, paper=paper)


SCOPE = Param("scope", str, "global", "top-k over each whole flattened task vector (global, official TIES "
              "code) or within each tensor (tensor, as PEFT and mergekit)", choices=("global", "tensor"),
              paper="global")
SIGN = Param("sign", str, "mass", "sign election: sign of the summed values (mass) or majority of signs (count)",
             choices=("mass", "count"), paper="mass")


def aggregate(default: str = "mean") -> Param:
    return Param("aggregate", str, default, "disjoint merge: mean or sum of the entries that agree with the "
                 "elected sign", choices=("mean", "sum"), paper="mean")


MTL = Param("mtl", str, "task_arithmetic", "the multi-task vector the masks select from: the plain sum of task "
            "vectors (task_arithmetic) or the TIES disjoint sum trimmed to `density` (ties)",
            choices=("task_arithmetic", "ties"), paper="task_arithmetic")
TALL_LAM = Param("lam", float, 0.4, "TALL threshold lambda: keep tau_t where |tau_t| > lambda |tau_MTL - tau_t|",
                 low=0.0, high=3.0, step=0.05, paper=0.4)
CONSENSUS_K = Param("k", int, 2, "keep weights that at least k tasks' TALL masks use (k=2 drops selfish and "
                    "catastrophic weights, k=0 keeps everything)", low=0, high=20, step=1, paper=2)
