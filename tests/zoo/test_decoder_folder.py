"""Decoder zoos (`explorer.zoo.decoder`): folders of tiny random causal LMs written by transformers' save_pretrained
(Llama sharded, Qwen2, GPT-2 with tied embeddings) open as zoos whose task vectors are the true deltas, merge into
model folders that from_pretrained reloads with the hand-merged logits, stream with the same bits, and every bad
input gives its one error."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import explorer as ex  # noqa: E402
from explorer.cli import main  # noqa: E402
from explorer.runs import load_run, save_folder  # noqa: E402
from explorer.weights import read_weights  # noqa: E402
from explorer.zoo.decoder import DecoderZoo, is_decoder_folder  # noqa: E402

TASKS = ("math", "code")
SIZES = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "vocab_size": 64, "max_position_embeddings": 32}
IDS = torch.tensor([[1, 5, 9, 13, 2, 63, 40, 7]])  # a fixed input


def config(kind: str, **changes):
    if kind == "gpt2":
        return transformers.GPT2Config(**{"n_embd": 16, "n_layer": 2, "n_head": 2, "vocab_size": 64,
                                          "n_positions": 32, "bos_token_id": 0, "eos_token_id": 0, **changes})
    return {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[kind](**{**SIZES, **changes})


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(64)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0")


def save(model, folder, shard: str | None = None) -> dict[str, torch.Tensor]:
    """save_pretrained `model` (with the tokenizer) into `folder`; its state dict (tied tensors once each)."""
    model.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    tokenizer().save_pretrained(folder)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fine_tuned(model, seed: int):
    """A copy of `model` with every float parameter moved by seeded noise (tied ones move together)."""
    gen = torch.Generator().manual_seed(seed)
    other = type(model)(model.config)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return other


def build_zoo(root, kind: str, shard: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """base/ and one folder per task; the base (and the first expert) in shards of `shard`. Returns the state dicts."""
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_config(config(kind)).eval()
    sds = {"base": save(base, root / "base", shard)}
    for i, task in enumerate(TASKS):
        sds[task] = save(fine_tuned(base, i + 1), root / task, shard if i == 0 else None)
    return sds


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    """{kind: (folder, state dicts)}: Llama sharded at 20KB, Qwen2 in one file, GPT-2 with tied embeddings."""
    out = {}
    for kind, shard in (("llama", "20KB"), ("qwen2", None), ("gpt2", None)):
        root = tmp_path_factory.mktemp(kind)
        out[kind] = (root, build_zoo(root, kind, shard))
    return out


def logits(folder) -> torch.Tensor:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(IDS).logits


def logits_of(folder, state_dict) -> torch.Tensor:
    """Logits of the base's architecture carrying `state_dict` (strict: every parameter given, tied ones once)."""
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(folder)).eval()
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    with torch.no_grad():
        return model(IDS).logits


def test_a_decoder_folder_opens_with_the_keys_as_written(zoos):
    root, sds = zoos["llama"]
    assert list((root / "base").glob("model-0000*-of-0000*.safetensors")) and is_decoder_folder(root)
    zoo = ex.load_zoo(root)
    assert isinstance(zoo, DecoderZoo) and zoo.tasks == sorted(TASKS) and zoo.source == str(root.resolve())
    assert set(zoo.base_state_dict()) == set(sds["base"])
    assert "model.layers.1.self_attn.q_proj.weight" in zoo.expert_state_dict("math")
    built = zoo.build_model()
    assert type(built).__name__ == "LlamaForCausalLM" and set(built.state_dict()) == set(sds["base"])
    assert len(zoo.evaluation_problems()) == 1
    with pytest.raises(ex.zoo.base.EvaluationUnavailable, match="exact-match evaluation by greedy generation"):
        zoo.check_evaluable()


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_task_vectors_are_the_true_deltas(zoos, kind):
    root, sds = zoos[kind]
    tv = ex.task_vectors(ex.load_zoo(root), device="cpu")
    tied = kind == "gpt2"
    assert ("lm_head.weight" in tv) is not tied  # tied: the embedding counts once
    assert set(tv.keys()) == set(sds["base"]) - ({"lm_head.weight"} if tied else set())
    for name in tv.keys():
        for i, task in enumerate(tv.tasks):
            assert torch.equal(tv[name][i], sds[task][name] - sds["base"][name]), (task, name)
    assert tv.numel() == sum(p.numel() for n, p in sds["base"].items() if n in tv)
    assert tv.layers() == ["embed", "block.0", "block.1", "post"] and tv.num_blocks == 2


