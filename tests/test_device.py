"""Device policy: explicit devices pass through, "auto" follows $EXPLORER_DEVICE when it is set."""
from __future__ import annotations

import pytest
import torch

from explorer.device import DEVICE_ENV, resolve_device


def test_auto_follows_the_environment(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "auto")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


def test_explicit_devices_ignore_the_environment(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "no-such-device")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "gpu")
    with pytest.raises(ValueError, match="EXPLORER_DEVICE='gpu': unknown device 'gpu'"):
        resolve_device("auto")
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV, "cuda")
        with pytest.raises(ValueError, match="EXPLORER_DEVICE='cuda': .*CUDA is not available"):
            resolve_device()
