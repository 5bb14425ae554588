"""The threshold engine: what makes the threshold merges fast on CPU without changing a bit of their results.

The merge methods are written once, in PyTorch, in `methods/blocks.py`; those plain blocks stay the reference and
the path for small, non-float32 or non-CPU task vectors. For big CPU float32 task vectors the blocks and a few
methods hand the work to this package instead, which gives the same bits at a few read passes:

- `thresholds`: exact k-th smallest |tau| (global and per row) from a strided sample, a counting pass and a
  selection, not a sort; also over parts read one at a time (a streamed zoo).
- `kernels`: the fused per-tensor kernels (TIES, magnitude, TALL, EMR, DARE's drop; `torch.compile`d where a
  compiler works, else eager) and their masks packed 8 tasks to a byte (`PackedMask`).
- `fused`: the threshold merges composed from those two (`ties_fused`, `masked_sum_fused`, `tall_one`, ...).
- `jit`: numba-compiled loops for what neither does well (per-row selections, Model Breadcrumbs' band edges,
  PyTorch's CPU random stream fused with DARE's drop); without numba the PyTorch paths run.

Who uses it: `blocks` (`keep_topk`, `ties_vector`, `masked_task_sum`, `consensus_vector`, `tall_mask`, and through
them `compose`, `masks`, `interference` and the sign and mask analyses), `sparse` (TIES, DARE, magnitude pruning,
Model Breadcrumbs, and their streaming hooks through `fused.ties_streamed` and `fused.masked_sums`) and `emr`;
outside `methods`, the dashboard, which warms the compiled loops (`jit.warm`). `EXPLORER_FUSED=off` turns the
engine off in memory (the plain blocks only); streamed merges always run the engine's per-tensor functions."""
