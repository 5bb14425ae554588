"""Zoos of your own: a folder of checkpoints in each layout (open_clip, TALL state dicts, Hugging Face CLIP written
by transformers 4 and 5) loads with task vectors equal to the true deltas; a zoo without text tower, class names or
data still merges, analyses and saves, and `evaluate` raises one error naming what is missing."""
from __future__ import annotations

import json

import pytest
import torch

import explorer as ex
from explorer import figure_catalog as F
from explorer.weights import write_weights
from explorer.zoo import load_zoo
from explorer.zoo.base import EvaluationUnavailable
from explorer.zoo.formats import detect_format, openclip_to_hf

from .tinyclip import finetuned, image_encoder_sd, tiny_clip, visual_sd, write_config

TEXT_KEYS = {"text_model.embeddings.token_embedding.weight": torch.zeros(5, 16),
             "text_projection.weight": torch.zeros(8, 16), "logit_scale": torch.tensor(2.6)}


def hf_keys(clip, *, prefix: bool, projection: bool, text: bool = False) -> dict[str, torch.Tensor]:
    """`clip`'s vision tower as transformers saves it: CLIPModel (prefix, projection, text keys), CLIPVisionModel in
    transformers 4 (prefix, no projection) or 5 (no prefix, no projection), CLIPVisionModelWithProjection in 5 (no
    prefix, projection). Key names and shapes as transformers writes them."""
    out = {}
    for key, value in openclip_to_hf(visual_sd(clip)).items():
        if key == "visual_projection.weight":
            if projection:
                out[key] = value
        else:
            out[key if prefix else key[len("vision_model."):]] = value
    if prefix:
        out["vision_model.embeddings.position_ids"] = torch.arange(5)[None]
    return {**out, **(TEXT_KEYS if text else {})}


LAYOUTS = {  # name -> (writer of one checkpoint, file suffix, whether the checkpoint has the projection)
    "openclip_full": (lambda c: c.state_dict(), ".safetensors", True),
    "openclip_visual": (visual_sd, ".safetensors", True),
    "tall_state_dict": (image_encoder_sd, ".pt", True),
    "hf_clipmodel": (lambda c: hf_keys(c, prefix=True, projection=True, text=True), ".safetensors", True),
    "hf_vision_tf4": (lambda c: hf_keys(c, prefix=True, projection=False), ".safetensors", False),
    "hf_vision_tf5": (lambda c: hf_keys(c, prefix=False, projection=False), ".safetensors", False),
    "hf_vision_projection_tf5": (lambda c: hf_keys(c, prefix=False, projection=True), ".safetensors", True),
}


def write(sd: dict, path):
    if path.suffix == ".pt":
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(sd, path)
        return path
    return write_weights(sd, path)


def folder_zoo(tmp_path, base_layout: str, expert_layout: str, tasks=("mnist", "svhn")):
    """A folder with base.<ext> and <task>.<ext> in the given layouts; (folder, base clip, expert clips)."""
    base = tiny_clip(0)
    experts = {t: finetuned(base, seed=i + 1) for i, t in enumerate(tasks)}
    folder = tmp_path / "zoo"
    writer, suffix, _ = LAYOUTS[base_layout]
    write(writer(base), folder / f"base{suffix}")
    writer, suffix, _ = LAYOUTS[expert_layout]
    for t, clip in experts.items():
        write(writer(clip), folder / f"{t}{suffix}")
    return folder, base, experts


def assert_true_deltas(tv, base, experts, *, projection: bool):
    theta0 = visual_sd(base)
    want_keys = set(theta0) if projection else set(theta0) - {"proj"}
    assert set(tv.keys()) == want_keys
    for i, task in enumerate(tv.tasks):
        theta_t = visual_sd(experts[task])
        for name in want_keys:
            assert torch.allclose(tv[name][i], theta_t[name] - theta0[name], atol=1e-6, rtol=0), (task, name)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_opens_as_a_folder_zoo_with_the_true_deltas(tmp_path, layout):
    folder, base, experts = folder_zoo(tmp_path, layout, layout)
    zoo = load_zoo(str(folder))
    assert zoo.tasks == ["mnist", "svhn"] and zoo.source == str(folder.resolve())
    tv = ex.task_vectors(zoo, device="cpu")
    assert_true_deltas(tv, base, experts, projection=LAYOUTS[layout][2])


