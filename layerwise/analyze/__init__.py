"""Feature store → statistics → measures → result: the analysis run (compute → write the numbers → draw → write
the report), its options, the one streaming pass, the random-init control, the finish step and analysis shards.
No torch."""

from layerwise.analyze.options import AnalysisOptions
from layerwise.analyze.run import run_analysis

__all__ = ["AnalysisOptions", "run_analysis"]
