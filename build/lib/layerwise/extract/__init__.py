"""Audio files → model → feature store: the run (``run``), its options, the job list (scan → sample set → shard),
the run log, audio decoding, alignments, span pooling and the log-mel filterbank."""

from layerwise.extract.options import ExtractionOptions, SpanOptions
from layerwise.extract.run import extract_folder, run_extraction

__all__ = ["ExtractionOptions", "SpanOptions", "extract_folder", "run_extraction"]