def test_the_spectral_methods_find_a_llama_blocks_projections(zoos):
    from explorer.methods.spectral import is_linear_weight

    tv = ex.task_vectors(ex.load_zoo(zoos["llama"][0]), device="cpu")
    found = sorted(n for n in tv.keys() if is_linear_weight(n))
    assert len(found) == 2 * 7 and "model.layers.1.mlp.gate_proj.weight" in found  # q, k, v, o, gate, up, down
    assert not any(is_linear_weight(n) for n in ("lm_head.weight", "model.embed_tokens.weight"))


def test_a_task_arithmetic_folder_reloads_with_the_hand_merged_logits(zoos, tmp_path):
    root, sds = zoos["llama"]
    zoo = ex.load_zoo(root)
    result = ex.merge(ex.task_vectors(zoo, device="cpu"), "task_arithmetic", scale=0.3)
    save_folder(result, tmp_path / "merged", zoo)
    by_hand = {n: b + 0.3 * sum(sds[t][n] - b for t in TASKS) for n, b in sds["base"].items()}
    assert torch.allclose(logits(tmp_path / "merged"), logits_of(root / "base", by_hand), atol=1e-5)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json", "run.json"):
        assert (tmp_path / "merged" / name).is_file(), name
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "merged")("t3 t9")["input_ids"] == [3, 9]
    assert load_run(tmp_path / "merged" / "run.json").weights.keys() == {"model.safetensors"}


@pytest.mark.parametrize("stream", ["off", "on"])
def test_the_cli_writes_a_ties_folder_that_reloads_tied(zoos, tmp_path, stream, capsys):
    root, _ = zoos["gpt2"]
    out = tmp_path / "ties"
    assert main(["merge", "--zoo", str(root), "--method", "ties", "-p", "density=0.2", "--out", str(out),
                 "--stream", stream]) == 0
    want = ex.merge(ex.task_vectors(ex.load_zoo(root), device="cpu"), "ties", density=0.2).state_dict()
    written = read_weights(out / "model.safetensors")
    assert "lm_head.weight" not in written and written.keys() == want.keys()
    assert all(torch.equal(written[n], want[n]) for n in want)
    assert torch.allclose(logits(out), logits_of(root / "base", want), atol=1e-6)
    record = load_run(out / "run.json")
    assert record.merge_path == ("streamed" if stream == "on" else "in-memory") and record.params["density"] == 0.2
    assert set(record.inputs) == {"base/model.safetensors", "code/model.safetensors", "math/model.safetensors"}
    if stream == "on":
        assert record.peak_rss_mib > 0 and "peak memory" in capsys.readouterr().out


def test_a_streamed_merge_of_shards_equals_the_in_memory_one(zoos, tmp_path):
    root, _ = zoos["llama"]
    for stream in ("on", "off"):
        assert main(["merge", "--zoo", str(root), "--method", "ties", "-p", "density=0.2", "--out",
                     str(tmp_path / stream), "--stream", stream]) == 0
    on, off = read_weights(tmp_path / "on" / "model.safetensors"), read_weights(tmp_path / "off" / "model.safetensors")
    assert on.keys() == off.keys() and all(torch.equal(on[n], off[n]) for n in on)
    assert torch.equal(logits(tmp_path / "on"), logits(tmp_path / "off"))
    assert len(load_run(tmp_path / "on" / "run.json").inputs) == 2 * 2 + 1  # base and math in 2 shards, code in 1


def test_the_cli_analyses_a_decoder_zoo_and_says_it_cannot_evaluate(zoos, capsys):
    root, _ = zoos["qwen2"]
    assert main(["analyse", "--zoo", str(root), "--what", "signs"]) == 0
    layers = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()]
    assert layers == ["embed", "block.0", "block.1", "post"]  # model.embed_tokens, model.layers.N, norm + lm_head
    assert main(["merge", "--zoo", str(root), "--method", "task_arithmetic", "--eval"]) == 2
    assert "exact-match evaluation by greedy generation" in capsys.readouterr().err
    assert main(["merge", "--zoo", str(root), "--method", "average", "--out", "merged.safetensors"]) == 2
    assert "give a directory" in capsys.readouterr().err


