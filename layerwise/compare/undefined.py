"""Why a number of a comparison is missing: every NaN/None the comparison holds gets its reason, and every requested
number that could not be computed is named under ``unavailable`` (the README exit rule: 1 when some is missing).

A layer constant over the compared frames (zero variance in every dimension: ``Xcᵀ Xc = 0``) has no linear CKA with
any layer (``‖XcᵀYc‖² / (‖XcᵀXc‖ ‖YcᵀYc‖)`` is 0/0) and no PCA (no variance to explain). The first compared layer of
a folder has no previous layer: its ``cka_with_previous`` is empty by definition, which is not a missing number.
No torch; reads only the accumulated statistics' covariances.
"""

from __future__ import annotations

import math

import numpy as np

NO_PREVIOUS = "first layer of its folder: no previous layer"  # the one cell that is empty by definition
NOT_FINITE = "not a finite number (undefined for these frames)"  # a NaN no other reason explains (never expected)
CKA_MEASURES = ("cka_between", "cka_same_layer")
FOLDER_MEASURES = ("cka_with_previous", "pca_components_90", "pca_explained_variance_ratio")


def constant_layers(stats, folders, unit: str) -> list[dict[str, str]]:
    """Per folder, layer -> ``"constant over the N compared <unit> (zero variance)"`` for each compared layer with a
    zero covariance over the ``stats.n`` compared rows; ``stats`` a filled :class:`~layerwise.stats.cross.CrossStats`."""
    why = f"constant over the {stats.n} compared {unit} (zero variance)"
    return [{key: why for k, key in enumerate(folder.layers) if not np.any(stats.covariance(f, k))}
            for f, folder in enumerate(folders)]


def _cka_why(named: list[tuple[str, str | None]]) -> str:
    """The reason of a NaN CKA from its two layers' (name, why constant or None)."""
    why = [f"{name} {text}" for name, text in named if text]
    return "; ".join(why) + ": CKA undefined (0/0)" if why else NOT_FINITE


def cka_cell_reasons(matrix: np.ndarray, a, b, constant_a: dict[str, str],
                     constant_b: dict[str, str]) -> dict[tuple[int, int], str]:
    """(i, j) -> why cell (i, j) of the CKA matrix (L_a, L_b) of folders ``a`` (rows) and ``b`` (columns) is NaN:
    its row or column layer is constant (``constant_a/b``: layer -> why), CKA being 0/0 there."""
    out = {}
    for i, j in zip(*np.nonzero(~np.isfinite(matrix))):
        ka, kb = a.layers[i], b.layers[j]
        out[int(i), int(j)] = _cka_why([(f"{a.label} {ka}", constant_a.get(ka)), (f"{b.label} {kb}",
                                                                                    constant_b.get(kb))])
    return out


def previous_reasons(values: np.ndarray, keys: list[str], constant: dict[str, str]) -> dict[str, str]:
    """layer -> why its ``cka_with_previous`` (values (L,)) is NaN: first layer, or it or its predecessor constant."""
    out = {}
    for k, key in enumerate(keys):
        if math.isfinite(float(values[k])):
            continue
        if k == 0:
            out[key] = NO_PREVIOUS
            continue
        out[key] = _cka_why([(keys[k - 1], constant.get(keys[k - 1])), (key, constant.get(key))])
    return out


def unavailable(pairs_reasons: list[tuple[str, str, dict]], folder_reasons: list[tuple[str, dict]]) -> dict[str, str]:
    """measure -> why, for every requested number that could not be computed.

    pairs_reasons : (label a, label b, {measure: {cell: why}}) per pair; folder_reasons : (label, {measure:
    {layer: why}}) per folder. ``NO_PREVIOUS`` is empty by definition and not listed."""
    lines: dict[str, list[str]] = {}
    for label_a, label_b, measures in pairs_reasons:
        for measure, cells in measures.items():
            texts = list(dict.fromkeys(cells.values()))
            if texts:
                lines.setdefault(measure, []).append(f"{label_a} vs {label_b}: {'; '.join(texts)}")
    for label, measures in folder_reasons:
        for measure, layers in measures.items():
            named = [f"{key}: {why}" for key, why in layers.items() if why != NO_PREVIOUS]
            if named:
                lines.setdefault(measure, []).append(f"{label}: " + "; ".join(named))
    return {measure: " | ".join(texts) for measure, texts in lines.items()}
