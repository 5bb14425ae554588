"""One reader of a folder of checkpoints: a folder written the CLI's way (base.safetensors + <task>.safetensors) and
one written the dashboard's way (pretrained.pt, experts/, HF names, save_pretrained folders) give the same task
vectors, through `ex.load_zoo`, the CLI and the dashboard alike."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.app import cache
from explorer.commands.merge import load_task_vectors
from explorer.weights import write_weights
from explorer.zoo.folder import FolderZoo
from explorer.zoo.formats import openclip_to_hf
from tests.conftest import tiny_state_dicts, write_zoo_folder


def dashboard_folder(root, base, experts):
    """The same zoo as the CLI's folder, in the layouts only the dashboard's reader took before."""
    folder = root / "mine"
    (folder / "experts" / "task1").mkdir(parents=True)
    torch.save({"state_dict": {"visual." + k: v for k, v in base.items()}}, folder / "pretrained.pt")
    write_weights(openclip_to_hf(experts["task0"]), folder / "experts" / "task0.safetensors")
    write_weights(experts["task1"], folder / "experts" / "task1" / "model.safetensors")
    torch.save({"module." + k: v for k, v in experts["task2"].items()}, folder / "experts" / "task2.bin")
    return folder


def assert_same(a: ex.TaskVectors, b: ex.TaskVectors) -> None:
    assert a.tasks == b.tasks and set(a.keys()) == set(b.keys())
    assert all(torch.equal(a[name], b[name]) for name in a.keys())


def test_both_ways_of_writing_a_folder_give_the_same_task_vectors(tmp_path):
    cli_way, base, experts = write_zoo_folder(tmp_path)
    mine = dashboard_folder(tmp_path, base, experts)
    want = ex.task_vectors(base, experts, device="cpu")
    for folder in (cli_way, mine):
        zoo = ex.load_zoo(folder)
        assert isinstance(zoo, FolderZoo) and zoo.tasks == ["task0", "task1", "task2"]
        assert_same(ex.task_vectors(zoo, device="cpu"), want)
        tv, _, zoo_id, inputs = load_task_vectors(str(folder), None, "cpu")  # what merge / analyse / sweep read
        assert_same(tv, want)
        assert zoo_id == str(folder) and len(inputs) == 4
        assert_same(cache.vectors(str(folder), ["task0", "task1", "task2"]).to("cpu"), want)  # the dashboard's
    assert set(load_task_vectors(str(mine), None, "cpu")[3]) == {
        "pretrained.pt", "experts/task0.safetensors", "experts/task1/model.safetensors", "experts/task2.bin"}


def test_names_of_no_known_format_are_kept_as_they_are(tmp_path):
    base = {"encoder.weight": torch.ones(3, 2), "head.bias": torch.zeros(4)}
    for name, shift in (("base", 0.0), ("a", 0.1), ("b", 0.2)):
        write_weights({k: v + shift for k, v in base.items()}, tmp_path / f"{name}.safetensors")
    tv = ex.task_vectors(ex.load_zoo(tmp_path), device="cpu")
    assert tv.tasks == ["a", "b"] and set(tv.keys()) == set(base)
    assert torch.allclose(tv["head.bias"][1], torch.full((4,), 0.2))


def test_a_folder_that_is_not_a_zoo_says_what_was_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("no checkpoints here")
    with pytest.raises(ValueError, match="holds no zoo: it has no checkpoint files, so it has no base.safetensors.*"
                                         "Expected: a zoo folder holds base.safetensors"):
        ex.load_zoo(tmp_path)
    base, experts = tiny_state_dicts(2)
    write_weights(base, tmp_path / "base.safetensors")
    write_weights(experts["task0"], tmp_path / "task0.safetensors")
    torch.save(experts["task1"], tmp_path / "task0.pt")  # one name twice: the safetensors file wins
    assert ex.load_zoo(tmp_path).files["expert task0"].name == "task0.safetensors"
    with pytest.raises(ValueError, match="a folder zoo's experts are its checkpoint files"):
        ex.load_zoo(tmp_path, experts={"task0": "backdoored"})
