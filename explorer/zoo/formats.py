"""Checkpoint formats -> open_clip vision-tower state dicts (`conv1.weight`, `transformer.resblocks.0...`).

Two registries, one entry per format, each declared once at the end of this file:
  * file formats (`register_file_format`): how a file is recognised (suffix, first bytes) and read into tensors:
    "safetensors", and "torch" (`.pt`/`.pth`/`.bin` state dicts; pickled modules such as task_vectors'
    `ImageEncoder` only with `allow_pickle=True`, as unpickling runs code);
  * name formats (`register_name_format`): how a state dict's keys are recognised and map to open_clip names:
    "openclip" (image-encoder keys, maybe under `visual.` or `model.visual.`; keys outside the tower ignored) and
    "hf" (Hugging Face `CLIPVisionModel` / `CLIPModel`, with `vision_model.` or the bare `embeddings.*`,
    `encoder.*` keys transformers >= 5 writes: q/k/v joined into `in_proj`, `visual_projection.weight` -> `proj`).
"""
from __future__ import annotations

import pickle
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from ..registry import Registry
from ..weights import read_weights

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
_HF_PATCH = "embeddings.patch_embedding.weight"  # under `vision_model.`, or bare (transformers >= 5)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the expected architecture."""


# --- the two kinds of format ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FileFormat:
    """A kind of checkpoint file: its suffixes, a test of its first bytes, and `read(path, allow_pickle)`."""

    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[bytes], bool]
    read: Callable[[Path, bool], dict[str, Tensor]]


@dataclass(frozen=True)
class NameFormat:
    """A family of parameter names: its marks (a key ending, and a key that must sit under the same prefix or None)
    and its maps to and from open_clip names; `borrows_proj`: it may lack `proj` (the base supplies it)."""

    name: str
    marks: tuple[tuple[str, str | None], ...]
    example: str
    to_openclip: Callable[[Mapping[str, Tensor], str], dict[str, Tensor]]
    from_openclip: Callable[[Mapping[str, Tensor]], dict[str, Tensor]]
    borrows_proj: bool = False

    def prefix(self, key: str, sd: Mapping[str, Tensor]) -> str | None:
        """The prefix under which `key` marks this format in `sd`, or None."""
        for ending, companion in self.marks:
            if key.endswith(ending) and (companion is None or key[: -len(ending)] + companion in sd):
                return key[: -len(ending)]
        return None


FILE_FORMATS: Registry[FileFormat] = Registry("checkpoint file format")
NAME_FORMATS: Registry[NameFormat] = Registry("checkpoint name format")


def register_file_format(fmt: FileFormat) -> FileFormat:
    """Declare a file format (a name registered twice is an error); `read_checkpoint` looks it up."""
    return FILE_FORMATS.add(fmt.name, fmt)


def register_name_format(fmt: NameFormat) -> NameFormat:
    """Declare a name format (a name registered twice is an error); `detect_format` tries each in order."""
    return NAME_FORMATS.add(fmt.name, fmt)


def checkpoint_suffixes() -> tuple[str, ...]:
    """Every suffix a registered file format claims (what a folder of checkpoints is scanned for), in order."""
    return tuple(s for fmt in FILE_FORMATS.values() for s in fmt.suffixes)


def _known_files() -> str:
    return "; ".join(f"{f.name} ({', '.join(f.suffixes)})" for f in FILE_FORMATS.values())


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


def file_format(path: Path) -> FileFormat:
    """The registered file format of `path`: by its suffix, else by its first bytes, else an error naming both."""
    for fmt in FILE_FORMATS.values():
        if path.suffix in fmt.suffixes:
            return fmt
    with open(path, "rb") as f:
        head = f.read(16)
    for fmt in FILE_FORMATS.values():
        if fmt.sniff(head):
            return fmt
    raise CheckpointError(f"{path} is in no checkpoint format explorer reads (suffix {path.suffix or 'none'!r}, "
                          f"first bytes {head[:8]!r}); known formats: {_known_files()}. Save the image encoder's "
                          f"state dict with safetensors.torch.save_file (or torch.save) and name it <task>.safetensors")


