"""layerwise: exact per-layer features of self-supervised speech models, and analyses of what each layer encodes.

One subpackage per stage (docs/architecture.md): ``extract`` (audio → ``model`` → feature store) and ``analyze``
(feature store → ``stats`` → ``measures`` → result → ``report``); ``compare`` does the same across folders; ``contract``
holds what both halves agree on; ``data`` downloads LibriSpeech; ``cli`` holds the command lines; ``errors`` the one
exception tree. The analysis half never imports torch or transformers.
"""

__version__ = "0.1.0"
