"""LibriSpeech and alignment downloads (checksummed, resumable, safe extraction); ``python -m layerwise.data``."""

from layerwise.data.librispeech import download_alignments, download_split

__all__ = ["download_alignments", "download_split"]
