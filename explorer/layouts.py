"""Where a parameter sits in its model: layer group (embed, block.N, post), block index and kind, by architecture.

open_clip vision towers name blocks `transformer.resblocks.N.`; decoder LMs as Hugging Face writes them name them
`model.layers.N.` (Llama, Qwen2, Gemma, Mistral) or `transformer.h.N.` (GPT-2). Analyses and layer-wise methods
read only the (layer, block, kind) this module gives, never the names themselves.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_BLOCK_RE = re.compile(r"(?:^|\.)resblocks\.(\d+)\.")
_POST_NAMES = ("ln_post", "proj")
_EMBED_NAMES = ("conv1", "class_embedding", "positional_embedding", "ln_pre")


@dataclass(frozen=True)
class ParamInfo:
    """Where a parameter sits: its layer group, block index (None outside the blocks) and kind."""

    layer: str
    block: int | None
    kind: str


@dataclass(frozen=True)
class DecoderLayout:
    """One decoder family's names: the blocks' prefix (with the index), embeddings and what follows the blocks."""

    block: re.Pattern
    embed: tuple[str, ...]
    post: tuple[str, ...]


DECODERS = (  # Hugging Face causal LMs, keys as save_pretrained writes them
    DecoderLayout(re.compile(r"^model\.layers\.(\d+)\."), ("model.embed_tokens.",), ("model.norm.", "lm_head.")),
    DecoderLayout(re.compile(r"^transformer\.h\.(\d+)\."), ("transformer.wte.", "transformer.wpe."),
                  ("transformer.ln_f.", "lm_head.")),
)


def _leaf(name: str) -> str:
    """The parameter name relative to the vision tower (drops `visual.`/`model.` prefixes)."""
    for prefix in ("model.visual.", "visual.", "model."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def param_info(name: str) -> ParamInfo:
    """Classify a parameter name (an open_clip vision tower's, or a Hugging Face decoder's) into (layer, block,
    kind)."""
    decoder = decoder_info(name)
    return decoder if decoder is not None else _clip_info(name)


def decoder_info(name: str) -> ParamInfo | None:
    """(layer, block, kind) of a decoder LM's parameter (`model.layers.3.mlp.up_proj.weight`: block.3, mlp), or
    None when `name` is of no decoder family in DECODERS."""
    for layout in DECODERS:
        match = layout.block.match(name)
        if match:
            block = int(match.group(1))
            rest = name[match.end():]
            kind = ("attn" if re.match(r"(self_)?attn\.", rest) else "mlp" if rest.startswith("mlp.")
                    else "ln" if "norm" in rest or rest.startswith("ln_") else "other")
            return ParamInfo(f"block.{block}", block, kind)
        if name.startswith(layout.embed):
            return ParamInfo("embed", None, "embedding")
        if name.startswith(layout.post):
            return ParamInfo("post", None, "proj" if name.startswith("lm_head.") else "ln")
    return None


def _clip_info(name: str) -> ParamInfo:
    """Classify an open_clip vision-tower parameter name into (layer, block, kind)."""
    leaf = _leaf(name)
    match = _BLOCK_RE.search(leaf)
    block = int(match.group(1)) if match else None
    if ".attn." in leaf:
        kind = "attn"
    elif ".mlp." in leaf:
        kind = "mlp"
    elif re.search(r"(^|\.)ln_", leaf) or "layer_norm" in leaf or "layernorm" in leaf:
        kind = "ln"
    elif leaf.split(".")[0] in ("conv1", "class_embedding", "positional_embedding"):
        kind = "embedding"
    elif leaf == "proj" or leaf.endswith(".proj"):
        kind = "proj"
    else:
        kind = "other"
    if block is not None:
        layer = f"block.{block}"
    elif leaf.split(".")[0] in _POST_NAMES:
        layer = "post"
    elif leaf.split(".")[0] in _EMBED_NAMES:
        layer = "embed"
    else:
        layer = "other"
    return ParamInfo(layer=layer, block=block, kind=kind)


def layer_order(layer: str) -> tuple[int, int]:
    """Sort key of a layer group in model order: embed, block.0 ... block.{L-1}, post, other."""
    if layer == "embed":
        return (0, 0)
    if layer.startswith("block."):
        return (1, int(layer.split(".")[1]))
    return (2, 0) if layer == "post" else (3, 0)
