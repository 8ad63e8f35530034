"""contract/provenance.py and the shared display helpers of contract/names.py: checked against importlib.metadata
and hand-written expectations."""

from __future__ import annotations

from importlib.metadata import version

import pytest

import layerwise
from layerwise.contract import names, provenance


def test_installed_versions_read_the_distribution_metadata_in_order():
    got = provenance.installed_versions(("scipy", "numpy", "no-such-package-xyz"))
    assert list(got.items()) == [("scipy", version("scipy")), ("numpy", version("numpy"))]
    got = provenance.installed_versions(("no-such-package-xyz", "numpy"), missing="absent")
    assert list(got.items()) == [("no-such-package-xyz", "absent"), ("numpy", version("numpy"))]


def test_extraction_and_analysis_versions():
    extraction = provenance.extraction_versions()
    assert list(extraction) == [p for p in provenance.EXTRACTION_PACKAGES if p in extraction]
    assert extraction["numpy"] == version("numpy") and extraction["transformers"] == version("transformers")
    analysis = provenance.analysis_versions()
    assert list(analysis) == ["layerwise", *provenance.ANALYSIS_PACKAGES]
    assert analysis["layerwise"] == layerwise.__version__ and analysis["seaborn"] == version("seaborn")


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0.0 s"), (42.04, "42.0 s"), (119.94, "119.9 s"), (120.0, "2.0 min"), (210.0, "3.5 min"),
    (7199.0, "120.0 min"), (7200.0, "2.00 h"), (8100.0, "2.25 h"), (None, "not recorded")])
def test_format_duration(seconds, text):
    assert names.format_duration(seconds) == text


def test_layer_range():
    assert names.layer_range(["layer_0", "layer_1", "layer_12"]) == "L0 … L12 (3)"
    assert names.layer_range(["conv_3"]) == "C3"