def read_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> dict[str, Tensor]:
    """All tensors of a checkpoint file in a registered format (.safetensors / .pt / .bin, unwrapping
    {"state_dict": ...}, `module.` and pickled modules, the latter only with `allow_pickle=True`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return file_format(path).read(path, allow_pickle)


def _read_torch(path: Path, allow_pickle: bool) -> dict[str, Tensor]:
    """A torch.save file: a state dict, {"state_dict": ...}, or (with `allow_pickle`) a pickled module."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise CheckpointError(pickle_refusal(path)) from err
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_LENIENT)
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({err}); known formats: "
                              f"{_known_files()}. Re-save it with torch.save(state_dict) or as safetensors") from err
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
    """(name format, prefix) of a state dict: ("openclip", "model.visual.") or ("hf", "") and so on."""
    for key in sorted(sd, key=len):
        for fmt in NAME_FORMATS.values():
            if (prefix := fmt.prefix(key, sd)) is not None:
                return fmt.name, prefix
    sample = sorted(sd)[:12]
    known = "; ".join(f"{f.name}: {f.example}" for f in NAME_FORMATS.values())
    raise CheckpointError(
        f"no known checkpoint format matched ({len(sd)} keys, e.g. {sample}); known formats: {known}. Give the "
        f"CLIP image encoder's checkpoint (explorer zoo convert writes open_clip names from any of these)")


def hf_to_openclip(sd: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """HF CLIP vision keys (under `prefix`, then `vision_model.` when the checkpoint has it) -> open_clip
    vision-tower keys; q/k/v joined into `in_proj`."""
    inner, out, qkv, unmatched = prefix + "vision_model.", {}, {}, []
    if inner + _HF_PATCH not in sd:  # transformers >= 5 CLIPVisionModel: the vision keys are not nested
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
                fill: Mapping[str, Tensor] | None = None, source: str = "checkpoint",
                keep_unknown: bool = False) -> dict[str, Tensor]:
    """Detect the name format of `sd` and return open_clip vision-tower tensors. With `expected` (name -> shape),
    raise one error listing the missing, unmatched and mis-shaped keys; `fill` supplies `proj` to formats that
    may lack it (FusionBench keeps the pretrained projection); `keep_unknown` returns names of no known format
    as they are (a folder zoo merges any state dicts) instead of raising."""
    try:
        name, prefix = detect_format(sd)
        fmt = NAME_FORMATS.get(name)
        out = fmt.to_openclip(sd, prefix)
    except CheckpointError as err:
        if keep_unknown and str(err).startswith("no known checkpoint format"):
            return dict(sd)
        raise CheckpointError(f"{source}: {err}") from None
    if fmt.borrows_proj and "proj" not in out and fill is not None and "proj" in fill:
        out["proj"] = fill["proj"]
    if expected is not None:
        check_keys(out, expected, f"{source} ({name} format, prefix {prefix!r})")
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


# --- the formats ---------------------------------------------------------------------------------------
register_file_format(FileFormat("safetensors", (".safetensors",), lambda head: head[8:9] == b"{",
                                lambda path, allow_pickle: read_weights(path)))
register_file_format(FileFormat("torch", (".pt", ".pth", ".bin"),  # a zip archive, or a legacy pickle
                                lambda head: head.startswith((b"PK\x03\x04", b"\x80")), _read_torch))
register_name_format(NameFormat(
    "openclip", (("conv1.weight", "transformer.resblocks.0.ln_1.weight"),),
    "open_clip vision keys such as 'conv1.weight' (optionally under 'visual.' or 'model.visual.')",
    lambda sd, prefix: {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, dict))
register_name_format(NameFormat(
    "hf", (("vision_model." + _HF_PATCH, None),
           (_HF_PATCH, "encoder.layers.0.layer_norm1.weight")),
    f"Hugging Face CLIP keys such as 'vision_model.{_HF_PATCH}' (or '{_HF_PATCH}', as transformers >= 5 saves "
    f"a CLIPVisionModel)", hf_to_openclip, openclip_to_hf, borrows_proj=True))
