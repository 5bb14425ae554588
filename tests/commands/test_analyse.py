"""`explorer analyse`: tables on stdout that match the library, and one self-contained HTML page."""
from __future__ import annotations

import re
import shutil
import struct

import pytest

import explorer as ex
from explorer import figure_catalog as F
from explorer.cli import main
from explorer.zoo import register_zoo
from tests.conftest import write_zoo_folder
from tests.tinyzoo import TinyZoo

register_zoo("tiny-analyse-test")(TinyZoo.known)


@pytest.fixture
def zoo_folder(tmp_path):
    folder, base, experts = write_zoo_folder(tmp_path)
    return folder, ex.task_vectors(base, experts, device="cpu")


def figures_in(page: str) -> int:
    return page.count("Plotly.newPlot(")


def test_cosine_and_signs_page_is_self_contained(zoo_folder, tmp_path, capsys):
    folder, tv = zoo_folder
    out = tmp_path / "page.html"
    assert main(["analyse", "--zoo", str(folder), "--what", "cosine,signs", "--device", "cpu",
                 "--html", str(out)]) == 0
    text = capsys.readouterr().out
    cos = ex.analysis.cosine(tv)
    assert f"{cos.loc['task0', 'task2']:.4f}" in text and "== Cosine similarity (whole model)" in text
    page = out.read_text()
    assert figures_in(page) == len(F.select(sections=("cosine", "signs")))  # every figure of both sections
    assert page.count("* plotly.js v") == 1  # the library, inlined once
    assert not re.search(r"<script[^>]+src=", page)  # nothing fetched from a CDN


def test_masks_and_layers_with_method_params(zoo_folder, tmp_path, capsys):
    folder, tv = zoo_folder
    out = tmp_path / "masks.html"
    assert main(["analyse", "--zoo", str(folder), "--what", "masks,layers", "--method", "ties", "-p",
                 "density=0.3", "--device", "cpu", "--html", str(out)]) == 0
    text = capsys.readouterr().out
    usage = ex.analysis.mask_usage(ex.merge(tv, "ties", density=0.3))
    assert "ties: how many tasks keep each entry" in text
    assert f"{usage.fraction[0]:.4f}" in text and "catastrophic" in text
    # every masks and layers figure, but the second coefficient plot (TIES has no coefficients of its own) and the
    # figures of other merges (Fisher's weight share, Concrete's learned mask)
    shown = [f for f in F.select(sections=("masks", "layers"))
             if f.name != "effective_coefficients" and f.name not in F.METHOD_SPECIFIC]
    assert figures_in(out.read_text()) == len(shown)


def test_accuracy_with_sweep_and_pair(tmp_path, capsys):
    out = tmp_path / "acc.html"
    assert main(["analyse", "--zoo", "tiny-analyse-test", "--what", "accuracy", "--lambdas", "0,1",
                 "--pair", "a,b", "--device", "cpu", "--html", str(out)]) == 0
    text = capsys.readouterr().out
    assert "task_arithmetic: accuracy per task" in text and "75.00" in text  # the experts' accuracy, in %
    shown = [f for f in F.select(sections=("accuracy",)) if f.name not in F.METHOD_SPECIFIC]
    assert figures_in(out.read_text()) == len(shown)  # bars, sweep, interpolation


@pytest.mark.parametrize("argv, message", [
    (["--what", "colours"], "choose from cosine, signs, masks, layers, spectra, accuracy"),
    (["--what", "masks", "-p", "density=0.1"], "name the method too"),
    (["--what", "masks", "--method", "ties", "-p", "density=7"], "'density'"),
    (["--what", "masks", "--method", "task_arithmetic"], "no masks"),
    (["--what", "accuracy"], "needs a zoo with heads"),
    (["--zoo", "tiny-analyse-test", "--what", "accuracy", "--lambdas", "0", "--pair", "a"], "exactly two tasks"),
    (["--zoo", "tiny-analyse-test", "--what", "accuracy", "--lambdas", "x"], "comma-separated numbers"),
])
def test_user_errors_are_one_line(zoo_folder, capsys, argv, message):
    folder, _ = zoo_folder
    assert main(["analyse", "--zoo", str(folder), "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("explorer analyse: error:") and message in err


def test_slug_names_png_files():
    from explorer.commands.analyse import slug

    assert slug("ties: mask overlap (Jaccard)") == "ties-mask-overlap-jaccard"
    assert slug("Sign conflicts (top 20% entries)") == "sign-conflicts-top-20-entries"


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="PNG export needs a Chromium (apt-get install chromium)")
def test_png_export_at_twice_the_layout_size(zoo_folder, tmp_path, capsys):
    folder, _ = zoo_folder
    assert main(["analyse", "--zoo", str(folder), "--what", "cosine", "--device", "cpu",
                 "--png", str(tmp_path / "png")]) == 0
    files = sorted((tmp_path / "png").iterdir())
    assert [f.name for f in files] == ["cosine-similarity-per-layer.png", "cosine-similarity-whole-model.png"]
    header = files[1].read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert (width, height) == (2 * (300 + 80 * 3), 2 * (190 + 70 * 3))  # the cosine map's own size, scale 2
