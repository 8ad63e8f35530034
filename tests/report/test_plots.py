"""Figures: what is drawn (values, lines, styles, colours, labels, legend entries), read back from the matplotlib
figure and compared with numpy computed here from the same inputs."""

import subprocess
import sys
from collections import Counter

import matplotlib.colors
import numpy as np
import pytest

from layerwise.analyze.options import AnalysisOptions
from layerwise.contract import names as display
from layerwise.errors import UsageError
from layerwise.report import plotkit, plots, scatter

LAYERS = [f"layer_{i}" for i in range(13)]


@pytest.fixture
def captured(monkeypatch):
    """Every figure a plotting function made, before it is saved and closed."""
    figures = []
    real_save = plotkit.save

    def keep(fig, path):
        figures.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plotkit, "save", keep)
    return figures


def legend_entries(fig):
    legend = fig.legends[0] if fig.legends else fig.axes[0].get_legend()
    return legend, [t.get_text() for t in legend.texts]


def test_display_names_and_their_mapping():
    assert [display.display_name(k) for k in ("layer_0", "layer_12", "conv_0", "conv_6", "fbank")] == [
        "L0", "L12", "C0", "C6", "fbank"]
    assert display.naming_legend(LAYERS).startswith("L0 … L12 = stored keys layer_0 … layer_12")
    assert display.naming_legend(["conv_3"]).startswith("C3 = stored key conv_3")
    assert display.model_label("/home/someone/checkpoints/hubert-base-ls960/") == "hubert-base-ls960"
    assert display.model_label("facebook/wav2vec2-base") == "wav2vec2-base"


def test_importing_the_plots_imports_no_plotting_library():
    code = "import sys, layerwise.report.plots; print(sorted(m for m in ('matplotlib', 'seaborn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_many_phone_classes_colour_the_most_frequent_and_grey_the_rest(tmp_path, captured):
    rng = np.random.default_rng(0)
    phones = [f"P{i:02d}" for i in range(25)]
    labels = rng.choice(phones, size=800, p=np.arange(25, 0, -1) / np.arange(25, 0, -1).sum())
    groups, names, what = scatter.point_groups(np.full(800, "utt"), labels)
    counts = Counter(labels.tolist())
    top = sorted(p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: scatter.MAX_COLOUR_GROUPS - 1])
    assert what == "label" and names == top + ["other"]
    for label, group in zip(labels, groups):
        assert names[group] == (label if label in top else "other")

    coords = rng.normal(size=(800, 2))
    scatter.tsne_figure(["layer_0", "layer_1"], {"layer_0": coords, "layer_1": coords}, groups, names, what,
                      tmp_path / "t.png", subtitle="x")
    legend, texts = legend_entries(captured[-1])
    assert texts == names and legend.get_title().get_text().startswith("label")
    colours = [matplotlib.colors.to_hex(h.get_markerfacecolor()) for h in legend.legend_handles]
    assert colours[-1] == matplotlib.colors.to_hex("0.7") and len(set(colours[:-1])) == len(names) - 1
    # each point drawn in its group's legend colour
    drawn = captured[-1].axes[0].collections[0]
    point_colours = [matplotlib.colors.to_hex(c) for c in drawn.get_facecolors()]
    assert point_colours == [colours[g] for g in groups]
    assert np.allclose(drawn.get_offsets(), coords)


def test_few_classes_are_all_coloured():
    groups, names, _ = scatter.point_groups(np.array(["u1"] * 4), np.array(["S", "AA", "S", "K"]))
    assert names == ["AA", "K", "S"] and groups.tolist() == [2, 0, 2, 1]
    groups, names, what = scatter.point_groups(np.array(["u2", "u1", "u2"]), None)
    assert what == "utterance" and names == ["u1", "u2"] and groups.tolist() == [1, 0, 1]


