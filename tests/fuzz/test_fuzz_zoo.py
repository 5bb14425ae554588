"""Fuzz zoo loading on folders of corrupt, truncated, empty and mismatched safetensors files: a folder zoo (the CLI's
--zoo path) and a demo-zoo build (`load_zoo("demo", root=...)`), up to building the task vectors."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save as to_bytes

import explorer as ex
from explorer.commands.merge import load_task_vectors

from .conftest import outcome

KINDS = ["valid", "valid", "valid", "truncated", "garbage", "empty", "shape", "keys", "nan", "int", "directory",
         "header_only"]
BASE = {"conv1.weight": torch.ones(3, 2), "transformer.resblocks.0.mlp.c_fc.bias": torch.zeros(4)}


def payload(kind: str, seed: int) -> bytes | None:
    """The bytes of one weight file of this kind (None: write a directory of that name instead)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in BASE.items()}
    if kind == "shape":
        sd["conv1.weight"] = torch.zeros(2, 3)
    elif kind == "keys":
        sd["renamed.weight"] = sd.pop("conv1.weight")
    elif kind == "nan":
        sd["conv1.weight"][0, 0] = float("nan")
    elif kind == "int":
        sd["conv1.weight"] = sd["conv1.weight"].round().long()
    good = to_bytes(sd)
    return {"truncated": good[: seed % max(1, len(good) - 1)], "garbage": bytes([seed % 256]) * (seed % 97),
            "empty": b"", "directory": None, "header_only": good[:8]}.get(kind, good)


def write(path: Path, data: bytes | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)


kinds = st.one_of(st.just("valid"), st.sampled_from(KINDS))  # about half the files are good
folders = st.fixed_dictionaries({
    "base": st.one_of(kinds, st.just("missing")),
    "experts": st.lists(kinds, min_size=0, max_size=3),
    "seed": st.integers(0, 10_000),
})


@settings(max_examples=150)
@given(spec=folders)
def test_folder_zoo_loads_or_names_the_file(spec):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if spec["base"] != "missing":
            write(root / "base.safetensors", payload(spec["base"], spec["seed"]))
        for i, kind in enumerate(spec["experts"]):
            write(root / f"task{i}.safetensors", payload(kind, spec["seed"] + i))
        got = outcome(lambda: load_task_vectors(str(root), None, "cpu"), "safetensors", "expert", "base")
        if isinstance(got, tuple):
            tv = got[0]
            assert spec["base"] in ("valid", "shape", "keys", "int")  # only a readable, finite base loads
            assert len(tv.tasks) >= 2 and all(torch.isfinite(d).all() for d in tv.deltas.values())


CONFIGS = ["valid", "truncated", "not_json", "no_tasks", "tasks_not_list", "empty"]


def config_text(kind: str, tasks: list[str]) -> str:
    good = json.dumps({"tasks": tasks, "classes": {t: ["x", "y"] for t in tasks}})
    return {"truncated": good[: len(good) // 2], "not_json": "<html>", "no_tasks": json.dumps({"classes": {}}),
            "tasks_not_list": json.dumps({"tasks": 3}), "empty": ""}.get(kind, good)


@settings(max_examples=120)
@given(config=st.sampled_from(CONFIGS), base=st.sampled_from(KINDS + ["missing"]),
       experts=st.lists(st.sampled_from(KINDS + ["missing"]), min_size=2, max_size=3), seed=st.integers(0, 10_000))
def test_demo_zoo_build_loads_or_names_the_file(config, base, experts, seed):
    tasks = [f"t{i}" for i in range(len(experts))]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config.json").write_text(config_text(config, tasks))
        if base != "missing":
            write(root / "base.safetensors", payload(base, seed))
        for task, kind in zip(tasks, experts):
            if kind != "missing":
                write(root / "experts" / f"{task}.safetensors", payload(kind, seed + 1))
        zoo = outcome(lambda: ex.load_zoo("demo", root=root), "config.json")
        if isinstance(zoo, ex.Zoo):
            tv = outcome(lambda: ex.task_vectors(zoo, device="cpu"))
            if isinstance(tv, ex.TaskVectors):
                assert tv.tasks == tasks