@pytest.fixture
def llama(zoos, tmp_path):
    """A copy of the Llama zoo to break."""
    shutil.copytree(zoos["llama"][0], tmp_path / "zoo")
    return tmp_path / "zoo"


def replace_expert(root, model) -> None:
    shutil.rmtree(root / "code")
    save(model, root / "code")


def test_an_expert_of_another_architecture_is_refused(llama):
    replace_expert(llama, transformers.AutoModelForCausalLM.from_config(config("qwen2")))
    with pytest.raises(ValueError, match=r"expert 'code' is not the base's architecture: code/config.json has "
                                         r"model_type 'qwen2', base/config.json 'llama'"):
        ex.load_zoo(llama)


def test_an_expert_of_other_shapes_is_refused(llama):
    replace_expert(llama, transformers.AutoModelForCausalLM.from_config(config("llama", intermediate_size=48)))
    with pytest.raises(ValueError, match=r"expert 'code' .* does not match the base's tensors: "
                                         r"model.layers.0.mlp.down_proj.weight: \(16, 48\) vs the base's \(16, 32\)"):
        ex.load_zoo(llama)


def test_an_expert_with_added_tokens_is_refused(llama):
    replace_expert(llama, transformers.AutoModelForCausalLM.from_config(config("llama", vocab_size=72)))
    with pytest.raises(ValueError, match=r"expert 'code' has another vocabulary: lm_head.weight has 72 rows, the "
                                         r"base's 64 .*Added tokens are refused.*resize_token_embeddings\(64\)"):
        ex.load_zoo(llama)


def test_an_expert_untied_from_a_tied_base_is_refused(zoos, tmp_path):
    shutil.copytree(zoos["gpt2"][0], tmp_path / "zoo")
    path = tmp_path / "zoo" / "code" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "tie_word_embeddings": False}))
    with pytest.raises(ValueError, match="code/config.json has tie_word_embeddings False, base/config.json True"):
        ex.load_zoo(tmp_path / "zoo")


def test_a_tied_head_stored_anyway_is_counted_once(zoos, tmp_path):
    from safetensors.torch import save_file

    shutil.copytree(zoos["gpt2"][0], tmp_path / "zoo")
    file = tmp_path / "zoo" / "math" / "model.safetensors"
    sd = read_weights(file)
    save_file({**sd, "lm_head.weight": sd["transformer.wte.weight"].clone()}, file, metadata={"format": "pt"})
    tv = ex.task_vectors(ex.load_zoo(tmp_path / "zoo"), device="cpu")
    assert "lm_head.weight" not in tv and "transformer.wte.weight" in tv


def test_a_missing_config_is_named(llama):
    (llama / "code" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"code/config.json' not found: .*save_pretrained"):
        ex.load_zoo(llama)


def test_a_missing_weights_file_is_named(llama):
    (llama / "code" / "model.safetensors").unlink()
    torch.save({}, llama / "code" / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"code' has no model.safetensors and no model.safetensors.index.json "
                                                r"\(it holds pytorch_model.bin: only safetensors are read\)"):
        ex.load_zoo(llama)


def test_an_index_naming_a_missing_shard_is_named(llama):
    (llama / "base" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"base/model.safetensors.index.json' names shard\(s\) that are not "
                                                r"in the folder: \['model-00002-of-00002.safetensors'\]"):
        ex.load_zoo(llama)


def test_an_index_placing_a_tensor_in_the_wrong_shard_is_named(llama):
    index = llama / "base" / "model.safetensors.index.json"
    spec = json.loads(index.read_text())
    first, second = sorted(set(spec["weight_map"].values()))
    name = next(n for n, f in spec["weight_map"].items() if f == first)
    spec["weight_map"][name] = second
    index.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=rf"shards that do not hold them: \['{name} \(.*{second}\)'\]"):
        ex.load_zoo(llama)


def test_an_hf_clip_folder_stays_a_folder_of_checkpoints(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text('{"model_type": "clip_vision_model"}')
    assert not is_decoder_folder(tmp_path)
