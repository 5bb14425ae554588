"""Analyses: numbers (pandas DataFrames labelled by task and layer) about task vectors and merge results.

Whole-model T x T results are square DataFrames indexed by task on both axes; per-layer results are tidy.
`explorer.plots` draws them.
"""
from .accuracy import compare, expert_sweep, interpolation_grid, lambda_sweep
from .calibration import entropy_error, pearson
from .conflicts import conflict_profile, cosine, sign_conflicts, sign_disagreement
from .fisher import fisher_share
from .layers import effective_coefficients, layer_norms, learned_coefficients
from .masks import mask_density, mask_overlap, mask_tasks, mask_usage, selfish_weights
from .sparsity import breadcrumb_bands, ties_steps
from .spectra import interference, matrix_names, spectral_summary, spectrum, subspace_overlap
from .testtime import concrete_mask_density, learned_mask_overlap, representation_bias, router_confusion, routing

__all__ = ["breadcrumb_bands", "compare", "conflict_profile", "cosine", "effective_coefficients", "entropy_error",
           "expert_sweep", "fisher_share", "interpolation_grid", "lambda_sweep", "layer_norms", "learned_coefficients",
           "mask_density", "mask_overlap", "mask_tasks", "mask_usage", "pearson", "selfish_weights",
           "sign_conflicts", "sign_disagreement", "spectral_summary", "spectrum", "subspace_overlap", "ties_steps",
           "interference", "matrix_names", "concrete_mask_density", "learned_mask_overlap", "representation_bias",
           "router_confusion", "routing"]
