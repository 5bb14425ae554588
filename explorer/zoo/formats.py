"""Checkpoint formats -> open_clip vision-tower state dicts (`conv1.weight`, `transformer.resblocks.0...`).

Families handled, detected from the keys:
  * "openclip": open_clip / task_vectors-style image-encoder state dicts; keys may sit under a prefix such
    as `visual.` or `model.visual.`, and keys outside the vision tower (text leftovers) are ignored;
  * "hf": Hugging Face `CLIPVisionModel` / `CLIPModel` (`vision_model.*`, or the bare `embeddings.*`, `encoder.*`
    keys that transformers >= 5 writes for `CLIPVisionModel`): q/k/v are joined into `in_proj`,
    `visual_projection.weight` becomes `proj` (transposed), taken from the base when absent.
Pickled modules (task_vectors `ImageEncoder` files) load only with `allow_pickle=True`: unpickling runs code.
"""
from __future__ import annotations

import pickle
import re
import types
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from ..weights import read_weights

FORMATS = ("openclip", "hf")
_OC_MARK = "conv1.weight"
_HF_MARK = "vision_model.embeddings.patch_embedding.weight"
_HF_INNER_MARK = "embeddings.patch_embedding.weight"  # transformers >= 5 CLIPVisionModel: no `vision_model.`
_NAMES = [  # (HF name under `vision_model.`, open_clip name); {i} = block index, {p} = weight or bias
    ("embeddings.class_embedding", "class_embedding"),
    ("embeddings.patch_embedding.weight", "conv1.weight"),
    ("embeddings.position_embedding.weight", "positional_embedding"),
    ("pre_layrnorm.{p}", "ln_pre.{p}"),  # sic: HF's spelling
    ("post_layernorm.{p}", "ln_post.{p}"),
    ("encoder.layers.{i}.self_attn.out_proj.{p}", "transformer.resblocks.{i}.attn.out_proj.{p}"),
    ("encoder.layers.{i}.layer_norm1.{p}", "transformer.resblocks.{i}.ln_1.{p}"),
    ("encoder.layers.{i}.layer_norm2.{p}", "transformer.resblocks.{i}.ln_2.{p}"),
    ("encoder.layers.{i}.mlp.fc1.{p}", "transformer.resblocks.{i}.mlp.c_fc.{p}"),
    ("encoder.layers.{i}.mlp.fc2.{p}", "transformer.resblocks.{i}.mlp.c_proj.{p}"),
]


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(pattern)


_PATTERNS = [(_compile(hf), _compile(oc), hf, oc) for hf, oc in _NAMES]


def _rename(key: str, to_openclip: bool) -> str | None:
    """The other family's name of `key`, or None when the table has no entry for it."""
    for hf_re, oc_re, hf, oc in _PATTERNS:
        m = (hf_re if to_openclip else oc_re).fullmatch(key)
        if m:
            return (oc if to_openclip else hf).format(**m.groupdict())
    return None


_QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")
_IN_PROJ = re.compile(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)")
_HF_DROPPED = ("embeddings.position_ids",)  # an integer buffer, not a parameter


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the expected architecture."""


# --- reading files ---------------------------------------------------------------------------------
class _LenientUnpickler(pickle.Unpickler):
    """Unpickler that stands in a plain nn.Module for classes whose code is not importable here
    (such as task_vectors' `src.modeling.ImageEncoder`): only the tensors are wanted."""

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (nn.Module,), {"__module__": module})


_LENIENT = types.ModuleType("explorer_lenient_pickle")
_LENIENT.Unpickler = _LenientUnpickler
_LENIENT.load = pickle.load


def pickle_refusal(path: str | Path) -> str:
    return (f"{path} is a pickled Python object (such as a task_vectors ImageEncoder), and unpickling runs code "
            f"from the file. If you trust it, opt in with allow_pickle=True (CLI: --allow-pickle), or convert it "
            f"once: explorer zoo convert {path} OUT.safetensors --allow-pickle")


