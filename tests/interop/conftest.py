"""Tiny Hugging Face bases (Llama, GPT-2) saved on the fly, and PEFT LoRA adapters of them with random factors.

transformers and peft (the `test` extra) are imported inside, so a test module can skip without them."""
from __future__ import annotations

import pytest
import torch

from explorer.interop.lora import read_base_folder

Q0, V0, K0 = (f"model.layers.0.self_attn.{m}.weight" for m in ("q_proj", "v_proj", "k_proj"))


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lora")


def save_base(root, name: str, model: torch.nn.Module):
    """`model` saved as a Hugging Face folder: (folder, its state dict)."""
    model.save_pretrained(root / name)
    return root / name, read_base_folder(root / name)


@pytest.fixture(scope="module")
def llama(root):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=64)
    return save_base(root, "llama", LlamaForCausalLM(config))


@pytest.fixture(scope="module")
def gpt2(root):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return save_base(root, "gpt2", GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=64,
                                                               n_positions=32, bos_token_id=0, eos_token_id=0)))


def adapter(root, base, name: str, seed: int = 1, cls=None, **lora):
    """A PEFT adapter saved in root/name, its zero-initialised factors made random: (folder, true delta), the true
    delta being PeftModel.merge_and_unload()'s weights minus the base's, where they differ."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    folder, base_sd, cls = *base, cls or LlamaForCausalLM
    model = get_peft_model(cls.from_pretrained(folder), LoraConfig(**{"r": 4, "lora_alpha": 8, **lora}))
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "lora_embedding" in n or "modules_to_save" in n:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(root / name)
    merged = model.merge_and_unload().state_dict()
    delta = {k: merged[k] - v for k, v in base_sd.items() if k in merged and not torch.equal(merged[k], v)}
    return root / name, delta


@pytest.fixture(scope="module")
def two(root, llama):
    """Adapters a (q, v) and b (q, k) of the llama base: {task: (folder, true delta)}."""
    return {"a": adapter(root, llama, "llama-two-a", 1, target_modules=["q_proj", "v_proj"]),
            "b": adapter(root, llama, "llama-two-b", 2, target_modules=["q_proj", "k_proj"])}
