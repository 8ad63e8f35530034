"""Figures: what is drawn (lines, styles, colours, legend entries), read back from the matplotlib figure."""

from collections import Counter

import matplotlib.colors
import numpy as np
import pytest

from layerwise import plots


@pytest.fixture
def captured(monkeypatch):
    """The last figure a plotting function made, before it is saved and closed."""
    figures = []
    real_save = plots._save

    def keep(fig, path):
        figures.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_many_phone_classes_colour_the_most_frequent_and_grey_the_rest(tmp_path, captured):
    rng = np.random.default_rng(0)
    phones = [f"P{i:02d}" for i in range(25)]
    labels = rng.choice(phones, size=800, p=np.arange(25, 0, -1) / np.arange(25, 0, -1).sum())
    groups, names, what = plots.point_groups(np.full(800, "utt"), labels)
    counts = Counter(labels.tolist())
    top = sorted(p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: plots.MAX_COLOUR_GROUPS - 1])
    assert what == "label" and names == top + ["other"]
    for label, group in zip(labels, groups):
        assert names[group] == (label if label in top else "other")

    coords = rng.normal(size=(800, 2))
    plots.tsne_figure(["layer_0", "layer_1"], {"layer_0": coords, "layer_1": coords}, groups, names, what,
                      tmp_path / "t.png", subtitle="x")
    legend = captured[-1].legends[0]
    assert [t.get_text() for t in legend.texts] == names and legend.get_title().get_text() == "label"
    colours = [matplotlib.colors.to_hex(h.get_facecolor()[0]) for h in legend.legend_handles]
    assert colours[-1] == matplotlib.colors.to_hex("0.7") and len(set(colours[:-1])) == len(names) - 1


def test_few_classes_are_all_coloured():
    groups, names, _ = plots.point_groups(np.array(["u1"] * 4), np.array(["S", "AA", "S", "K"]))
    assert names == ["AA", "K", "S"] and groups.tolist() == [2, 0, 2, 1]
    groups, names, what = plots.point_groups(np.array(["u2", "u1", "u2"]), None)
    assert what == "utterance" and names == ["u1", "u2"] and groups.tolist() == [1, 0, 1]


def test_span_measures_figure_trained_solid_control_dashed_baseline_line(tmp_path, captured):
    layers = ["layer_0", "layer_6", "layer_12"]
    trained = {"probe_accuracy": {"layer_0": 0.3, "layer_6": 0.8, "layer_12": 0.6}, "probe_majority_baseline": 0.2,
               "pwcca": {"layer_0": 0.1, "layer_6": 0.7, "layer_12": 0.5},
               "mi": {"layer_0": 0.05, "layer_6": 0.4, "layer_12": 0.3},
               "span_measures_info": {"n_segments": 1234, "n_classes": 39, "n_utterances": 20, "n_splits": 3}}
    control = {"probe_accuracy": {k: 0.35 for k in layers}, "probe_majority_baseline": 0.2,
               "pwcca": {k: -0.05 for k in layers}}
    path = plots.span_measures(layers, trained, control, tmp_path / "s.png", subtitle="m", span="phone")
    assert path.read_bytes()[:4] == b"\x89PNG"
    ax = captured[-1].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for label, values, style in (("probe accuracy, trained", trained["probe_accuracy"], "-"),
                                 ("PWCCA, trained", trained["pwcca"], "-"),
                                 ("MI (k-means NMI), trained", trained["mi"], "-"),
                                 ("probe accuracy, random init", control["probe_accuracy"], "--"),
                                 ("PWCCA, random init", control["pwcca"], "--")):
        line = lines[label]
        assert np.asarray(line.get_xdata()).tolist() == [0, 6, 12]  # numeric layer index, gaps kept
        assert np.asarray(line.get_ydata()).tolist() == [values[k] for k in layers] and line.get_linestyle() == style
    assert "MI (k-means NMI), random init" not in lines  # not computed for the control: not drawn
    baseline = lines["majority baseline (0.20)"]
    assert np.asarray(baseline.get_ydata()).tolist() == [0.2, 0.2]
    assert ax.get_ylim()[0] < -0.05  # a negative PWCCA stays visible
    assert "1,234 phone segments, 39 classes, 20 utterances, 3 splits" in ax.get_title()
    plots.span_measures(layers, trained, {"span_measures_skipped": "too few"}, tmp_path / "s2.png", subtitle="m",
                        span="phone")
    assert not any("random init" in line.get_label() for line in captured[-1].axes[0].get_lines())