def test_colour_by_speaker_utterance_or_label():
    stems = np.array(["174-50561-0000", "84-121123-0001", "84-121123-0000", "1272-128104-0003", "174-50561-0002"])
    labels = np.array(["AA", "S", "AA", "K", "S"])
    groups, names, what = scatter.point_groups(stems, labels, color_by="speaker")
    speakers = [s.split("-")[0] for s in stems]
    assert what == "speaker" and names == ["84", "174", "1272"]  # numeric order, not "1272" < "174" < "84"
    assert [names[g] for g in groups] == speakers
    groups, names, what = scatter.point_groups(stems, labels, color_by="utterance")
    assert what == "utterance" and [names[g] for g in groups] == stems.tolist()
    assert scatter.point_groups(stems, labels)[2] == "label"  # default with labels
    with pytest.raises(UsageError, match="color_by=label needs phone/word labels"):
        scatter.point_groups(stems, None, color_by="label")
    with pytest.raises(UsageError, match="'my_recording' is not one"):
        scatter.point_groups(np.array(["my_recording"]), None, color_by="speaker")
    with pytest.raises(UsageError, match="color_by='chapter'"):  # refused once, at the options boundary
        AnalysisOptions(features_dir=".", output_dir=".", color_by="chapter")


def test_heatmap_colour_scale_fixed_0_1_values_written_in_cells_zoom_said(tmp_path, captured):
    rng = np.random.default_rng(1)
    m = 0.9 + 0.1 * rng.random((5, 5))
    m = (m + m.T) / 2
    np.fill_diagonal(m, 1.0)
    layers = ["layer_0", "layer_3", "layer_6", "layer_9", "layer_12"]
    path = plots.similarity_heatmap(m, layers, tmp_path / "cka.png", kind="cka", subtitle="hubert-base-ls960")
    assert path.read_bytes()[:4] == b"\x89PNG" and sorted(p.name for p in tmp_path.iterdir()) == ["cka.png"]
    ax = captured[-1].axes[0]
    mesh = ax.collections[0]
    assert mesh.norm.vmin == 0.0 and mesh.norm.vmax == 1.0  # 0.91 looks close to 1, not "unrelated"
    label = captured[-1].axes[1].get_ylabel()  # the colour bar
    assert "colour range 0–1 (fixed" in " ".join(label.split()) and "zoomed" not in ax.get_title()
    cells = sorted((t.get_position(), t.get_text()) for t in ax.texts)
    expected = sorted(((j + 0.5, i + 0.5), f"{m[i, j]:.3f}") for i in range(5) for j in range(5))
    assert cells == expected
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L0", "L3", "L6", "L9", "L12"]
    assert "hubert-base-ls960" in ax.get_title()

    plots.similarity_heatmap(m, layers, tmp_path / "cka2.png", kind="cka", subtitle="s", vmin=0.5)
    assert captured[-1].axes[0].collections[0].norm.vmin == 0.5
    assert "zoomed: v_min = 0.5" in captured[-1].axes[0].get_title()
    assert "zoomed: lower end v_min = 0.5" in " ".join(captured[-1].axes[1].get_ylabel().split())


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("kind, vmin", [("cka", 0.9999), ("cosine", None), ("cka_debiased", None)])
def test_heatmap_colour_bar_label_clear_of_title_and_caption(tmp_path, captured, kind, vmin):
    # the zoomed title ran into the (one-line, vertical) colour-bar label; the cosine caveat overlapped it
    m = np.array([[1.0, 0.99997, 0.99995], [0.99997, 1.0, 0.99998], [0.99995, 0.99998, 1.0]])
    plots.similarity_heatmap(m, ["layer_0", "layer_1", "layer_2"], tmp_path / "h.png", kind=kind,
                             subtitle="tiny-hubert: 24 files, 3,273 frames", vmin=vmin)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = captured[-1]
    renderer = FigureCanvasAgg(fig).get_renderer()  # the saved figure was closed: a fresh canvas to measure on
    bar = fig.axes[1]
    label = bar.yaxis.label.get_window_extent(renderer)
    others = [fig.axes[0].title.get_window_extent(renderer)] + [t.get_window_extent(renderer) for t in fig.texts]
    assert not any(_boxes_overlap(label, box) for box in others)
    height = bar.get_window_extent(renderer).height
    assert label.height <= 1.3 * height  # the label runs along the bar, not past the figure


