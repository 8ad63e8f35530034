"""What a run records about the software it ran with: the packages whose versions shape the numbers, and where the
extraction writes them (its manifests), and the command line of a run. Both halves import this: the extraction writes the versions into each
manifest (``extract.runlog``), the reports read them back and print their own (``report.runcard``).

No heavy imports: versions are read from the installed distributions' metadata, nothing is imported.
"""

from __future__ import annotations

import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from layerwise import __version__

# The packages whose versions decide an extraction's arrays: the model code (torch, transformers), the audio decoder
# and resampler (soundfile, soxr), and numpy / scikit-learn / scipy (dtype conversion, the span and fbank helpers).
EXTRACTION_PACKAGES = ("torch", "transformers", "numpy", "soundfile", "soxr", "scikit-learn", "scipy")
# The packages whose versions decide an analysis or a comparison: the statistics (numpy, scipy), the probes and PCA
# (scikit-learn), t-SNE (openTSNE) and the figures (matplotlib, seaborn).
ANALYSIS_PACKAGES = ("numpy", "scipy", "scikit-learn", "openTSNE", "matplotlib", "seaborn")
NOT_INSTALLED = "not installed"
# manifest.json, or manifest.shard-K-of-N.json for shard K of N (``extract.runlog.RunLog.manifest_path``)
MANIFEST_GLOB = "manifest*.json"


def installed_versions(packages, *, missing: str | None = None) -> dict[str, str]:
    """Distribution name -> installed version, for each of ``packages`` in their order.

    missing : what a package that is not installed maps to; None leaves it out of the dict.
    """
    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            if missing is not None:
                out[name] = missing
    return out


def extraction_versions() -> dict[str, str]:
    """The versions an extraction records in its manifests (``tool.versions``): EXTRACTION_PACKAGES that are
    installed."""
    return installed_versions(EXTRACTION_PACKAGES)


def analysis_versions() -> dict[str, str]:
    """The versions an analysis or comparison reports: layerwise first, then every ANALYSIS_PACKAGES entry
    (NOT_INSTALLED for one that is missing)."""
    return {"layerwise": __version__, **installed_versions(ANALYSIS_PACKAGES, missing=NOT_INSTALLED)}

def command_line(argv=None) -> str:
    """The command as a shell line (for the run card)."""
    args = sys.argv if argv is None else [sys.argv[0], *argv]
    return shlex.join([Path(args[0]).name, *args[1:]])
