"""Named zoos (zoos/*.json), `explorer zoos`, `explorer zoo convert`, and a zoo's preprocessed datasets."""
from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.cli import main
from explorer.weights import read_weights
from explorer.zoo.datasets import task_names, task_set
from explorer.zoo.formats import openclip_to_hf
from explorer.zoo.openclip import named_sources, named_zoos

from .test_datasets import _folder_spec
from .tinyclip import image_encoder_sd, save_family, save_pickled_encoder, tiny_clip, visual_sd, write_config


def test_named_zoos_cover_three_architectures_and_three_task_sets():
    zoos = named_zoos()
    assert {z["arch"] for z in zoos.values()} == {"ViT-B-32", "ViT-B-16", "ViT-L-14"}
    assert zoos["clip-vit-b32-ta8"]["tasks"] == task_set(8)
    for name, spec in zoos.items():
        for family, fam in spec["families"].items():
            tasks = fam.get("tasks", spec["tasks"])
            assert set(tasks) <= set(task_names()), (name, family)
            if not fam.get("needs_root"):
                src = named_sources(spec, family)
                assert len(src["experts"]) == len(tasks)
                assert all(s.startswith("hf-hub:") for s in src["experts"].values())


def test_family_sources_are_spelled_as_each_release_names_them(tmp_path):
    spec = named_zoos()["clip-vit-b32-ta8"]
    fb = named_sources(spec, "fusionbench")
    assert fb["base"] == "hf-hub:openai/clip-vit-base-patch32"
    assert fb["experts"]["cars"] == "hf-hub:tanganke/clip-vit-base-patch32_stanford-cars"
    tm = named_sources(spec, "tall_masks", tasks=["sun397"])
    expected = "hf-hub:nik-dim/tall_masks/single_task/ViT-B-32/SUN397Val/nonlinear_finetuned.pt"
    assert tm["experts"] == {"sun397": expected}
    tv = named_sources(spec, "task_vectors", root=tmp_path)
    assert tv["base"] == f"{tmp_path}/zeroshot.pt" and tv["experts"]["gtsrb"] == f"{tmp_path}/GTSRB/finetuned.pt"
    assert named_sources(named_zoos()["clip-vit-l14-tall20"], "fusionbench")["experts"]["emnist_letters"].endswith(
        "clip-vit-large-patch14_emnist_letters")
    with pytest.raises(ValueError, match="pass root='/path/to/folder'.*Google Drive"):
        named_sources(spec, "task_vectors")
    with pytest.raises(ValueError, match="has no family 'aTLAS'"):
        named_sources(spec, "aTLAS")
    with pytest.raises(ValueError, match=r"has no task\(s\) \['kmnist'\]"):
        named_sources(spec, "tall_masks", tasks=["kmnist"])
    with pytest.raises(ValueError, match="unknown zoo 'clip-vit-b99'.*clip-vit-b32-ta8"):
        ex.load_zoo("clip-vit-b99")
    with pytest.raises(ValueError, match="has no family 'nope'"):  # NAME:FAMILY, as the CLI's --zoo takes it
        ex.load_zoo("clip-vit-b32-ta8:nope")


def test_explorer_zoos_lists_every_named_zoo_and_the_demo(capsys):
    assert main(["zoos"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("demo ")
    for name in named_zoos():
        assert name in out
    assert "with local files (root=...)" in out and "not cached" in out


def test_zoo_convert_pickled_to_safetensors_only_with_opt_in(tmp_path, capsys):
    clip = tiny_clip(2)
    src = save_pickled_encoder(clip, tmp_path / "finetuned.pt", tmp_path)
    assert main(["zoo", "convert", str(src), str(tmp_path / "out.safetensors")]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert main(["zoo", "convert", str(src), str(tmp_path / "out.safetensors"), "--allow-pickle"]) == 0
    got = read_weights(tmp_path / "out.safetensors")
    assert got.keys() == visual_sd(clip).keys() and all(torch.equal(got[k], v) for k, v in visual_sd(clip).items())


def test_zoo_convert_to_hf_names_and_back(tmp_path):
    clip = tiny_clip(3)
    torch.save(image_encoder_sd(clip), tmp_path / "enc.pt")
    assert main(["zoo", "convert", str(tmp_path / "enc.pt"), str(tmp_path / "hf.safetensors"), "--format", "hf"]) == 0
    hf = read_weights(tmp_path / "hf.safetensors")
    want = openclip_to_hf(visual_sd(clip))
    assert hf.keys() == want.keys() and all(torch.equal(hf[k], want[k]) for k in want)
    assert main(["zoo", "convert", str(tmp_path / "hf.safetensors"), str(tmp_path / "oc.safetensors")]) == 0
    oc = read_weights(tmp_path / "oc.safetensors")
    assert all(torch.equal(oc[k], v) for k, v in visual_sd(clip).items()) and len(oc) == len(visual_sd(clip))
    assert main(["zoo", "convert", str(tmp_path / "enc.pt"), str(tmp_path / "out.pt")]) == 2


def test_zoo_dataset_applies_the_architecture_preprocessing(tmp_path, monkeypatch):
    spec = _folder_spec(tmp_path)
    path = save_family(tiny_clip(0), tmp_path / "clip", "visual_safetensors", tmp_path)
    monkeypatch.setenv("EXPLORER_DATA_ROOT", str(tmp_path))  # the default data_root
    zoo = ex.load_zoo("openclip", arch=str(write_config(tmp_path)), base=str(path), experts={"toy": str(path)},
                      task_specs={"toy": spec})
    image, label = zoo.dataset("toy", "test")[4]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 1
    assert len(zoo.dataset("toy", "validation")) == 3
    with pytest.raises(ValueError, match="unknown split 'val'"):
        zoo.dataset("toy", "val")
    batch = next(zoo.unlabeled("toy", batch_size=4))
    assert batch.shape == (4, 3, 16, 16)
