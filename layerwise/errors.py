"""One error tree for the whole package; the CLIs catch :class:`LayerwiseError` once.

- :class:`UsageError`: bad arguments, settings or a folder that cannot be used as asked. The CLIs exit 2.
- :class:`InputError`: one input (an audio file, an alignment, a feature file) cannot be used. Extraction records it
  in ``failures.tsv`` with the path and goes on; the analysis stops with the message (exit 2).

Messages name parameters (``layers``, ``span``), not flags: the CLIs map them to flags when they print. Each message
says which file and what to do.
"""

from __future__ import annotations


class LayerwiseError(Exception):
    """Base of every error this package raises on purpose."""


class UsageError(LayerwiseError):
    """Bad usage: arguments, settings, a missing or unusable folder, a model that cannot be loaded. Exit status 2."""


class InputError(LayerwiseError):
    """One input file cannot be used (undecodable audio, alignment beyond the audio, damaged feature file)."""
