"""`explorer merge --base HF_DIR --lora TASK=DIR ... --lora-out DIR`: adapters in, an adapter and its energy out."""
from __future__ import annotations

import pytest
import torch

from explorer.cli import main
from explorer.interop.lora import LoraAdapter
from explorer.weights import read_weights
from tests.interop.conftest import K0

pytest.importorskip("peft")


def test_cli_merges_adapters_and_writes_a_lora(root, llama, two, capsys):
    out = root / "cli-out"
    argv = ["merge", "--base", str(llama[0]), "--lora", f"a={two['a'][0]}", "--lora", f"b={two['b'][0]}",
            "--method", "task_arithmetic", "-p", "scale=1.0", "--device", "cpu", "--lora-out", str(out),
            "--lora-rank", "16"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "100.00% of the merged delta's energy kept" in printed
    assert "model.layers.1.self_attn.k_proj: rank 16, 100.00% kept" in printed
    torch.testing.assert_close(LoraAdapter(out)[K0], two["b"][1][K0], atol=1e-5, rtol=0)
    assert main(["merge", "--lora", f"a={two['a'][0]}", "--method", "average"]) == 2
    assert "--base is missing" in capsys.readouterr().err


def test_cli_writes_full_weights_and_refuses_what_lora_experts_cannot_do(root, llama, two, capsys):
    loras = ["--base", str(llama[0]), "--lora", f"a={two['a'][0]}", "--lora", f"b={two['b'][0]}"]
    out = root / "cli-merged.safetensors"
    assert main(["merge", *loras, "--method", "average", "--device", "cpu", "--out", str(out)]) == 0
    weights = read_weights(out)
    torch.testing.assert_close(weights[K0], llama[1][K0] + two["b"][1][K0] / 2, atol=1e-6, rtol=0)
    capsys.readouterr()
    assert main(["merge", *loras, "--method", "average", "--eval"]) == 2
    assert "LoRA experts have neither" in capsys.readouterr().err
    assert main(["merge", *loras, "--zoo", "demo", "--method", "average"]) == 2
    assert "not --zoo" in capsys.readouterr().err
