"""Streaming, mergeable statistics over feature files: per-layer moments, layers on mixed frame grids, cross-folder
moments and the seeded frame sample (PCA, t-SNE). numpy only, no torch."""
