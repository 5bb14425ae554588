"""Streamed merges (`explorer.stream`): a folder of safetensors merged parameter by parameter from disk gives the
same bits as the in-memory path, and `explorer merge --stream` records which path ran."""
from __future__ import annotations

import json

import pytest
import torch

import explorer as ex
from explorer.cli import main
from explorer.methods.engine import kernels
from explorer.runs import merged_state_dict
from explorer.stream import SafetensorsReader, SafetensorsWriter, merge_folder, merged_deltas
from explorer.weights import read_weights, write_weights
from explorer.zoo.formats import openclip_to_hf
from tests.conftest import write_zoo_folder

SHAPES = {"a.weight": (37, 29), "b.bias": (300,), "c.weight": (5, 64), "d": (3,), "e": ()}
CASES = [("task_arithmetic", {"scale": 0.3}), ("average", {}),
         ("ties", {"density": 0.2, "scope": "global"}), ("ties", {"density": 0.5, "scope": "tensor", "sign": "count"}),
         ("ties", {"density": 1.0, "aggregate": "sum"}), ("magnitude", {"density": 0.3}),
         ("magnitude", {"density": 0.3, "scope": "tensor"}), ("breadcrumbs", {"keep": 0.3, "remove": 0.05})]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """base + 3 experts, one with magnitudes from a few values (ties at the thresholds, zero votes), and an
    integer buffer that is passed through."""
    root = tmp_path_factory.mktemp("zoo")
    gen = torch.Generator().manual_seed(0)
    base = {n: torch.randn(s, generator=gen) for n, s in SHAPES.items()}
    write_weights({**base, "ids": torch.arange(7)}, root / "base.safetensors")
    for t in range(3):
        noise = {n: torch.randn(s, generator=gen) * 0.1 for n, s in SHAPES.items()}
        if t == 2:
            noise = {n: torch.randint(-2, 3, s, generator=gen).float() * 0.25 for n, s in SHAPES.items()}
        write_weights({**{n: base[n] + noise[n] for n in base}, "ids": torch.arange(7)},
                      root / f"task{t}.safetensors")
    return root


def in_memory(folder, method, params) -> dict[str, torch.Tensor]:
    return merged_state_dict(ex.merge(ex.task_vectors(ex.load_zoo(folder), device="cpu"), method, **params))


def streamed(folder, method, params, out) -> dict[str, torch.Tensor]:
    experts = {f"task{t}": folder / f"task{t}.safetensors" for t in range(3)}
    merge_folder(folder / "base.safetensors", experts, method, params, out)
    return read_weights(out)


@pytest.mark.parametrize("fused_mode", ["off", "eager"])
@pytest.mark.parametrize("method,params", CASES)
def test_streamed_equals_in_memory(folder, tmp_path, monkeypatch, method, params, fused_mode):
    monkeypatch.setattr(kernels, "MODE", fused_mode)
    monkeypatch.setattr(kernels, "MIN_NUMEL", 64)
    want = in_memory(folder, method, params)
    got = streamed(folder, method, params, tmp_path / "merged.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name


def test_writer_and_reader_round_trip_any_order(tmp_path):
    tensors = {"x": torch.randn(3, 5), "y": torch.arange(4), "z": torch.ones((), dtype=torch.float16)}
    writer = SafetensorsWriter(tmp_path / "w.safetensors", {n: (t.dtype, tuple(t.shape)) for n, t in tensors.items()},
                               metadata={"method": "m"})
    for name in ("z", "x", "y"):
        writer.write(name, tensors[name])
    back = read_weights(tmp_path / "w.safetensors")
    reader = SafetensorsReader(tmp_path / "w.safetensors")
    for name, t in tensors.items():
        assert torch.equal(back[name], t) and torch.equal(reader.read(name), t)


def test_a_method_that_is_not_parameter_by_parameter_is_refused(folder):
    from explorer.stream import FolderDeltas

    deltas = FolderDeltas(SafetensorsReader(folder / "base.safetensors"),
                          {"t0": SafetensorsReader(folder / "task0.safetensors")})
    with pytest.raises(ValueError, match="--stream off"):
        next(merged_deltas(deltas, "emr", {}))


def test_cli_records_the_streamed_path_and_matches_in_memory(folder, tmp_path, capsys):
    args = ["merge", "--zoo", str(folder), "--method", "ties", "-p", "density=0.2"]
    assert main([*args, "--out", str(tmp_path / "s.safetensors"), "--stream", "on"]) == 0
    assert main([*args, "--out", str(tmp_path / "m.safetensors"), "--stream", "off"]) == 0
    s, m = read_weights(tmp_path / "s.safetensors"), read_weights(tmp_path / "m.safetensors")
    assert all(torch.equal(s[n], m[n]) for n in m) and s.keys() == m.keys()
    records = {k: json.loads((tmp_path / f"{k}.json").read_text()) for k in "sm"}
    assert records["s"]["merge_path"] == "streamed" and records["m"]["merge_path"] == "in-memory"
    assert records["s"]["params"] == records["m"]["params"] and records["s"]["inputs"] == records["m"]["inputs"]
    capsys.readouterr()
    assert main([*args, "--stream", "on"]) != 0
    assert "give --out" in capsys.readouterr().err


def test_the_streamable_methods_are_those_that_declare_a_hook(folder):
    from explorer.methods import registry
    from explorer.stream import FolderDeltas

    assert registry.streamable() == ["average", "task_arithmetic", "ties", "magnitude", "breadcrumbs"]
    deltas = FolderDeltas(SafetensorsReader(folder / "base.safetensors"),
                          {"t0": SafetensorsReader(folder / "task0.safetensors")})
    with pytest.raises(ValueError, match="support average, task_arithmetic, ties, magnitude, breadcrumbs"):
        merged_deltas(deltas, "dare", {})


def test_a_folder_in_hf_names_merges_in_memory_with_open_clip_names(tmp_path, capsys, monkeypatch):
    """A streamed merge keeps the files' names and an in-memory one writes open_clip names, so a folder in another
    name format never streams: `--stream on` says why, `--stream auto` (even above the threshold) merges in memory."""
    _, base, experts = write_zoo_folder(tmp_path / "src")
    hf = tmp_path / "hf"
    for name, sd in {"base": base, **experts}.items():
        write_weights(openclip_to_hf(sd), hf / f"{name}.safetensors")
    args = ["merge", "--zoo", str(hf), "--method", "task_arithmetic", "--out", str(tmp_path / "m.safetensors")]
    assert main([*args, "--stream", "on"]) != 0
    assert "its names are in the hf format" in capsys.readouterr().err
    monkeypatch.setattr("explorer.stream.STREAM_ABOVE", 0)
    assert main([*args, "--stream", "auto"]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["merge_path"] == "in-memory"
    assert set(read_weights(tmp_path / "m.safetensors")) == set(base)
