"""The analysis run: feature files -> one streaming pass (stats + subsample) -> numbers -> figures and report.

Each selected file is read once and folded into :class:`~layerwise.stats.LayerStats` (exact moments, CKA, cosine)
and :class:`~layerwise.embed.FrameSampler` (bounded subsample for scatters), so memory does not grow with the number
of files (span folders additionally keep their segment features for the span measures and a random-init control, see
``spanalysis``).
Bad input raises :class:`AnalysisError` with a message saying what to do; the CLI prints it and exits 2.
Never imports torch or transformers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import embed, plots, report, spanalysis, store
from .stats import LayerStats
from .errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_NUM_FILES = 3
DEFAULT_MAX_POINTS = 500  # t-SNE of 13 layers x 500 points: 39-41 s measured on 2 busy cores (1000: 83 s)
N_PCA_COMPONENTS = 20  # explained-variance ratios written to summary.json per layer
SIMILARITY_CHOICES = ("cka", "cosine", "both")
IDENTITY_META = ("model_name", "rep_type", "span", "random_init")  # must agree across the files analysed


class AnalysisError(UsageError):
    """Bad usage or input (missing folder, corrupt or inconsistent files, too few frames): a message, exit 2."""


def select_files(features_dir: str | Path, num_files: int) -> list[Path]:
    """The first ``num_files`` ``*_features.npz`` of the folder, sorted by file name (0 = all)."""
    folder = Path(features_dir)
    if num_files < 0:
        raise AnalysisError(f"--num_files={num_files} must be >= 0 (0 = all files)")
    if not folder.is_dir():
        raise AnalysisError(f"features folder {folder} does not exist; run extract_features.py first or pass "
                            f"--features_dir with its output folder")
    files = store.list_feature_files(folder)
    if not files:
        raise AnalysisError(f"no *{store.FEATURE_SUFFIX} files in {folder}; run extract_features.py first or pass "
                            f"--features_dir with its output folder")
    return files if num_files == 0 else files[:num_files]


def parse_layers(spec: str | None, available: list[str]) -> list[str]:
    """``None``/``"all"`` -> every available key; ``"0,6,12"`` -> ``layer_0, layer_6, layer_12`` (or ``conv_k`` when
    the files hold local features); full key names also accepted. Returned in numeric order."""
    if spec is None or spec.strip().lower() == "all":
        return list(available)
    prefixes = {store.parse_layer_key(k)[0] for k in available}
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item.isdigit():
            if len(prefixes) != 1:
                raise AnalysisError(f"--layers {item!r} is ambiguous: the files hold {available}; name the key")
            item = f"{next(iter(prefixes))}_{int(item)}"
        elif store.parse_layer_key(item) is None:
            raise AnalysisError(f"--layers: {item!r} is neither a layer index nor a key like layer_3")
        if item not in available:
            raise AnalysisError(f"--layers: {item} is not in the files; they hold {available}")
        chosen.append(item)
    if not chosen:
        raise AnalysisError(f"--layers {spec!r} selects no layer; the files hold {available}")
    return store.sort_layer_keys(set(chosen))


@dataclass
class Collected:
    """What the streaming pass leaves: exact statistics, the subsample, span features (or None), provenance."""

    files: list[str]
    layers: list[str]
    dims: list[int]
    stats: LayerStats
    sample: embed.Subsample
    spans: spanalysis.SpanFeatures | None
    meta: dict


def _read(path: Path, layers: list[str] | None) -> store.FeatureFile:
    try:
        return store.read_features(path, layers)
    except store.FeatureFileError as err:
        raise AnalysisError(f"{err}. All files must come from one extract_features.py run (same model, "
                            f"--rep_type, --span, --layers); re-run it (it recomputes damaged files) or remove "
                            f"the file") from err


def _check_file(ff: store.FeatureFile, layers, dims, first: store.FeatureFile) -> None:
    name = ff.path.name
    frames = {k: ff.layers[k].shape[0] for k in layers}
    if len(set(frames.values())) != 1:
        raise AnalysisError(f"{name}: layers have different frame counts {frames}; the file is damaged")
    for key, dim in zip(layers, dims):
        if ff.layers[key].shape[1] != dim:
            raise AnalysisError(f"{name}: {key} has dim {ff.layers[key].shape[1]}, but {first.path.name} has {dim}; "
                                f"the folder mixes models — analyse one extraction at a time")
        if not np.isfinite(ff.layers[key]).all():
            raise AnalysisError(f"{name}: {key} contains NaN or inf (float16 overflow?); re-extract it")
    for key in IDENTITY_META:
        if key in first.meta and ff.meta.get(key) != first.meta[key]:
            raise AnalysisError(f"{name}: {key}={ff.meta.get(key)!r}, but {first.path.name} has {first.meta[key]!r}; "
                                f"the folder mixes extractions — analyse one at a time")
    if (ff.labels is None) != (first.labels is None):
        raise AnalysisError(f"{name} and {first.path.name}: one has span labels, the other not (mixed frame and "
                            f"span files)")
    if ff.labels is not None and len(ff.labels) != next(iter(frames.values())):
        raise AnalysisError(f"{name}: {len(ff.labels)} labels for {next(iter(frames.values()))} rows")


def collect(files: list[Path], layer_spec: str | None, *, seed: int, max_points: int) -> Collected:
    """The one streaming pass: read each file once, fold it into the statistics, the subsample and span features."""
    from tqdm import tqdm

    first = _read(files[0], None)
    available = list(first.layers)
    if len({store.parse_layer_key(k)[0] for k in available}) > 1:
        raise AnalysisError(f"{first.path.name} mixes layer_k and conv_k arrays ({available})")
    layers = parse_layers(layer_spec, available)
    dims = [first.layers[k].shape[1] for k in layers]
    stats = LayerStats(layers, dims)
    sampler = embed.FrameSampler(layers, dims, max_points=max_points, seed=seed)
    spans = spanalysis.SpanFeatures() if first.labels is not None else None
    stems = []
    for i, path in enumerate(tqdm(files, desc="analysing", unit="file", disable=None)):
        ff = first if i == 0 else _read(path, layers)
        _check_file(ff, layers, dims, first)
        arrays = {k: ff.layers[k] for k in layers}
        if arrays[layers[0]].shape[0] == 0:
            log.warning("%s has no frames; skipped", path.name)
            continue
        stats.update(arrays)
        sampler.add(ff.stem, arrays, ff.labels)
        if spans is not None:
            spans.add(ff.stem, arrays, ff.labels)
        stems.append(ff.stem)
    return Collected(stems, layers, dims, stats, sampler.result(), spans, first.meta)


def run_analysis(
    *,
    features_dir: str | Path,
    output_dir: str | Path,
    num_files: int = DEFAULT_NUM_FILES,
    layers: str | None = None,
    seed: int = 0,
    max_points: int = DEFAULT_MAX_POINTS,
    similarity: str = "both",
    control_dir: str | Path | None = spanalysis.CONTROL_AUTO,
    probe_splits: int = spanalysis.DEFAULT_PROBE_SPLITS,
) -> dict:
    """Analyse a folder of feature files; write figures, summary.json/csv, per_dim_stats.npz and report.html.

    layers : ``None``/``"all"`` or a comma list of indices/keys. similarity : which heatmaps to draw ("cka",
    "cosine", "both"); both matrices are always computed and written to summary.json.
    control_dir, probe_splits : span folders only — the random-init control (``"auto"``: the sibling
    ``{parent}-random_init/{name}`` when present; ``None``/``"none"``: no control; else a folder) and the number of
    seeded utterance splits the probe/PWCCA are averaged over.
    Returns the summary dict (as written to summary.json, before NaN -> null).
    """
    if similarity not in SIMILARITY_CHOICES:
        raise AnalysisError(f"--similarity={similarity!r} not in {SIMILARITY_CHOICES}")
    if probe_splits < 1:
        raise AnalysisError(f"--probe_splits={probe_splits} must be >= 1")
    if max_points < embed.MIN_TSNE_POINTS:
        raise AnalysisError(f"--max_points={max_points} must be >= {embed.MIN_TSNE_POINTS} (t-SNE needs that many)")
    files = select_files(features_dir, num_files)
    start = time.perf_counter()
    data = collect(files, layers, seed=seed, max_points=max_points)
    stats, sample, keys = data.stats, data.sample, data.layers
    log.info("read %d files, %d frames in %.1f s", len(data.files), stats.n, time.perf_counter() - start)
    unit = "frames" if data.meta.get("span", "frame") == "frame" else f"{data.meta['span']} segments"
    if stats.n < embed.MIN_TSNE_POINTS:
        raise AnalysisError(f"only {stats.n} {unit} in {len(data.files)} files; PCA and t-SNE need at least "
                            f"{embed.MIN_TSNE_POINTS} — use more files (--num_files, 0 = all)")
    control, control_folder = None, None
    if data.spans is not None:  # read (and check) the control before anything is written
        try:
            control_folder = spanalysis.control_folder(features_dir, control_dir)
            if control_folder is not None:
                control = spanalysis.read_control(control_folder, data.spans, data.meta, dict(zip(keys, data.dims)))
                log.info("random-init control: %d files from %s", len(control.stems), control_folder)
        except spanalysis.ControlError as err:
            raise AnalysisError(str(err)) from err

    notes = []
    mean, std = stats.layer_mean(), stats.layer_std()
    dim_mean = {k: stats.dim_mean(k) for k in keys}
    dim_var = {k: stats.dim_var(k) for k in keys}
    cka, cosine = stats.cka(), stats.cosine()
    if len(set(data.dims)) > 1:
        notes.append("cosine is undefined (null) between layers of different dims")
    ratios, projections, embeddings = {}, {}, {}
    for key, dim in zip(keys, data.dims):
        try:
            ratio, comps = embed.pca_from_covariance(stats.covariance(key), stats.n, dim)
        except embed.EmbedError as err:
            notes.append(f"{key}: PCA not computed: {err}")
            ratios[key], projections[key] = np.array([np.nan]), None
            continue
        ratios[key] = ratio
        coords = embed.project(sample.points[key], dim_mean[key], comps[:2])
        projections[key] = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    start = time.perf_counter()
    for key in keys:
        try:
            embeddings[key] = embed.tsne_embed(sample.points[key], seed=seed)
        except embed.EmbedError as err:
            notes.append(f"{key}: t-SNE not computed: {err}")
            embeddings[key] = f"t-SNE not computed:\n{err}"
    log.info("t-SNE of %d points × %d layers in %.1f s", len(sample), len(keys), time.perf_counter() - start)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = data.meta.get("model_name", "unknown model (no metadata)")
    subtitle = f"{model}: {len(data.files)} files, {stats.n:,} {unit}"
    groups, names, what = plots.point_groups(sample.utterances, sample.labels)
    figures = ["feature_statistics.png"]
    plots.feature_statistics(keys, mean, std, out / figures[0], subtitle=subtitle)
    for kind, matrix in (("cka", cka), ("cosine", cosine)):
        name = f"layer_similarity_{kind}.png"
        if similarity in (kind, "both"):
            plots.similarity_heatmap(matrix, keys, out / name, kind=kind, subtitle=subtitle)
            figures.append(name)
        elif (out / name).exists():
            notes.append(f"{name} in {out} is from an earlier run (this run drew only --similarity {similarity})")
    plots.pca_figure(keys, ratios, projections, groups, names, what, out / "pca.png",
                     subtitle=f"{subtitle}; scatter: {len(sample)} sampled", n_show=N_PCA_COMPONENTS)
    plots.tsne_figure(keys, embeddings, groups, names, what, out / "tsne.png",
                      subtitle=f"{len(sample)} of {stats.n:,} {unit} sampled (seed {seed}); {subtitle}")
    plots.variance_distribution(keys, dim_var, out / "variance_distribution.png", subtitle=subtitle)
    figures += ["pca.png", "tsne.png", "variance_distribution.png"]

    # ---- span analysis (issue 5): probe accuracy, PWCCA, MI for phone/word span folders, and the control ----
    span_summary, span_notes = spanalysis.analyse(data.spans, control, control_dir=control_folder, seed=seed,
                                                  n_splits=probe_splits)
    notes += span_notes
    if "probe_accuracy" in span_summary:
        plots.span_measures(keys, span_summary, span_summary.get(spanalysis.CONTROL_KEY), out / "span_measures.png",
                            subtitle=subtitle, span=data.meta.get("span", "span"))
        figures.append("span_measures.png")

    summary = {
        "files": data.files, "layers": keys, "n_frames": int(stats.n), "mean": mean, "std": std,
        "cka": cka.tolist(), "cosine": cosine.tolist(),
        "pca_explained_variance_ratio": {k: ratios[k][:N_PCA_COMPONENTS].tolist() for k in keys},
        # extra keys
        "seed": seed, "features_dir": str(features_dir), "n_files": len(data.files), "max_points": max_points,
        "n_points": len(sample), "similarity_drawn": similarity, "dims": dict(zip(keys, data.dims)),
        "model_name": data.meta.get("model_name"), "rep_type": data.meta.get("rep_type"),
        "span": data.meta.get("span", "frame"), "per_dim_stats": report.PER_DIM_NPZ, "figures": figures,
        "notes": notes, **span_summary,
    }
    rows = []
    for i, key in enumerate(keys):
        cumulative = np.cumsum(ratios[key])
        rows.append({
            "layer": key, "dim": data.dims[i], "n_frames": int(stats.n), "mean": mean[key], "std": std[key],
            "dim_var_median": float(np.median(dim_var[key])), "dim_var_max": float(dim_var[key].max()),
            "pca_evr_pc1": float(ratios[key][0]), "pca_components_90": int(np.searchsorted(cumulative, 0.9) + 1),
            "cka_with_previous": float(cka[i, i - 1]) if i else float("nan"),
            **report.span_columns(span_summary, key),
        })
    report.write_per_dim(out, dim_mean, dim_var)
    report.write_summary_csv(out, rows)
    report.write_summary_json(out, summary)
    report.write_html(out, summary, rows, figures, notes)
    for note in notes:
        log.warning(note)
    log.info("wrote %s and %d figures to %s", report.REPORT_HTML, len(figures), out)
    return summary
