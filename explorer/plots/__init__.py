"""Plotly figures from analysis tables and scores: one function per picture, each returning a `go.Figure`.

Every figure gives each task the same colour (a colour-blind-safe palette, in task order), uses large fonts
for projectors, shows exact values on hover, and draws only heatmaps, bars and scatter lines (the dashboard
renders with an older plotly.js). One module per view (conflicts, masks, layers, accuracy, sparsity, spectra,
testtime, threats), the shared look in `style`, static PNGs in `static`; every figure is importable from here.
"""
from .accuracy import accuracy_bars, interpolation_heatmap, lambda_sweep, sweep_comparison, sweep_grid
from .conflicts import cosine_map, pair_profile, sign_conflict_map, sign_disagreement
from .layers import coefficient_map, fisher_share, layer_coefficients, layer_norms
from .masks import USAGE_COLORS, learned_mask_density, mask_density, mask_overlap_map, mask_usage, selfish_weights
from .sparsity import BAND_COLORS, STEP_TITLES, breadcrumb_bands, ties_steps
from .spectra import effective_ranks, singular_interference, spectrum_lines, subspace_overlap_map
from .static import check_browser, png
from .style import DIVERGING, FONT, METHOD_COLORS, PALETTE, SEQUENTIAL, SERIES, task_colors
from .testtime import entropy_error, loss_curve, representation_bias, routing_map
from .threats import backdoor_survival, mergelock_study

__all__ = ["BAND_COLORS", "DIVERGING", "FONT", "METHOD_COLORS", "PALETTE", "SEQUENTIAL", "SERIES", "STEP_TITLES",
           "USAGE_COLORS", "accuracy_bars", "backdoor_survival", "breadcrumb_bands", "check_browser", "coefficient_map",
           "cosine_map",
           "effective_ranks", "entropy_error", "fisher_share", "interpolation_heatmap", "lambda_sweep",
           "layer_coefficients", "layer_norms", "learned_mask_density", "loss_curve", "mask_density",
           "mask_overlap_map", "mask_usage", "mergelock_study", "pair_profile", "png", "representation_bias",
           "routing_map",
           "selfish_weights", "sign_conflict_map", "sign_disagreement", "singular_interference", "spectrum_lines",
           "subspace_overlap_map", "sweep_comparison", "sweep_grid", "task_colors", "ties_steps"]
