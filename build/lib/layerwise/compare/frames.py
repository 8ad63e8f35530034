"""Frames of one utterance from several folders, brought onto one time grid (see ``compare``'s module docstring).

The common grid is the coarsest of the compared layers; finer layers are average-pooled onto it with
:mod:`layerwise.contract.grid`. Counts that do not describe the same audio are refused naming the file.
"""

from __future__ import annotations

import numpy as np

from layerwise.contract import store
from layerwise.contract.grid import Grid, pool_frames
from layerwise.errors import CompareError

# Pooling maps coarse frame j onto fine frames j·stride … j·stride + kernel − 1; the last one can end up to
# hop_fine − 1 samples after the coarse window, so a pooled layer has the coarse count or one frame less.
MAX_POOLING_SHORTFALL = 1



def common_grid(grids: list[Grid | None]) -> Grid | None:
    """The coarsest grid (largest hop, then largest receptive field) among all compared layers; None when a layer's
    grid is unknown (then every grid that is known must be the same)."""
    known = {g for g in grids if g is not None}
    if None in grids:
        if len(known) > 1:
            raise CompareError(f"some files lack frame-geometry metadata and the others have several grids {known}: "
                               f"cannot match them in time; re-extract with the current extract_features.py")
        return None
    return max(known, key=lambda g: (g.hop, g.field))


# ---------------------------------------------------------------------------------------------- one utterance
def align(files: list[store.FeatureFile], layers: list[list[str]], grid: Grid | None,
          plans: list[dict[str, tuple[int, int]]]) -> tuple[list[np.ndarray], int]:
    """Every compared layer of one utterance on the common grid.

    files : the utterance's file in each folder; layers : each folder's compared keys; plans : per folder, layer ->
    (kernel, stride) for layers pooled onto ``grid`` (the others are on it). Returns per folder a (T, N_f) float64
    matrix (its layers side by side, in order) and the number of frames cut at the end.
    """
    direct = {}  # (folder, layer) -> raw count of layers on the common grid
    pooled = {}  # (folder, layer) -> count after pooling
    for f, (ff, keys) in enumerate(zip(files, layers)):
        for key in keys:
            rows = ff.layers[key].shape[0]
            if key in plans[f]:
                kernel, stride = plans[f][key]
                pooled[f, key] = max(0, (rows - kernel) // stride + 1)
            else:
                direct[f, key] = rows
    (f0, k0), n_ref = next(iter(direct.items()))
    for (f, key), rows in direct.items():
        if rows != n_ref:
            where = "" if grid is None else f" on the same {grid.hop}-sample grid"
            raise CompareError(
                f"{files[f].path}: {key} has {rows} frames but {files[f0].path} has {n_ref} ({k0}){where}; the "
                f"folders must hold features of the same audio — re-extract {files[f].path.name} or remove it")
    for (f, key), rows in pooled.items():
        if not n_ref - MAX_POOLING_SHORTFALL <= rows <= n_ref:
            raise CompareError(
                f"{files[f].path}: {key} gives {rows} frames when pooled onto the {grid.hop}-sample grid, but "
                f"{files[f0].path} has {n_ref} ({k0}); they do not describe the same audio — re-extract "
                f"{files[f].path.name} or remove it")
    count = min([n_ref, *pooled.values()])
    if files[0].intervals is not None:
        for ff in files[1:]:
            if ff.intervals is None or not np.array_equal(ff.intervals, files[0].intervals):
                raise CompareError(f"{ff.path}: its segments differ from {files[0].path}; span folders must be "
                                   f"extracted with the same alignments")
    frames = []
    for f, (ff, keys) in enumerate(zip(files, layers)):
        blocks = []
        for key in keys:
            x = ff.layers[key]
            blocks.append(pool_frames(x, *plans[f][key], n_out=count) if key in plans[f]
                          else np.asarray(x[:count], dtype=np.float64))
        stacked = np.concatenate(blocks, axis=1)
        if not np.isfinite(stacked).all():
            raise CompareError(f"{ff.path}: contains NaN or inf; re-extract it")
        frames.append(stacked)
    return frames, n_ref - count