def test_cosine_heatmap_caveat_is_a_caption_and_nan_cells_say_na(tmp_path, captured):
    m = np.array([[1.0, np.nan, 0.4], [np.nan, 1.0, 0.2], [0.4, 0.2, 1.0]])
    plots.similarity_heatmap(m, ["layer_0", "layer_1", "layer_2"], tmp_path / "c.png", kind="cosine", subtitle="s")
    fig = captured[-1]
    ax = fig.axes[0]
    assert "means" not in ax.get_title() and any("dominated by the layers' means" in t.get_text() for t in fig.texts)
    texts = {t.get_position(): t.get_text() for t in ax.texts}
    assert texts[(1.5, 0.5)] == "n/a" and texts[(0.5, 1.5)] == "n/a" and texts[(2.5, 0.5)] == "0.40"
    assert ax.collections[0].norm.vmin == 0.0 and ax.collections[0].norm.vmax == 1.0


def test_heatmap_of_nearly_equal_values_shows_their_differences(tmp_path, captured):
    m = np.array([[1.0, 0.99993, 0.99981], [0.99993, 1.0, 0.99996], [0.99981, 0.99996, 1.0]])
    plots.similarity_heatmap(m, ["layer_0", "layer_1", "layer_2"], tmp_path / "h.png", kind="cka", subtitle="s")
    ax = captured[-1].axes[0]
    assert ax.collections[0].norm.vmin == 0.0  # the colours do not zoom into the differences …
    assert {t.get_text() for t in ax.texts} == {"1.00000", "0.99993", "0.99981", "0.99996"}  # … the cell texts do
    plots.similarity_heatmap(np.ones((2, 2)), ["layer_0", "layer_1"], tmp_path / "o.png", kind="cka", subtitle="s")
    norm = captured[-1].axes[0].collections[0].norm
    assert norm.vmax == 1.0 and norm.vmin == 0.0
    assert {t.get_text() for t in captured[-1].axes[0].texts} == {"1.00"}


def test_single_layer_gets_no_heatmap(tmp_path):
    assert plots.similarity_heatmap(np.ones((1, 1)), ["layer_6"], tmp_path / "h.png", kind="cka", subtitle="s") is None
    assert not (tmp_path / "h.png").exists()


def test_feature_statistics_error_bars(tmp_path, captured):
    layers = ["layer_0", "layer_6", "layer_12"]
    mean, std = {"layer_0": 0.1, "layer_6": -0.3, "layer_12": 2.0}, {"layer_0": 1.0, "layer_6": 0.5, "layer_12": 3.0}
    plots.feature_statistics(layers, mean, std, tmp_path / "f.png", subtitle="s")
    ax = captured[-1].axes[0]
    line, _caps, (bars,) = ax.containers[0].lines
    assert np.asarray(line.get_xdata()).tolist() == [0, 6, 12]
    assert np.asarray(line.get_ydata()).tolist() == [0.1, -0.3, 2.0]
    segments = bars.get_segments()
    assert np.allclose([(s[0][1], s[1][1]) for s in segments], [(-0.9, 1.1), (-0.8, 0.2), (-1.0, 5.0)])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L0", "L6", "L12"]


@pytest.mark.slow
def test_pca_panels_explained_variance_on_the_axes_and_curves_to_90_percent(tmp_path, captured):
    rng = np.random.default_rng(2)
    layers = LAYERS
    ratios = {}
    for i, key in enumerate(layers):
        spectrum = np.sort(rng.lognormal(0, 1 + 0.2 * i, 64))[::-1]
        ratios[key] = spectrum / spectrum.sum()
    projections = {k: rng.normal(size=(50, 2)) for k in layers}
    projections["layer_12"] = "PCA not computed: only 1 frame"
    stems = np.repeat([f"{s}-1-{u}" for s in (84, 174) for u in range(5)], 5)
    groups, names, what = scatter.point_groups(stems, None, color_by="speaker")
    scatter.pca_figure(layers, ratios, projections, groups, names, what, tmp_path / "p.png", subtitle="s", n_show=5)
    fig = captured[-1]
    need90 = [int(np.argmax(np.cumsum(ratios[k]) >= 0.9)) + 1 for k in layers]
    curves = fig.axes[0].get_lines()[: len(layers)]
    assert [len(c.get_xdata()) for c in curves] == [max(need90)] * len(layers)
    assert np.allclose(curves[3].get_ydata(), np.cumsum(ratios["layer_3"])[: max(need90)])
    dims = {line.get_label(): np.asarray(line.get_ydata()).tolist() for line in fig.axes[1].get_lines()}
    assert dims["90% of variance"] == need90
    scatters = [ax for ax in fig.axes if ax.get_title() in [display.display_name(k) for k in layers]]
    first = scatters[0]
    assert first.get_xlabel() == f"PC1 ({100 * ratios['layer_0'][0]:.1f}% of variance)"
    assert first.get_ylabel() == f"PC2 ({100 * ratios['layer_0'][1]:.1f}%)"
    assert [t.get_text() for t in first.get_xticklabels()] != []  # tick labels kept
    assert any("only 1 frame" in t.get_text() for t in scatters[-1].texts)
    assert any(ax.get_ylabel() == "layer (dark = early)" for ax in fig.axes)  # the depth colour bar
    legend, texts = legend_entries(fig)
    assert texts == ["84", "174"] and legend.get_title().get_text() == "speaker"