def read_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> dict[str, Tensor]:
    """All tensors of a .safetensors / .pt / .bin file, unwrapping {"state_dict": ...}, `module.` and
    pickled modules (the latter only with `allow_pickle=True`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return read_weights(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise CheckpointError(pickle_refusal(path)) from err
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_LENIENT)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or a module")
    sd = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


# --- detection and conversion ----------------------------------------------------------------------
def detect_format(sd: Mapping[str, Tensor]) -> tuple[str, str]:
    """(format, prefix) of a state dict: ("openclip", "model.visual.") or ("hf", "") and so on."""
    for key in sorted(sd, key=len):
        if key.endswith(_HF_MARK):
            return "hf", key[: -len(_HF_MARK)]
        if key.endswith(_HF_INNER_MARK) and key[: -len(_HF_INNER_MARK)] + "encoder.layers.0.layer_norm1.weight" in sd:
            return "hf", key[: -len(_HF_INNER_MARK)]  # the vision keys sit right under the prefix
        if key.endswith(_OC_MARK) and key[: -len(_OC_MARK)] + "transformer.resblocks.0.ln_1.weight" in sd:
            return "openclip", key[: -len(_OC_MARK)]
    sample = sorted(sd)[:12]
    raise CheckpointError(
        f"no known checkpoint format matched ({len(sd)} keys, e.g. {sample}); expected open_clip vision keys "
        f"such as 'conv1.weight' (optionally under 'visual.' or 'model.visual.') or Hugging Face CLIP keys such as "
        f"'{_HF_MARK}' (or '{_HF_INNER_MARK}', as transformers >= 5 saves a CLIPVisionModel)")


def hf_to_openclip(sd: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """HF CLIP vision keys (under `prefix`, then `vision_model.` when the checkpoint has it) -> open_clip
    vision-tower keys; q/k/v joined into `in_proj`."""
    inner, out, qkv, unmatched = prefix + "vision_model.", {}, {}, []
    if inner + _HF_INNER_MARK not in sd:  # transformers >= 5 CLIPVisionModel: the vision keys are not nested
        inner = prefix
    for key, value in sd.items():
        if not key.startswith(inner) or key[len(inner):] in _HF_DROPPED or key == prefix + "visual_projection.weight":
            continue
        rel = key[len(inner):]
        if m := _QKV.fullmatch(rel):
            qkv.setdefault((int(m.group(1)), m.group(3)), {})[m.group(2)] = value
        elif (name := _rename(rel, to_openclip=True)) is not None:
            out[name] = value
        else:
            unmatched.append(key)
    if unmatched:
        raise CheckpointError(f"{len(unmatched)} Hugging Face key(s) have no open_clip counterpart: {unmatched[:12]}")
    for (block, kind), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"block {block} has only the {sorted(parts)} projections of q/k/v ({kind})")
        out[f"transformer.resblocks.{block}.attn.in_proj_{kind}"] = torch.cat([parts[c] for c in "qkv"])
    if prefix + "visual_projection.weight" in sd:
        out["proj"] = sd[prefix + "visual_projection.weight"].t().contiguous()
    return out


def openclip_to_hf(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """open_clip vision-tower keys -> HF `CLIPModel` vision keys: in_proj split back into q/k/v,
    `proj` -> `visual_projection.weight` (transposed)."""
    out, unmatched = {}, []
    for key, value in sd.items():
        if key == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif m := _IN_PROJ.fullmatch(key):
            for c, part in zip("qkv", value.chunk(3, dim=0)):
                out[f"vision_model.encoder.layers.{m.group(1)}.self_attn.{c}_proj.{m.group(2)}"] = part.clone()
        elif (name := _rename(key, to_openclip=False)) is not None:
            out["vision_model." + name] = value
        else:
            unmatched.append(key)
    if unmatched:
        raise CheckpointError(f"{len(unmatched)} open_clip key(s) have no Hugging Face counterpart: {unmatched[:12]}")
    return out


def to_openclip(sd: Mapping[str, Tensor], *, expected: Mapping[str, torch.Size] | None = None,
                fill: Mapping[str, Tensor] | None = None, source: str = "checkpoint") -> dict[str, Tensor]:
    """Detect the format of `sd` and return open_clip vision-tower tensors. With `expected` (name -> shape),
    raise one error listing the missing, unmatched and mis-shaped keys; `fill` supplies `proj` to HF
    vision-only checkpoints (FusionBench keeps the pretrained projection)."""
    try:
        fmt, prefix = detect_format(sd)
        out = hf_to_openclip(sd, prefix) if fmt == "hf" else {
            k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    if fmt == "hf" and "proj" not in out and fill is not None and "proj" in fill:
        out["proj"] = fill["proj"]
    if expected is not None:
        check_keys(out, expected, f"{source} ({fmt} format, prefix {prefix!r})")
    return out


def check_keys(sd: Mapping[str, Tensor], expected: Mapping[str, torch.Size], source: str) -> None:
    """Raise a CheckpointError naming every missing, unmatched and mis-shaped key."""
    missing = sorted(set(expected) - set(sd))
    unmatched = sorted(set(sd) - set(expected))
    shapes = [f"{k}: {tuple(sd[k].shape)} != {tuple(expected[k])}" for k in sorted(expected)
              if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    problems = [f"{len(missing)} missing key(s): {missing[:12]}" if missing else "",
                f"{len(unmatched)} unmatched key(s): {unmatched[:12]}" if unmatched else "",
                f"{len(shapes)} shape mismatch(es): {shapes[:12]}" if shapes else ""]
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointError(f"{source} does not match the architecture: " + "; ".join(problems)
                              + ". Check the `arch` (e.g. ViT-B-32 vs ViT-B-16) and that the file is a CLIP "
                              "image encoder.")

