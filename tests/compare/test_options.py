"""CompareOptions: the comparison's settings, validated once, with messages that name the parameter."""

from pathlib import Path

import pytest

from layerwise.compare.options import DEFAULT_NUM_FILES, DEFAULT_OUTPUT_DIR, CompareOptions
from layerwise.errors import CompareError


def test_defaults_and_normalised_types():
    options = CompareOptions(features_dirs=["a", Path("b")], labels=["x", "y"], layers="all")
    assert options.features_dirs == (Path("a"), Path("b")) and options.labels == ("x", "y")
    assert options.layers is None and options.num_files == DEFAULT_NUM_FILES
    assert options.output_dir == DEFAULT_OUTPUT_DIR
    with pytest.raises(AttributeError):
        options.num_files = 3  # frozen


@pytest.mark.parametrize("settings, message", [
    ({"features_dirs": ["a"]}, "1 folder given; compare needs 2 or more"),
    ({"features_dirs": "a"}, "is one folder"),
    ({"features_dirs": ["a", "b"], "num_files": -1}, "num_files=-1 must be >= 0"),
    ({"features_dirs": ["a", "b"], "labels": ["x"]}, "labels: 1 names for 2 folders"),
    ({"features_dirs": ["a", "b"], "labels": ["x", "x"]}, "repeat a name"),
])
def test_bad_settings_are_refused_naming_the_parameter(settings, message):
    with pytest.raises(CompareError, match=message):
        CompareOptions(**settings)


@pytest.mark.parametrize("label", ["a\rb", "tab\there", "\x1b[31mred", "   ", "x" * 61])
def test_a_label_that_is_no_legend_name_is_refused(label, tmp_path):
    """Control characters (they split summary.csv rows, draw as boxes) and names longer than a legend can hold (a
    3000-character label made a 600-megapixel heatmap) are usage errors naming the rule."""
    with pytest.raises(CompareError, match="printable characters per folder"):
        CompareOptions(features_dirs=[tmp_path / "a", tmp_path / "b"], labels=[label, "b"])
    CompareOptions(features_dirs=[tmp_path / "a", tmp_path / "b"], labels=["x" * 60, "naïve $x$ 50 %"])  # accepted
