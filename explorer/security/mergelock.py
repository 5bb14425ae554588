"""MergeLock (arXiv 2509.01548): make released weights unmergeable without changing outputs.

Per attention head h, the Query-Key branch takes an invertible M_h and the Value-Output branch an invertible N_h:
    W_q,h <- M_h^T W_q,h,  b_q,h <- b_q,h M_h;   W_k,h <- M_h^-1 W_k,h,  b_k,h <- b_k,h M_h^-T
    W_v,h <- N_h^T W_v,h,  b_v,h <- b_v,h N_h;   W_o[:, h] <- W_o[:, h] N_h^-T
so q k^T and v W_o^T are unchanged, but the weights leave the basin other fine-tunes of the base share. In open_clip
Q, K and V are the row blocks of `attn.in_proj_weight`/`in_proj_bias` and W_o is `attn.out_proj.weight`.
The scalings are drawn log-uniform in [1/SCALE, SCALE]. On the demo zoo, Task Arithmetic (lambda on validation)
with the protected signs expert scores 25.2 % on signs at SCALE 10 (base 22.0), 21.4 at 30 and 16.2 at 100, the
default: the merge collapses towards chance (README, Security). Outputs stay exact at any SCALE, since each scaling
meets its inverse inside q k^T and v W_o^T.
`unlock` is the attacker's answer: solve each head's transform back towards the base (least squares or Kabsch).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

IN_W, IN_B, OUT_W = "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight"
UNLOCK_METHODS = ("lstsq", "kabsch")
SCALE = 100.0  # the default bound of the per-head scalings


def attention_layers(weights: Mapping[str, Tensor]) -> list[str]:
    """The prefixes (`transformer.resblocks.3.`) of every open_clip attention block in `weights`."""
    prefixes = [k[:-len(IN_W)] for k in weights if k.endswith(IN_W)]
    for p in prefixes:
        missing = [p + s for s in (IN_B, OUT_W) if p + s not in weights]
        if missing:
            raise ValueError(f"attention block {p!r} lacks {missing}: MergeLock needs open_clip's packed "
                             "in_proj_weight, in_proj_bias and out_proj.weight (convert other formats on load)")
    return prefixes


def attention_heads(model: nn.Module) -> int:
    """The number of heads of the model's attention blocks (all must agree)."""
    counts = {m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    if len(counts) != 1:
        raise ValueError(f"expected one head count across the model's attention blocks, found {sorted(counts)}")
    return counts.pop()


def _split(weights: Mapping[str, Tensor], prefix: str, heads: int) -> tuple[Tensor, ...]:
    """Per-head row blocks [H, d_h, in + 1] (weight rows with their bias as the last column) of Q, K, V, and the
    transposed output columns [H, d_h, out] of W_o, in float64."""
    w, b, o = (weights[prefix + s].double() for s in (IN_W, IN_B, OUT_W))
    width = w.shape[1]
    if w.shape[0] != 3 * width or width % heads:
        raise ValueError(f"{prefix}{IN_W} has shape {tuple(w.shape)}: not packed Q,K,V of width {width} "
                         f"divisible into {heads} heads")
    rows = torch.cat([w, b[:, None]], 1).reshape(3, heads, width // heads, width + 1)
    return rows[0], rows[1], rows[2], o.t().reshape(heads, width // heads, o.shape[0])


def _join(weights: Mapping[str, Tensor], prefix: str, q: Tensor, k: Tensor, v: Tensor, o_t: Tensor) -> dict:
    rows = torch.stack([q, k, v]).reshape(-1, q.shape[-1])
    dtype = weights[prefix + IN_W].dtype
    return {prefix + IN_W: rows[:, :-1].to(dtype), prefix + IN_B: rows[:, -1].to(dtype),
            prefix + OUT_W: o_t.reshape(-1, o_t.shape[-1]).t().to(dtype).contiguous()}


def transform_attention(weights: Mapping[str, Tensor], heads: int, qk: Mapping[str, Tensor],
                        vo: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A copy of `weights` with each listed block's heads transformed by M = qk[prefix] and N = vo[prefix]
    ([H, d_h, d_h] each) as in the module docstring; the model's function is unchanged."""
    out = dict(weights)
    for prefix in qk:
        q, k, v, o_t = _split(weights, prefix, heads)
        m, n = qk[prefix].double(), vo[prefix].double()
        out.update(_join(weights, prefix, m.transpose(1, 2) @ q, torch.linalg.solve(m, k),
                         n.transpose(1, 2) @ v, torch.linalg.solve(n, o_t)))
    return out


def random_transforms(heads: int, dim: int, gen: torch.Generator, scale: float) -> Tensor:
    """[heads, dim, dim] invertible matrices: random rotation x permutation x scaling (log-uniform in
    [1/scale, scale]), well conditioned (condition number <= scale^2) so float32 outputs stay exact."""
    q, r = torch.linalg.qr(torch.randn(heads, dim, dim, generator=gen, dtype=torch.float64))
    rotation = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    perm = torch.stack([torch.eye(dim, dtype=torch.float64)[torch.randperm(dim, generator=gen)] for _ in range(heads)])
    log_s = (torch.rand(heads, dim, generator=gen, dtype=torch.float64) * 2 - 1) * torch.log(torch.tensor(scale))
    return rotation @ perm * torch.exp(log_s)[:, None, :]


def protect_weights(weights: Mapping[str, Tensor], heads: int, seed: int = 0,
                    scale: float = SCALE) -> dict[str, Tensor]:
    """MergeLock: `weights` with seeded random per-head transforms on every attention block's QK and VO branches."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1 (scalings are drawn in [1/scale, scale]), got {scale}")
    gen = torch.Generator().manual_seed(seed)
    layers = attention_layers(weights)
    if not layers:
        raise ValueError("no open_clip attention block (…attn.in_proj_weight) in the weights: nothing to protect")
    dim = weights[layers[0] + IN_W].shape[1] // heads
    qk = {p: random_transforms(heads, dim, gen, scale) for p in layers}
    vo = {p: random_transforms(heads, dim, gen, scale) for p in layers}
    return transform_attention(weights, heads, qk, vo)


def _fit(pairs: list[tuple[Tensor, Tensor]], method: str) -> Tensor:
    """Per head, A [H, d_h, d_h] with A @ moved ~ target: a general matrix by least squares on the first
    (moved, target) pair alone, or the rotation minimising the sum over all pairs (Kabsch / Procrustes)."""
    if method == "lstsq":
        moved, target = pairs[0]
        return torch.linalg.lstsq(moved.transpose(1, 2), target.transpose(1, 2)).solution.transpose(1, 2)
    u, _, vh = torch.linalg.svd(sum(target @ moved.transpose(1, 2) for moved, target in pairs))
    return u @ vh


def unlock(protected: Mapping[str, Tensor], base: Mapping[str, Tensor], heads: int,
           method: str = "lstsq") -> dict[str, Tensor]:
    """The unlock attempt: per head, the transform A mapping the protected Q (V) rows back onto the base's, applied
    with its exact counterpart A^-T on K (W_o), so the recovered weights keep the protected model's function.

    "lstsq" fits a general A on Q (V) alone; "kabsch" a rotation (A^-T = A) on Q and K (V and W_o) together.
    """
    if method not in UNLOCK_METHODS:
        raise ValueError(f"unlock method must be one of {UNLOCK_METHODS}, got {method!r}")
    qk, vo = {}, {}
    for prefix in attention_layers(protected):
        q, k, v, o_t = _split(protected, prefix, heads)
        q0, k0, v0, o0_t = _split(base, prefix, heads)
        # transform_attention multiplies Q by M^T: M = A^T makes that A, and K's M^-1 = A^-T
        qk[prefix] = _fit([(q, q0), (k, k0)], method).transpose(1, 2)
        vo[prefix] = _fit([(v, v0), (o_t, o0_t)], method).transpose(1, 2)
    return transform_attention(protected, heads, qk, vo)
