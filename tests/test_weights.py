"""Weight files: safetensors round trip and clear errors for missing or unreadable files."""
from __future__ import annotations

import pytest
import torch

from explorer.weights import read_weights, write_weights


def test_safetensors_and_pt_round_trip(tmp_path):
    sd = {"a": torch.arange(6.0).reshape(2, 3).t(), "b": torch.tensor(3)}  # a non-contiguous view
    write_weights(sd, tmp_path / "w.safetensors")
    back = read_weights(tmp_path / "w.safetensors")
    assert torch.equal(back["a"], sd["a"]) and back["b"].item() == 3
    torch.save(sd, tmp_path / "w.pt")
    assert torch.equal(read_weights(tmp_path / "w.pt")["a"], sd["a"])


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_weights(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_weights(tmp_path / "junk.safetensors")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(ValueError, match="explorer zoo convert --allow-pickle"):
        read_weights(tmp_path / "module.pt")
