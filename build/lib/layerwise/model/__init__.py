"""The torch side: the model adapter (audio in, every layer out), checkpoint loading and fingerprint, chunked long
audio and machine facts. Only this subpackage and extract/ import torch or transformers."""