def test_transformers_5_vision_keys_are_detected_without_the_prefix():
    sd = hf_keys(tiny_clip(0), prefix=False, projection=False)
    assert "encoder.layers.0.mlp.fc1.weight" in sd and not any(k.startswith("vision_model.") for k in sd)
    assert detect_format(sd) == ("hf", "")


def test_vision_only_experts_take_the_projection_of_a_full_clip_base(tmp_path):
    folder, base, experts = folder_zoo(tmp_path, "hf_clipmodel", "hf_vision_tf5")
    zoo = load_zoo(folder)
    tv = ex.task_vectors(zoo, device="cpu")
    assert torch.equal(tv["proj"], torch.zeros_like(tv["proj"]))  # FusionBench keeps the pretrained projection
    theta0 = {k: v for k, v in visual_sd(base).items() if k != "proj"}
    for i, task in enumerate(tv.tasks):
        for name, value in theta0.items():
            assert torch.allclose(tv[name][i], visual_sd(experts[task])[name] - value, atol=1e-6, rtol=0)


def test_a_vision_only_base_merges_every_parameter_and_says_evaluation_needs_the_projection(tmp_path):
    folder, base, experts = folder_zoo(tmp_path, "hf_vision_tf5", "hf_vision_tf5")
    (folder / "zoo.json").write_text(json.dumps({"arch": str(write_config(tmp_path)), "base": "base.safetensors",
                                                 "experts": {t: f"{t}.safetensors" for t in experts}}))
    zoo = load_zoo(str(folder))
    tv = ex.task_vectors(zoo, device="cpu")
    assert_true_deltas(tv, base, experts, projection=False)
    res = ex.merge(tv, "ties", density=0.5)
    assert set(res.state_dict()) == set(visual_sd(base)) - {"proj"}
    with pytest.raises(EvaluationUnavailable, match="projection from a full CLIP checkpoint"):
        ex.evaluate(zoo, res)


