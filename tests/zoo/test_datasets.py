"""Task metadata shipped as data, and the benchmark's dataset splits from a local data_root."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from explorer.zoo import datasets as ds
from explorer.zoo.datasets import DataMissing, task_dataset, task_names, task_set, task_spec

# Class and template counts of the 8 standard tasks (the task_vectors repository's templates.py).
COUNTS = {"sun397": (397, 2), "cars": (196, 8), "resisc45": (45, 18), "eurosat": (10, 3), "svhn": (10, 1),
          "gtsrb": (43, 3), "mnist": (10, 1), "dtd": (47, 8), "cifar100": (100, 18), "flowers102": (102, 1),
          "oxford_pets": (37, 1), "food101": (101, 1), "fer2013": (7, 6), "pcam": (2, 1), "emnist_letters": (26, 1)}


@pytest.mark.parametrize("task", sorted(COUNTS))
def test_standard_tasks_have_the_official_class_and_template_counts(task):
    spec = task_spec(task)
    assert (len(spec["classnames"]), len(spec["templates"])) == COUNTS[task]


def test_every_task_file_is_well_formed():
    for task in task_names():
        spec = task_spec(task)
        names = spec.get("prompt_names", spec["classnames"])
        assert len(set(spec["classnames"])) == len(spec["classnames"]) == len(names), task
        assert all(t.count("{}") == 1 for t in spec["templates"]), task
        assert spec["data"]["kind"] in ("folder", "torchvision") and "test" in spec["data"]["splits"], task


def test_task_sets_and_a_few_exact_entries():
    assert task_set(8) == ["sun397", "cars", "resisc45", "eurosat", "svhn", "gtsrb", "mnist", "dtd"]
    assert len(task_set(14)) == 14 and len(task_set("20")) == 20 and task_set(20)[:14] == task_set(14)
    assert set(task_set(8)) <= set(task_set(14)) and set(task_set(20)) <= set(task_names())
    assert task_spec("eurosat")["classnames"][2] == "brushland or shrubland"
    assert task_spec("svhn")["templates"] == ['a photo of the number: "{}".']
    assert task_spec("sun397")["classnames"][:2] == ["abbey", "airplane cabin"]
    assert task_spec("cars")["classnames"][0] == "AM General Hummer SUV 2000"
    with pytest.raises(ValueError, match="no task set"):
        task_set(9)
    with pytest.raises(KeyError, match="no task metadata for 'imagenet'"):
        task_spec("imagenet")


def _folder_spec(tmp_path, per_class=(12, 18), test_per_class=3):
    for split, counts in (("train", per_class), ("test", (test_per_class,) * len(per_class))):
        for c, n in enumerate(counts):
            folder = tmp_path / "toy" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 20), (40 * c, 5 * i, 0)).save(folder / f"img{c}_{i}.png")
    return {"name": "Toy", "classnames": ["a", "b"], "templates": ["{}"],
            "data": {"kind": "folder", "splits": {"train": "toy/train", "test": "toy/test"}}}


def test_validation_is_the_seeded_ten_percent_of_train(tmp_path):
    spec = _folder_spec(tmp_path)
    train, val = task_dataset(spec, tmp_path, "train"), task_dataset(spec, tmp_path, "validation")
    assert (len(train), len(val)) == (27, 3)  # int(0.1 * 30) = 3 held out
    assert set(train.indices).isdisjoint(val.indices) and len(set(train.indices) | set(val.indices)) == 30
    again = task_dataset(spec, tmp_path, "validation")
    assert again.indices == val.indices  # seed 0: reproducible
    test = task_dataset(spec, tmp_path, "test", transform=lambda im: torch.tensor(im.size))
    assert len(test) == 6 and [test[i][1] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert torch.equal(test[0][0], torch.tensor([20, 20]))


class _Range(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i, 0


def test_mnist_split_matches_the_official_one(monkeypatch):
    """task_vectors/TALL-masks assert that MNISTVal's first training index is 36044 (60000 images, 5000 held out)."""
    monkeypatch.setattr(ds, "_build", lambda data, root, split, transform, spec: _Range(60000))
    train = task_dataset(task_spec("mnist"), "/nowhere", "train")
    val = task_dataset(task_spec("mnist"), "/nowhere", "validation")
    assert train.indices[0] == 36044 and len(val) == 5000


def test_list_filtered_folders_and_label_offsets(tmp_path):
    spec = _folder_spec(tmp_path, per_class=(4, 4))
    (tmp_path / "toy" / "train.txt").write_text("img0_1.png\nimg1_2.png\nimg1_3.png\n")
    spec["data"].update(lists=dict.fromkeys(("train", "validation", "test"), "toy/train.txt"), label_offset=-1)
    spec["data"]["splits"]["validation"] = "toy/train"  # a task with its own validation split
    train = task_dataset(spec, tmp_path, "train")
    assert len(train) == 3 and [train[i][1] for i in range(3)] == [-1, 0, 0]
    assert len(task_dataset(spec, tmp_path, "validation")) == 3


def test_missing_data_names_the_path_and_how_to_get_it(tmp_path):
    with pytest.raises(DataMissing, match=r"SUN397 \(test\) is missing under .*sun397/val.*task_vectors/issues/1"):
        task_dataset(task_spec("sun397"), tmp_path, "test")
    with pytest.raises(DataMissing, match=r"MNIST \(train\) is missing.*torchvision.datasets.MNIST\(root="):
        task_dataset(task_spec("mnist"), tmp_path, "train")
    with pytest.raises(DataMissing, match="no data_root given for task SVHN: pass data_root="):
        task_dataset(task_spec("svhn"), None, "test")