def test_variance_distribution_histograms(tmp_path, captured):
    rng = np.random.default_rng(3)
    dim_var = {"layer_0": rng.lognormal(0, 2, 96), "layer_1": rng.lognormal(1, 1, 96)}
    plots.variance_distribution(["layer_0", "layer_1"], dim_var, tmp_path / "v.png", subtitle="s")
    for ax, key in zip(captured[-1].axes, ["layer_0", "layer_1"]):
        assert sum(p.get_height() for p in ax.patches) == 96
        median = np.median(dim_var[key])
        assert ax.get_title() == f"{display.display_name(key)}: median {median:.3g} (red)"
        assert any(np.allclose(line.get_xdata(), np.log10(median)) for line in ax.get_lines())


def test_span_measures_figure_trained_solid_control_dashed_baseline_line(tmp_path, captured):
    layers = ["layer_0", "layer_6", "layer_12"]
    trained = {"probe_accuracy": {"layer_0": 0.3, "layer_6": 0.8, "layer_12": 0.6}, "probe_majority_baseline": 0.2,
               "pwcca": {"layer_0": 0.1, "layer_6": 0.7, "layer_12": 0.5},
               "mi": {"layer_0": 0.05, "layer_6": 0.4, "layer_12": 0.3},
               "span_measures_info": {"n_segments": 1234, "n_classes": 39, "n_utterances": 20, "n_splits": 3}}
    control = {"probe_accuracy": {k: 0.35 for k in layers}, "probe_majority_baseline": 0.2,
               "pwcca": {k: -0.05 for k in layers}}
    bands = {"trained": ({"pwcca": {k: (v - 0.1, v + 0.1) for k, v in trained["pwcca"].items()}},
                         {"probe_accuracy": {k: 0.22 for k in layers}})}
    path = plots.span_measures(layers, trained, control, tmp_path / "s.png", subtitle="m", span="phone",
                               bands=bands, model="hubert-base")
    assert path.read_bytes()[:4] == b"\x89PNG"
    ax = captured[-1].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for label, values, style in (("label probe accuracy, hubert-base", trained["probe_accuracy"], "-"),
                                 ("label PWCCA, hubert-base", trained["pwcca"], "-"),
                                 ("label MI, hubert-base", trained["mi"], "-"),
                                 ("label probe accuracy, random init", control["probe_accuracy"], "--"),
                                 ("label PWCCA, random init", control["pwcca"], "--")):
        line = lines[label]
        assert np.asarray(line.get_xdata()).tolist() == [0, 6, 12]  # numeric layer index, gaps kept
        assert np.asarray(line.get_ydata()).tolist() == [values[k] for k in layers] and line.get_linestyle() == style
    assert "label MI, random init" not in lines  # not computed for the control: not drawn
    assert not any("trained" in label for label in lines)  # the model's tag names it
    assert np.asarray(lines["chance"].get_ydata()).tolist() == [0.22] * 3  # the probe's permuted-label chance
    bands_drawn = [c for c in ax.collections if len(c.get_paths())]
    assert len(bands_drawn) == 1  # the one interval given, as a band between low and high
    ys = bands_drawn[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.min(), 0.0) and np.isclose(ys.max(), 0.8)
    baseline = lines["majority baseline (0.20)"]
    assert np.asarray(baseline.get_ydata()).tolist() == [0.2, 0.2]
    assert ax.get_ylim()[0] < -0.05  # a negative PWCCA stays visible
    assert "1,234 phone segments, 39 classes, 20 utterances, 3 splits" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L0", "L6", "L12"]
    plots.span_measures(layers, trained, {"span_measures_skipped": "too few"}, tmp_path / "s2.png", subtitle="m",
                        span="phone")
    assert not any("random init" in line.get_label() for line in captured[-1].axes[0].get_lines())


