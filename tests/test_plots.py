"""Each figure is built from a small hand-made table and its data (traces, z values, colours, axis titles) checked."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import explorer as ex
from explorer import plots

TASKS = ["mnist", "svhn", "dtd"]


def square(values) -> pd.DataFrame:
    return pd.DataFrame(np.array(values, dtype=float), index=TASKS, columns=TASKS)


def test_task_colors_are_stable_and_distinct():
    colors = plots.task_colors(TASKS)
    assert list(colors) == TASKS and len(set(colors.values())) == 3
    assert plots.task_colors(TASKS + ["eurosat"])["svhn"] == colors["svhn"]
    many = plots.task_colors([f"t{i}" for i in range(16)])
    assert len(set(many.values())) == 16


def test_the_package_exports_every_figure_and_each_module_says_its_view():
    import importlib
    import inspect
    import pkgutil

    for info in pkgutil.iter_modules(plots.__path__):
        module = importlib.import_module(f"explorer.plots.{info.name}")
        doc = (module.__doc__ or "").strip()
        assert doc and "\n" not in doc, f"explorer.plots.{info.name} needs a one-line docstring"
        public = [n for n, f in inspect.getmembers(module, inspect.isfunction)
                  if f.__module__ == module.__name__ and not n.startswith("_")]
        assert set(public) <= set(plots.__all__), f"explorer.plots does not export {set(public) - set(plots.__all__)}"
    assert all(getattr(plots, n) is getattr(ex.plots, n) for n in plots.__all__)


def test_cosine_map_blank_diagonal_natural_range_and_zoom():
    matrix = square([[1, 0.2, -0.1], [0.2, 1, 0.05], [-0.1, 0.05, 1]])
    matrix.attrs["over"] = "all 9 entries of each task vector"
    fig = plots.cosine_map(matrix)
    (trace,) = fig.data
    assert isinstance(trace, go.Heatmap)
    assert np.isnan(np.diag(trace.z)).all() and trace.z[0, 1] == 0.2 and trace.z[2, 0] == -0.1
    assert (trace.zmin, trace.zmid, trace.zmax) == (-1, 0, 1)  # the natural range, whatever the values
    assert "over all 9 entries of each task vector" in fig.layout.title.text
    assert "colour range -1 … +1" in fig.layout.title.text
    zoomed = plots.cosine_map(matrix, zoom=True).data[0]
    assert (zoomed.zmin, zoomed.zmid, zoomed.zmax) == (-0.2, 0, 0.2)  # symmetric, fits |0.2| off the diagonal
    assert "-0.2 … +0.2 (zoomed" in plots.cosine_map(matrix, zoom=True).layout.title.text
    assert list(trace.x) == TASKS and list(trace.y) == TASKS
    assert trace.text[0, 1] == "0.200" and trace.text[1, 1] == ""
    assert "cosine" in trace.hovertemplate and fig.layout.xaxis.title.text == "task"


def test_sign_conflict_map_zero_to_one_centred_at_half_and_nan_cells():
    matrix = square([[0, 0.3, np.nan], [0.3, 0, 0.6], [np.nan, 0.6, 0]])
    trace = plots.sign_conflict_map(matrix).data[0]
    assert (trace.zmin, trace.zmid, trace.zmax) == (0, 0.5, 1)
    zoomed = plots.sign_conflict_map(matrix, zoom=True)
    assert zoomed.data[0].zmin == pytest.approx(0.3) and zoomed.data[0].zmax == pytest.approx(0.7)
    assert trace.text[0, 2] == "n/a" and trace.text[1, 2] == "0.600"
    assert "random" in zoomed.layout.title.text and "non-zero in both tasks" in zoomed.layout.title.text


def test_conflict_analyses_say_what_they_are_computed_over(tiny_tv):
    assert ex.analysis.cosine(tiny_tv).attrs["over"] == f"all {tiny_tv.numel():,} entries of each task vector"
    assert "top 20%" in ex.analysis.sign_conflicts(tiny_tv, topk=0.2).attrs["over"]


def test_mask_overlap_map_is_sequential_from_zero():
    fig = plots.mask_overlap_map(square([[10, 4, 2], [4, 8, 0], [2, 0, 5]]), metric="intersection")
    trace = fig.data[0]
    assert trace.zmin == 0 and trace.zmax == 10 and trace.zmid is None
    assert trace.z[0, 0] == 10 and trace.text[1, 0] == "4"


def test_pair_profile_from_the_analysis(tiny_tv):
    prof = ex.analysis.conflict_profile(tiny_tv)
    fig = plots.pair_profile(prof)
    trace = fig.data[0]
    assert list(trace.x) == tiny_tv.layers()
    assert list(trace.y) == ["task0 vs task1", "task0 vs task2", "task1 vs task2"]
    expected = prof[prof.pair == "task1 vs task2"].cosine.to_numpy()
    np.testing.assert_allclose(trace.z[2], expected)
    assert trace.zmid == 0
    assert plots.pair_profile(ex.analysis.conflict_profile(tiny_tv, metric="signs")).data[0].zmid == 0.5


def test_sign_disagreement_bars():
    frame = pd.DataFrame({"layer": ["embed", "block.0"], "shared": [1.0, 0.5], "disagreement": [0.7, 0.2],
                          "numel": [10, 20]})
    fig = plots.sign_disagreement({"all": frame, "top 20 %": frame.assign(disagreement=[0.4, 0.1])})
    assert [t.name for t in fig.data] == ["all", "top 20 %"]
    assert list(fig.data[1].y) == [0.4, 0.1] and list(fig.data[0].x) == ["embed", "block.0"]
    assert fig.layout.barmode == "group"


def test_mask_density_bars_and_lines_use_task_colours():
    dens = pd.DataFrame({"task": TASKS, "kept": [1, 2, 3], "total": [10] * 3, "density": [0.1, 0.2, 0.3]})
    bars = plots.mask_density(dens).data[0]
    assert list(bars.y) == [0.1, 0.2, 0.3] and list(bars.marker.color) == list(plots.task_colors(TASKS).values())
    layered = pd.DataFrame({"layer": ["embed"] * 3 + ["block.0"] * 3, "task": TASKS * 2, "kept": 1, "total": 2,
                            "density": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    fig = plots.mask_density(layered)
    assert [t.name for t in fig.data] == TASKS
    assert list(fig.data[2].y) == [0.3, 0.6] and fig.data[2].line.color == plots.PALETTE[2]


def test_mask_usage_histogram_and_stacked_layers():
    usage = pd.DataFrame({"n_tasks": [0, 1, 2, 3], "count": [1, 3, 1, 1], "fraction": [1 / 6, 0.5, 1 / 6, 1 / 6],
                          "category": ["catastrophic", "selfish", "shared", "shared"]})
    fig = plots.mask_usage(usage)
    bars = fig.data[0]
    assert list(bars.x) == ["0", "1", "2", "3"] and list(bars.y) == list(usage.fraction)
    assert list(bars.marker.color) == [plots.USAGE_COLORS[c] for c in usage.category]
    assert [t.name for t in fig.data[1:]] == ["catastrophic", "selfish", "shared"]
    layered = pd.concat([usage.assign(layer="embed"), usage.assign(layer="post")])
    fig = plots.mask_usage(layered)
    assert fig.layout.barmode == "stack" and len(fig.data) == 4
    assert fig.data[1].name == "1 (selfish)" and list(fig.data[1].y) == [0.5, 0.5]
    assert fig.data[2].marker.color != fig.data[3].marker.color  # shared counts in distinct blues


def test_layer_norms_and_coefficients(tiny_tv):
    norms = ex.analysis.layer_norms(tiny_tv)
    fig = plots.layer_norms(norms, relative=True)
    assert [t.name for t in fig.data] == tiny_tv.tasks
    np.testing.assert_allclose(fig.data[1].y, norms[norms.task == "task1"].relative)
    assert fig.layout.yaxis.title.text == "||τ_l|| / ||θ0_l||"
    coefs = ex.analysis.effective_coefficients(ex.merge(tiny_tv, "task_arithmetic", scale=0.5))
    fig = plots.layer_coefficients(coefs)
    assert fig.data[0].name == "all" and fig.data[0].line.color == "#000000"
    np.testing.assert_allclose(fig.data[0].y, 0.5, rtol=1e-5)


def scores_table() -> pd.DataFrame:
    rows = []
    for method, merged in [("ta", [0.5, 0.6, 0.7]), ("ties", [0.6, 0.7, 0.8])]:
        rows += [(method, t, 0.2, 0.8, m, m / 0.8) for t, m in zip(TASKS, merged)]
    return pd.DataFrame(rows, columns=["method", "task", "base", "expert", "merged", "normalized"])


def test_accuracy_bars_with_references_and_mean():
    fig = plots.accuracy_bars(scores_table())
    assert [t.name for t in fig.data] == ["zero-shot (θ0)", "fine-tuned expert", "ta", "ties"]
    assert list(fig.data[0].x) == TASKS + ["mean"]
    assert list(fig.data[3].y) == pytest.approx([60, 70, 80, 70])  # in %
    assert fig.layout.yaxis.title.text == "accuracy (%)"
    norm = plots.accuracy_bars(scores_table(), normalized=True)
    assert list(norm.data[1].y) == [100, 100, 100, 100] and norm.data[2].y[0] == pytest.approx(62.5)
    single = plots.accuracy_bars(scores_table().drop(columns="method").head(3))
    assert single.data[2].name == "merged"


def test_lambda_sweep_lines_and_mean():
    rows = [(v, t, 0.2, 0.8, v * (i + 1) / 3, 0.0) for v in (0.1, 0.3) for i, t in enumerate(TASKS)]
    sweep = pd.DataFrame(rows, columns=["value", "task", "base", "expert", "merged", "normalized"])
    sweep.attrs.update(method="task_arithmetic", param="scale")
    fig = plots.lambda_sweep(sweep)
    assert [t.name for t in fig.data] == TASKS + ["mean"]
    assert list(fig.data[2].y) == pytest.approx([10, 30]) and list(fig.data[3].y) == pytest.approx([20 / 3, 20])
    assert fig.layout.yaxis.title.text == "accuracy (%)"
    assert fig.layout.xaxis.title.text == "scale" and fig.data[0].line.color == plots.PALETTE[0]


def test_interpolation_heatmap_three_panels_on_one_scale():
    rows = [(la, lb, t, la + 2 * lb + (t == "svhn"), 0.0) for la in (0, 1) for lb in (0, 0.5, 1) for t in TASKS[:2]]
    grid = pd.DataFrame(rows, columns=["lambda_a", "lambda_b", "task", "merged", "normalized"])
    fig = plots.interpolation_heatmap(grid)
    assert len(fig.data) == 3 and {t.coloraxis for t in fig.data} == {"coloraxis"}
    a, b, mean = (np.asarray(t.z) for t in fig.data)
    assert a.shape == (3, 2) and list(fig.data[0].x) == [0, 1] and list(fig.data[0].y) == [0, 0.5, 1]
    assert a[2, 1] == 300 and b[2, 1] == 400 and mean[2, 1] == 350  # lambda_b = 1 (row), lambda_a = 1 (column), %
    assert fig.layout.xaxis.title.text == "λ mnist" and fig.layout.yaxis.title.text == "λ svhn"


def test_rounded_negative_zero_prints_as_zero_and_usage_labels_fit():
    import numpy as np
    import pandas as pd

    from explorer import plots
    from explorer.plots.style import _fmt

    assert list(_fmt(np.array([-0.0001, -0.25]), 3)) == ["0.000", "-0.250"]
    usage = pd.DataFrame({"n_tasks": [0, 1, 2], "count": [1, 6, 3], "fraction": [0.1, 0.6, 0.3],
                          "category": ["catastrophic", "selfish", "shared"]})
    fig = plots.mask_usage(usage)
    assert fig.layout.yaxis.range[1] > 0.6 and fig.data[0].cliponaxis is False


def test_loss_curve_plots_every_step_on_integer_ticks():
    fig = plots.loss_curve([3.0, 2.5, 2.25, 2.0, 1.9, 1.8, 1.7, 1.65, 1.6, 1.55, 1.5, 1.45])
    (trace,) = fig.data
    assert list(trace.x) == list(range(1, 13)) and trace.y[2] == 2.25
    assert fig.layout.xaxis.dtick == 2 and fig.layout.xaxis.tickformat == "d"  # 12 steps: a tick every 2
    assert plots.loss_curve([1.0, 0.5], steps=[10, 20]).layout.xaxis.dtick == 2
    assert plots.loss_curve([1.0]).layout.xaxis.dtick == 1


def test_ties_steps_panels_and_sign_row():
    rows = [("task vectors", t, e, v) for t, vals in (("a", [2.0, -1.0]), ("b", [-4.0, 3.0]))
            for e, v in zip([7, 9], vals)]
    rows += [("trim", "a", 7, 2.0), ("trim", "a", 9, 0.0), ("trim", "b", 7, -4.0), ("trim", "b", 9, 3.0)]
    rows += [("elect", "elected sign", 7, -1.0), ("elect", "elected sign", 9, 1.0), ("elect", "a", 7, 0.0),
             ("elect", "a", 9, 0.0), ("elect", "b", 7, -4.0), ("elect", "b", 9, 3.0)]
    rows += [("merge", "TIES", 7, -4.0), ("merge", "TIES", 9, 3.0), ("merge", "plain mean", 7, -1.0),
             ("merge", "plain mean", 9, 1.0)]
    frame = pd.DataFrame(rows, columns=["step", "row", "entry", "value"])
    frame.attrs.update(name="w", density=0.5)
    fig = plots.ties_steps(frame)
    assert len(fig.data) == 4 and all(isinstance(t, go.Heatmap) for t in fig.data)
    elect = fig.data[2]
    assert list(elect.y) == ["elected sign", "a", "b"] and list(elect.x) == ["7", "9"]
    assert list(elect.text[0]) == ["−", "+"] and list(elect.text[1]) == ["·", "·"]  # dropped entries are dots
    np.testing.assert_allclose(elect.z[0], [-4.0, 4.0])  # the sign row is drawn at the panel's full scale
    np.testing.assert_allclose(elect.customdata[0], [-1.0, 1.0])  # hover keeps the true value
    assert list(fig.data[0].text[1]) == ["-4000.0", "3000.0"]  # values x 1000
    assert fig.layout.coloraxis.cmin == -4 and fig.layout.coloraxis.cmid == 0
    assert "density 0.5" in fig.layout.title.text


def test_breadcrumb_bands_stacked_in_band_colours():
    frame = pd.DataFrame({"band": ["small (dropped)"] * 2 + ["middle band (kept)"] * 2 + ["outliers (dropped)"] * 2,
                          "bin_left": [0.0, 1.0] * 3, "bin_right": [1.0, 2.0] * 3, "count": [3, 0, 1, 2, 0, 1],
                          "fraction": [3 / 7, 0, 1 / 7, 2 / 7, 0, 1 / 7]})
    frame.attrs.update(keep=0.15, remove=0.01, task="all tasks")
    fig = plots.breadcrumb_bands(frame)
    assert [t.name for t in fig.data] == ["small (dropped)", "middle band (kept)", "outliers (dropped)"]
    assert list(fig.data[1].x) == [0.5, 1.5] and list(fig.data[1].y) == pytest.approx([1 / 7, 2 / 7])
    assert fig.data[2].marker.color == plots.BAND_COLORS["outliers (dropped)"]
    assert fig.layout.barmode == "stack" and "top 1.0%" in fig.layout.title.text


def test_sweep_comparison_draws_the_mean_of_each_sweep():
    sweep = pd.DataFrame({"value": [0.0, 0.0, 0.9, 0.9], "task": ["a", "b"] * 2, "merged": [0.8, 0.6, 0.5, 0.3],
                          "normalized": [1.0, 0.8, 0.6, 0.2]})
    sweep.attrs.update(param="drop")
    fig = plots.sweep_comparison({"rescaled": sweep, "not rescaled": sweep.assign(normalized=0.5)})
    assert [t.name for t in fig.data] == ["rescaled", "not rescaled"]
    assert list(fig.data[0].x) == [0.0, 0.9] and list(fig.data[0].y) == pytest.approx([0.9, 0.4])
    assert list(fig.data[1].y) == pytest.approx([0.5, 0.5]) and fig.layout.xaxis.title.text == "drop"
    assert list(plots.sweep_comparison({"x": sweep}, normalized=False).data[0].y) == pytest.approx([0.7, 0.4])


def test_selfish_weight_bars():
    frame = pd.DataFrame({"task": TASKS, "kept": [10, 20, 5], "selfish": [1, 5, 0], "selfish_fraction": [0.1, 0.25, 0]})
    (bars,) = plots.selfish_weights(frame).data
    assert list(bars.y) == [0.1, 0.25, 0] and list(bars.marker.color) == list(plots.task_colors(TASKS).values())
    assert bars.customdata[1].tolist() == [5, 20]


def test_entropy_error_scatter_line_and_r():
    frame = pd.DataFrame({"value": [0.0, 0.5] * 2, "task": ["a", "a", "b", "b"], "entropy": [1.0, 2.0, 3.0, 4.0],
                          "accuracy": [0.8, 0.6, 0.4, 0.2], "error": [0.2, 0.4, 0.6, 0.8]})
    frame.attrs.update(param="scale")
    fig = plots.entropy_error(frame)
    assert [t.name for t in fig.data] == ["a", "b", "least squares"]
    assert list(fig.data[1].x) == [3.0, 4.0] and list(fig.data[1].customdata) == [0.0, 0.5]
    np.testing.assert_allclose(fig.data[2].y, [0.2, 0.8])  # error = 0.2 * entropy exactly
    assert "Pearson r = 1.00" in fig.layout.title.text
    flat = plots.entropy_error(frame.assign(error=0.5))  # no correlation defined: no line
    assert [t.name for t in flat.data] == ["a", "b"] and "r = nan" in flat.layout.title.text


def test_coefficient_map_rows_columns_and_layer_ticks():
    keys = ["conv1.weight", "transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.0.mlp.c_fc.weight"]
    layers = ["embed", "block.0", "block.0"]
    frame = pd.DataFrame({"task": ["a"] * 3 + ["b"] * 3, "key": keys * 2, "layer": layers * 2, "depth": [0, 1, 1] * 2,
                          "coefficient": [0.1, -0.2, 0.3, 0.0, 0.5, -0.1]})
    (heat,) = plots.coefficient_map(frame).data
    assert list(heat.y) == ["a", "b"] and list(heat.x) == keys
    np.testing.assert_allclose(heat.z, [[0.1, -0.2, 0.3], [0.0, 0.5, -0.1]])
    assert heat.zmid == 0 and heat.zmax == 0.5 and heat.zmin == -0.5
    fig = plots.coefficient_map(frame)
    assert list(fig.layout.xaxis.tickvals) == keys[:2] and list(fig.layout.xaxis.ticktext) == ["embed", "block.0"]
    shuffled = plots.coefficient_map(frame.iloc[[1, 2, 0, 4, 5, 3]])  # alphabetical names: block tensors first
    assert list(shuffled.data[0].x) == [keys[0], keys[1], keys[2]]  # back in depth order
    np.testing.assert_allclose(shuffled.data[0].z[0], [0.1, -0.2, 0.3])


def test_backdoor_survival_bars_in_percent():
    frame = pd.DataFrame({"merge": ["ta", "ties"], "task": ["digits", "digits"], "accuracy": [0.4, 0.5],
                          "average_accuracy": [0.6, 0.6], "attack_success": [0.66, 0.25]})
    fig = plots.backdoor_survival(frame)
    assert [t.name for t in fig.data] == ["accuracy on the task", "average accuracy", "attack success rate"]
    assert list(fig.data[2].y) == [66.0, 25.0] and list(fig.data[0].x) == ["ta · digits", "ties · digits"]


def test_mergelock_bars_with_the_base_line():
    frame = pd.DataFrame({"expert": ["clean", "protected"], "expert_alone": [0.99, 0.99], "scale": [0.3, 0.1],
                          "merged_task": [0.87, 0.43], "merged_others": [0.58, 0.49], "base": [0.436, 0.436]})
    fig = plots.mergelock_study(frame)
    assert list(fig.data[1].y) == [87.0, 43.0] and fig.layout.shapes[0].y0 == 43.6
