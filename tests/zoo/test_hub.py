"""Hub sources: parsing, the local cache, and a fast, explicit failure when the hub cannot be reached."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

import explorer as ex
from explorer.zoo.hub import WEIGHT_FILES, HubFile, HubUnavailable, parse_source, resolve_sources


def test_parse_source_tells_local_paths_from_hub_ids(tmp_path):
    local = tmp_path / "owner" / "repo.pt"
    local.parent.mkdir()
    local.write_bytes(b"")
    assert parse_source(str(local)) == local
    assert parse_source("tanganke/clip-vit-base-patch32_svhn") == HubFile("tanganke/clip-vit-base-patch32_svhn")
    assert parse_source("hf-hub:nik-dim/tall_masks/single_task/ViT-B-32/MNISTVal/nonlinear_finetuned.pt@v1") == \
        HubFile("nik-dim/tall_masks", ("single_task/ViT-B-32/MNISTVal/nonlinear_finetuned.pt",), "v1")
    assert parse_source("./relative/file.pt") == Path("relative/file.pt")
    assert HubFile("a/b").candidates() == WEIGHT_FILES
    with pytest.raises(ValueError, match="bad hub id"):
        parse_source("hf-hub:justone")


def _fake_cache(root: Path, repo: str, filename: str) -> Path:
    """The Hugging Face cache layout for one file: models--owner--repo/{refs/main, snapshots/<commit>/file}."""
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit / filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    return path


def test_cached_hub_files_resolve_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hit = _fake_cache(tmp_path, "owner/repo", "pytorch_model.bin")
    paths = resolve_sources({"expert a": "hf-hub:owner/repo"}, cache_dir=str(tmp_path))
    assert paths == {"expert a": hit}  # the first candidate name the cache holds


@pytest.fixture
def silent_endpoint():
    """An endpoint that accepts connections and never answers (a local socket that listens, never accepts): what a
    dead network looks like. An unroutable address is no stand-in, as some networks' gateways answer it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("endpoint, offline", [("https://huggingface.co", "1"),   # HF_HUB_OFFLINE set
                                               ("http://127.0.0.1:9", "0"),      # connection refused
                                               ("silent", "0")])                 # no answer at all
def test_offline_hub_ids_fail_fast_naming_every_missing_file(tmp_path, monkeypatch, endpoint, offline,
                                                             silent_endpoint):
    endpoint = silent_endpoint if endpoint == "silent" else endpoint
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    start = time.monotonic()
    with pytest.raises(HubUnavailable) as err:
        resolve_sources({"base": "hf-hub:openai/clip-vit-base-patch32",
                         "expert svhn": "hf-hub:tanganke/clip-vit-base-patch32_svhn",
                         "expert mnist": "nik-dim/tall_masks/single_task/ViT-B-32/MNISTVal/nonlinear_finetuned.pt"},
                        cache_dir=str(tmp_path))
    assert time.monotonic() - start < 30
    msg = str(err.value)
    assert "3 file(s) are not in the local cache" in msg
    assert "expert svhn: tanganke/clip-vit-base-patch32_svhn (model.safetensors or" in msg
    assert "expert mnist: nik-dim/tall_masks (single_task/ViT-B-32/MNISTVal/nonlinear_finetuned.pt)" in msg
    assert "hf download openai/clip-vit-base-patch32 model.safetensors" in msg and "pass local files" in msg


def test_named_zoo_by_hub_id_fails_within_30_s_offline(tmp_path, monkeypatch):
    """The acceptance check: a named zoo of hub ids, no network, an empty cache -> a clear error, fast."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(HubUnavailable, match=r"9 file\(s\) are not in the local cache") as err:
        ex.load_zoo("clip-vit-b32-ta8", family="fusionbench")
    assert "text" not in str(err.value).split(":\n")[1].split("To provide")[0]  # the text tower loads on evaluation
    assert time.monotonic() - start < 30