def test_what_each_layer_encodes(tmp_path, captured):
    layers = ["layer_0", "layer_4", "layer_8"]
    measures = {"cca_mel": {"layer_0": 0.9, "layer_4": 0.6, "layer_8": 0.3},
                "speaker_probe_accuracy": {"layer_0": 0.5, "layer_4": None, "layer_8": 0.8},
                "speaker_majority_baseline": {k: 0.25 for k in layers},
                "mi": {k: None for k in layers}}
    control = {"cca_mel": {"layer_0": 0.8, "layer_4": 0.7, "layer_8": 0.7}}
    bands = {"trained": ({"cca_mel": {k: (0.2, 0.95) for k in layers}}, {"speaker_probe_accuracy": {k: 0.3 for k in
                                                                                                  layers}})}
    plots.what_each_layer_encodes(layers, measures, control, tmp_path / "w.png", subtitle="hubert-base-ls960",
                                  bands=bands, model="hubert-base-ls960")
    fig = captured[-1]
    panels = {ax.get_title(): {line.get_label(): line for line in ax.get_lines()} for ax in fig.axes
              if ax.get_visible()}  # small multiples: one panel per measure
    assert set(panels) == {"CCA with the log-mel filterbank", "speaker probe accuracy"}
    mel, speaker_panel = panels["CCA with the log-mel filterbank"], panels["speaker probe accuracy"]
    assert set(mel) == {"trained", "random init"}
    assert set(speaker_panel) == {"trained", "speaker majority baseline, trained", "chance"}
    assert np.asarray(speaker_panel["chance"].get_ydata()).tolist() == [0.3] * 3
    mel_ax = next(ax for ax in fig.axes if ax.get_title() == "CCA with the log-mel filterbank")
    assert [c for c in mel_ax.collections if len(c.get_paths())]  # the interval's band
    assert np.asarray(mel["trained"].get_xdata()).tolist() == [0, 4, 8]
    assert np.asarray(mel["random init"].get_ydata()).tolist() == [0.8, 0.7, 0.7]
    assert mel["trained"].get_linestyle() == "-" and mel["random init"].get_linestyle() == "--"
    assert mel["trained"].get_color() == mel["random init"].get_color()
    assert mel["trained"].get_color() != speaker_panel["trained"].get_color()
    assert {line.get_color() for p in panels.values() for k, line in p.items() if k != "chance"} <= set(
        plots.OKABE_ITO)  # the chance line is grey in every panel
    speaker = np.asarray(speaker_panel["trained"].get_ydata(), dtype=float)
    assert speaker[0] == 0.5 and np.isnan(speaker[1]) and speaker[2] == 0.8  # None is a gap, not a value
    assert speaker_panel["speaker majority baseline, trained"].get_linestyle() == ":"  # dotted, as the legend says
    _, texts = legend_entries(fig)
    assert {"hubert-base-ls960 (solid)", "random init (dashed)", "majority baseline (dotted)", "chance",
            "95 % interval (band)"} <= set(texts)
    notes = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "speaker PWCCA" in notes and "CCA with L0" in notes  # not computed in a drawn group: named
    assert "label" not in notes  # no label measure at all (a frame folder): not applicable, not "missing"
    assert plots.what_each_layer_encodes(layers, {"mi": {k: None for k in layers}}, None, tmp_path / "n.png",
                                         subtitle="s") is None
    assert not (tmp_path / "n.png").exists()


