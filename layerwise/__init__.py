"""layerwise: exact per-layer features of self-supervised speech models, and analyses of them.

Flow: audio (audio.py) -> model adapter (model.py) -> feature store (store.py) -> streaming statistics
(stats.py) -> figures and report (plots.py, report.py). `extract.py` and `analyze.py` orchestrate the two halves.
The analysis half never imports torch or transformers.
"""

__version__ = "0.1.0"
