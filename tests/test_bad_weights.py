"""Bad weights and inputs get one clear message in the API, the CLI and the dashboard: NaN/Inf weights, integer vs
float tensors, a one-expert zoo, a zoo folder that does not exist."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.app import cache, handlers
from explorer.cli import main
from explorer.weights import write_weights
from tests.conftest import tiny_state_dicts, write_zoo_folder
from tests.tinyzoo import TinyZoo

NAN_KEY, INF_KEY = "conv1.weight", "ln_pre.bias"


def poisoned(num_tasks: int = 3):
    """(base, experts) where expert task1 has 3 NaN entries in conv1.weight."""
    base, experts = tiny_state_dicts(num_tasks)
    experts["task1"][NAN_KEY].view(-1)[[0, 5, 9]] = float("nan")
    return base, experts


def test_api_refuses_nan_naming_the_expert_the_parameter_and_the_count():
    base, experts = poisoned()
    with pytest.raises(ValueError, match=r"non-finite.*\n  expert 'task1': 3 NaN/Inf entries in 'conv1.weight'"):
        ex.task_vectors(base, experts, device="cpu")


def test_api_refuses_inf_in_the_base():
    base, experts = tiny_state_dicts(2)
    base[INF_KEY][2] = float("-inf")
    with pytest.raises(ValueError, match=r"base: 1 NaN/Inf entry in 'ln_pre.bias'"):
        ex.task_vectors(base, experts, device="cpu")


@pytest.mark.parametrize("flip", ["expert_int", "base_int"])
def test_integer_vs_float_tensors_are_named(flip):
    base, experts = tiny_state_dicts(2)
    if flip == "expert_int":
        experts["task0"][NAN_KEY] = experts["task0"][NAN_KEY].round().long()
        found = "base torch.float32 vs torch.int64"
    else:
        base[NAN_KEY] = base[NAN_KEY].round().long()
        found = "base torch.int64 vs torch.float32"
    with pytest.raises(ValueError, match=rf"expert 'task\d' has 1 integer/float mismatch\(es\).*conv1.weight: {found}"):
        ex.task_vectors(base, experts, device="cpu")


def test_a_merge_that_overflows_raises_instead_of_returning_inf():
    big = torch.full((2, 3), 1.5e38)  # the sum 3e38 is finite in float32 (max 3.4e38); twice it is not
    tv = ex.TaskVectors(["a", "b"], {"w": torch.zeros(3)}, {"w": big})
    with pytest.raises(ValueError, match=r"(?s)task_arithmetic merge produced non-finite.*3 NaN/Inf entries in 'w'"):
        ex.merge(tv, "task_arithmetic", scale=2.0)
    assert torch.isfinite(ex.merge(tv, "task_arithmetic", scale=1.0).delta["w"]).all()


def test_evaluate_refuses_a_nan_state_dict(tiny_zoo):
    sd = tiny_zoo.base_state_dict()
    sd[NAN_KEY] = sd[NAN_KEY].clone()
    sd[NAN_KEY][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"state dict: 1 NaN/Inf entry in 'conv1.weight'"):
        ex.evaluate(tiny_zoo, sd)


def test_api_names_a_missing_zoo_folder_and_lists_zoos():
    with pytest.raises(FileNotFoundError, match=r"zoo folder 'path/that/does/not/exist' not found"):
        ex.load_zoo("path/that/does/not/exist")
    assert ex.list_zoos()[0] == "demo" and "clip-vit-b32-ta8" in ex.list_zoos()


# --- the CLI: one line (exit 2), the same words ---------------------------------------------------------
def _cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_cli_refuses_a_nan_expert(tmp_path, capsys):
    base, experts = poisoned()
    write_weights(base, tmp_path / "base.safetensors")
    for task, sd in experts.items():
        write_weights(sd, tmp_path / f"{task}.safetensors")
    err = _cli_error(["merge", "--zoo", str(tmp_path), "--method", "task_arithmetic", "--out",
                      str(tmp_path / "m.safetensors")], capsys)
    assert "expert 'task1': 3 NaN/Inf entries in 'conv1.weight'" in err
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_names_an_integer_tensor_where_the_base_has_a_float_one(tmp_path, capsys):
    base, experts = tiny_state_dicts(2)
    experts["task1"][NAN_KEY] = experts["task1"][NAN_KEY].round().to(torch.int32)
    write_weights(base, tmp_path / "base.safetensors")
    for task, sd in experts.items():
        write_weights(sd, tmp_path / f"{task}.safetensors")
    err = _cli_error(["merge", "--zoo", str(tmp_path), "--method", "ties"], capsys)
    assert "expert 'task1' has 1 integer/float mismatch(es)" in err and "base torch.float32 vs torch.int32" in err


def test_cli_one_expert_folder_and_missing_folder(tmp_path, capsys):
    folder, _, _ = write_zoo_folder(tmp_path, num_tasks=1)
    err = _cli_error(["merge", "--zoo", str(folder), "--method", "ties"], capsys)
    assert "Merging needs at least 2 experts, got 1 ('task0')" in err
    err = _cli_error(["merge", "--zoo", "path/that/does/not/exist", "--method", "ties"], capsys)
    assert "zoo folder 'path/that/does/not/exist' not found" in err
    err = _cli_error(["analyse", "--zoo", str(tmp_path / "nope"), "--what", "cosine"], capsys)
    assert "not found" in err


# --- the dashboard: the same messages reach the status line -------------------------------------------
@pytest.fixture
def nan_zoo():
    z = TinyZoo()
    z.experts["task2"] = {k: v.clone() for k, v in z.experts["task2"].items()}
    z.experts["task2"][INF_KEY][:2] = float("inf")
    cache.register_zoo("nan-zoo", z)
    yield z
    for store in (cache.ZOOS, cache.TASK_VECTORS, cache.ZOO_FIGURES, cache.RESULTS):
        store.clear()


def test_dashboard_refuses_nan_weights_and_one_expert(nan_zoo):
    with pytest.raises(ValueError, match=r"expert 'task2': 2 NaN/Inf entries in 'ln_pre.bias'"):
        handlers.run(handlers.new_state(), "nan-zoo", nan_zoo.tasks, "task_arithmetic", {"scale": 0.3})
    with pytest.raises(ValueError, match=r"at least 2 experts, got 1 \('task0'\)"):
        handlers.run(handlers.new_state(), "nan-zoo", ["task0"], "task_arithmetic", {"scale": 0.3})


def test_dashboard_names_an_integer_tensor_where_the_base_has_a_float_one():
    z = TinyZoo()
    z.experts["task0"] = {**z.experts["task0"], NAN_KEY: z.experts["task0"][NAN_KEY].round().long()}
    cache.register_zoo("int-zoo", z)
    try:
        with pytest.raises(ValueError, match=r"expert 'task0' has 1 integer/float mismatch"):
            handlers.run(handlers.new_state(), "int-zoo", z.tasks, "ties", {})
    finally:
        cache.ZOOS.clear()
        cache.TASK_VECTORS.clear()


def test_dashboard_names_a_missing_zoo_folder():
    with pytest.raises(ValueError, match=r"zoo folder '/no/such/folder' not found"):
        handlers.run(handlers.new_state(), "/no/such/folder", ["a", "b"], "ties", {})


# --- found by the fuzz suite (tests/fuzz), pinned here ------------------------------------------------
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_an_integer_parameter_refuses_non_finite_numbers_by_name(tiny_tv, value):
    with pytest.raises(ValueError, match=r"parameter 'k': .* is not a finite number; allowed \[0, 20\]"):
        ex.merge(tiny_tv, "consensus", k=value)


@pytest.mark.parametrize("text,problem", [("{", "is not valid JSON"), ("", "is not valid JSON"),
                                          ('{"classes": {}}', "has no list of task names"),
                                          ('{"tasks": 3}', "has no list of task names")])
def test_a_broken_demo_zoo_config_is_named(tmp_path, text, problem):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=rf"config.json {problem}"):
        ex.load_zoo("demo", root=tmp_path)


def test_a_base_without_float_tensors_has_nothing_to_merge():
    with pytest.raises(ValueError, match="nothing to merge"):
        ex.task_vectors({"step": torch.tensor(3)}, {"a": {"step": torch.tensor(4)}, "b": {"step": torch.tensor(5)}})


def test_a_folder_where_a_weight_file_should_be_is_named(tmp_path):
    from explorer.weights import read_weights

    (tmp_path / "x.safetensors").mkdir()
    with pytest.raises(ValueError, match="is a folder, not a weight file"):
        read_weights(tmp_path / "x.safetensors")