def test_cumulative_variance_axis_has_whole_components_and_line_plots_no_offset(tmp_path, captured):
    """The cumulative-variance x axis ticks whole components only (1, 2, 3 …); a line plot of nearly equal values
    writes them out instead of an offset above the axis (``1e-5+9.999e-1``)."""
    rng = np.random.default_rng(4)
    layers = ["layer_0", "layer_1", "layer_2"]
    ratios = {}
    for key in layers:
        spectrum = np.sort(rng.random(7))[::-1]
        ratios[key] = spectrum / spectrum.sum()
    groups, names, what = scatter.point_groups(np.repeat(["a", "b"], 10), None)
    scatter.pca_figure(layers, ratios, {k: rng.normal(size=(20, 2)) for k in layers}, groups, names, what,
                     tmp_path / "p.png", subtitle="s")
    curve = captured[-1].axes[0]
    captured[-1].canvas.draw()
    low, high = curve.get_xlim()
    ticks = [t for t in curve.get_xticks() if low <= t <= high]
    assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks)

    mean = {k: 1.0 + 1e-5 * i for i, k in enumerate(layers)}
    plots.feature_statistics(layers, mean, dict.fromkeys(layers, 1e-6), tmp_path / "f.png", subtitle="s")
    ax = captured[-1].axes[0]
    captured[-1].canvas.draw()
    assert ax.yaxis.get_offset_text().get_text() == ""
    values = [float(t.get_text().replace("−", "-")) for t in ax.get_yticklabels() if t.get_text()]
    assert all(abs(v - 1.0) < 1e-4 for v in values) and len(set(values)) == len(values)


def test_speakers_given_by_the_caller_colour_the_points():
    """An analysis passes the speakers it derived (SampleInfo.speakers); the stems are then not parsed again."""
    groups, names, what = scatter.point_groups(np.array(["x", "y", "z"]), None, color_by="speaker",
                                               speakers=np.array(["84", "1272", "84"]))
    assert what == "speaker" and names == ["84", "1272"] and groups.tolist() == [0, 1, 0]


def test_what_each_layer_encodes_draws_majority_baselines_and_every_k(tmp_path, captured):
    layers = ["layer_0", "layer_1", "layer_2"]
    measures = {"probe_accuracy": {"layer_0": 0.3, "layer_1": 0.4, "layer_2": 0.5},
                "gender_probe_accuracy": {"layer_0": 0.6, "layer_1": 0.7, "layer_2": 0.8},
                "pnmi": {"layer_0": 0.2, "layer_1": 0.3, "layer_2": 0.4},
                "speaker_pwcca": {k: 0.5 for k in layers}}
    per_k = {"pnmi": {"20": ({"layer_0": 0.2, "layer_1": 0.3, "layer_2": 0.4},
                             {k: (0.1, 0.5) for k in layers}, {k: 0.05 for k in layers}),
                      "50": ({"layer_0": 0.25, "layer_1": 0.35, "layer_2": 0.45}, None, None)}}
    majority = {"trained": {"probe_accuracy": 0.1, "gender_probe_accuracy": {"layer_0": 0.5, "layer_1": 0.5,
                                                                             "layer_2": 0.55}}}
    plots.what_each_layer_encodes(layers, measures, None, tmp_path / "w.png", subtitle="s", majority=majority,
                                  per_k={"trained": per_k})
    fig = captured[-1]
    panels = {ax.get_title(): {line.get_label(): line for line in ax.get_lines()} for ax in fig.axes
              if ax.get_visible()}
    probe = panels["label probe accuracy"]["majority baseline, trained"]  # the scalar of measure_info, as a line
    assert np.asarray(probe.get_ydata()).tolist() == [0.1] * 3 and probe.get_linestyle() == ":"
    gender = panels["gender probe accuracy"]["majority baseline, trained"]  # a per-layer baseline
    assert np.asarray(gender.get_ydata()).tolist() == [0.5, 0.5, 0.55]
    pnmi = panels["PNMI"]
    assert np.asarray(pnmi["K=20"].get_ydata()).tolist() == [0.2, 0.3, 0.4]
    assert np.asarray(pnmi["K=50"].get_ydata()).tolist() == [0.25, 0.35, 0.45]
    assert pnmi["K=20"].get_linestyle() != pnmi["K=50"].get_linestyle()  # one line style per K
    assert "trained" not in pnmi  # each K is its own line; no unlabelled duplicate of the first
    pnmi_ax = next(ax for ax in fig.axes if ax.get_title() == "PNMI")
    assert [t.get_text() for t in pnmi_ax.get_legend().texts] == ["K=20", "chance", "K=50"]
    bands_drawn = [c for c in pnmi_ax.collections if len(c.get_paths())]
    assert len(bands_drawn) == 1  # only K=20 has an interval here
    _, texts = legend_entries(fig)
    assert "majority baseline (dotted)" in texts
    notes = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "speaker PWCCA (stable)" not in notes  # a pasad-only twin is absent by design, not "not computed"
    assert "speaker probe accuracy" in notes  # a measure of the drawn speaker group that is missing: named
