"""The same measures across folders: models, checkpoints and their controls, layer by layer. No torch."""

from layerwise.compare.options import CompareOptions
from layerwise.compare.run import compare, run_comparison

__all__ = ["CompareOptions", "compare", "run_comparison"]