def test_a_folder_without_a_base_or_experts_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_zoo(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no zoo"):
        load_zoo(str(tmp_path / "empty"))
    folder, _, _ = folder_zoo(tmp_path, "openclip_visual", "openclip_visual")
    (folder / "base.safetensors").rename(folder / "other.safetensors")
    with pytest.raises(ValueError, match="no base: name the pretrained model's file base.safetensors"):
        load_zoo(str(folder))


def bare_zoo(tmp_path):
    """A zoo file naming a model config and checkpoints only: no text tower, no class names, no data."""
    folder, base, experts = folder_zoo(tmp_path, "openclip_visual", "tall_state_dict",
                                       tasks=("alpha", "beta", "gamma"))
    spec = {"name": "bare", "arch": write_config(tmp_path).name, "base": "zoo/base.safetensors",
            "experts": {t: f"zoo/{t}.pt" for t in experts}}  # paths relative to the zoo file
    (tmp_path / "bare.json").write_text(json.dumps(spec))
    return tmp_path / "bare.json", base, experts


def test_a_zoo_without_text_tower_or_data_merges_analyses_and_saves(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_DATA_ROOT", raising=False)
    path, base, experts = bare_zoo(tmp_path)
    zoo = load_zoo(str(path))
    tv = ex.task_vectors(zoo, device="cpu")
    assert_true_deltas(tv, base, experts, projection=True)
    merges = {"masks": ex.merge(tv, "ties", density=0.3), "layers": ex.merge(tv, "lines"),
              "spectra": ex.merge(tv, "tsv")}
    inputs = F.Inputs(tv, merge=merges.__getitem__)
    made = F.make(F.select(sections=tuple(s for s in F.SECTIONS if s != "accuracy")), inputs)
    assert {n for n, m in made.items() if m is None} == set(F.METHOD_SPECIFIC) - {"representation_bias", "routing"}
    record = ex.save(merges["masks"], tmp_path / "out" / "ties.safetensors", zoo=zoo)
    assert record.zoo == str(path.resolve())
    assert (tmp_path / "out" / "ties.json").is_file()
    with pytest.raises(EvaluationUnavailable) as err:
        ex.evaluate(zoo, merges["masks"])
    message = str(err.value)
    assert "a text tower for the zero-shot heads" in message
    assert all(f"class names for task {t!r}" in message for t in experts)
    assert message.count("cannot evaluate") == 1


def test_loading_never_resolves_the_text_tower(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EXPLORER_DATA_ROOT", str(tmp_path / "data"))
    folder, base, experts = folder_zoo(tmp_path, "openclip_visual", "openclip_visual")
    files = {t: str(folder / f"{t}.safetensors") for t in experts}
    zoo = ex.load_zoo("openclip", arch=str(write_config(tmp_path)), base=str(folder / "base.safetensors"),
                      experts=files, text="hf-hub:openai/clip-vit-base-patch32")
    tv = ex.task_vectors(zoo, device="cpu")  # offline, no text tower: the weights are all it needs
    assert_true_deltas(tv, base, experts, projection=True)
    problems = zoo.evaluation_problems()
    assert len(problems) == 3
    assert "the text tower for the zero-shot heads (hf-hub:openai/clip-vit-base-patch32)" in problems[0]
    assert "HF_HUB_OFFLINE" in problems[0]
    assert all(f"test data for task {t!r}" in p and "does not exist" in p for t, p in zip(experts, problems[1:]))


def test_zoo_file_errors_name_the_key(tmp_path):
    (tmp_path / "z.json").write_text(json.dumps({"base": "b.safetensors", "expert": {}}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['expert'\].*missing \['experts'\]"):
        load_zoo(str(tmp_path / "z.json"))
    (tmp_path / "t.json").write_text(json.dumps({"base": "b", "experts": {"a": "a"}, "tasks": {"a": {}}}))
    with pytest.raises(ValueError, match="task 'a' needs \"classnames\""):
        load_zoo(str(tmp_path / "t.json"))


def test_a_zoo_file_gives_class_names_and_a_data_layout(tmp_path):
    path, _, experts = bare_zoo(tmp_path)
    spec = json.loads(path.read_text())
    spec["tasks"] = {"alpha": {"classnames": ["cat", "dog"]}}
    spec["data_root"] = "data"
    (tmp_path / "data" / "alpha" / "test").mkdir(parents=True)
    path.write_text(json.dumps(spec))
    zoo = load_zoo(str(path))
    assert zoo.class_names("alpha") == ["cat", "dog"]
    problems = zoo.evaluation_problems()
    assert not any("'alpha'" in p for p in problems)  # its class names and test folder are there
    assert any("class names for task 'beta'" in p for p in problems)


def test_explorer_merge_and_analyse_take_a_zoo_file(tmp_path, capsys, monkeypatch):
    from explorer.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, base, experts = bare_zoo(tmp_path)
    out = tmp_path / "merged.safetensors"
    assert main(["merge", "--zoo", str(path), "--method", "ties", "--device", "cpu", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["zoo"] == str(path.resolve()) and record["tasks"] == list(experts)
    assert main(["analyse", "--zoo", str(path), "--what", "cosine,spectra", "--device", "cpu"]) == 0
    assert "Cosine similarity" in capsys.readouterr().out
    assert main(["merge", "--zoo", str(path), "--method", "ties", "--device", "cpu", "--eval"]) == 2
    assert "cannot evaluate: it lacks a text tower" in capsys.readouterr().err
