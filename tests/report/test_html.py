"""html.py and runcard.py: the files an analysis writes, from a hand-built AnalysisResult and a hand-written
extraction manifest; every value checked against those inputs (or numpy / importlib.metadata directly)."""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import html as html_module
import json
import re
import shlex
import shutil
import subprocess
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from layerwise.analyze import run as analysis_run
from layerwise.contract import results
from layerwise.report import figures, html, runcard

LAYERS = ["layer_0", "layer_1", "layer_2"]
MANIFEST = {
    "tool": {"name": "layerwise", "version": "0.1.0", "python": "3.11.2", "versions": {"torch": "2.13.0",
                                                                                        "transformers": "5.23.0"}},
    "command": ["extract_features.py", "--audio_dir", "/data/my audio", "--layers", "0-2"],
    "run": {"model_name": "/home/me/ckpt/hubert-tiny"},
    "counts": {"files": 5, "done": 3, "skipped": 1, "failed": 1, "missing_alignment": 0, "audio_hours": 0.5,
               "wall_seconds": 900.0, "interrupted": False, "not_taken": 2, "realtime_factor": 2.0},
    "failures": [{"path": "/data/my audio/19-198-0002.flac", "reason": "cannot decode: <bad header>"}],
}


def make_result(features_dir: Path, *, seed: int = 0) -> results.AnalysisResult:
    rng = np.random.default_rng(seed)
    n_points = 40
    layers = []
    for i, key in enumerate(LAYERS):
        spectrum = np.sort(rng.random(8))[::-1]
        ratios = spectrum / spectrum.sum()
        layers.append(results.LayerResult(
            key=key, dim=8, n_frames=1000, frame_rate=50.0, mean=float(i), std=1.0 + i, dim_mean=rng.normal(size=8),
            dim_var=rng.random(8) + 0.1, explained_variance_ratio=ratios,
            components_90=int(np.argmax(np.cumsum(ratios) >= 0.9)) + 1,
            projection=rng.normal(size=(n_points, 2)), embedding=None if i == 2 else rng.normal(size=(n_points, 2)),
            cka_with_previous=None if i == 0 else 0.9, reasons={"tsne": "too few points"} if i == 2 else {}))
    cka = np.array([[1.0, 0.95, 0.91], [0.95, 1.0, 0.97], [0.91, 0.97, 1.0]])
    stems = np.repeat(["19-198-0000", "19-198-0001", "26-495-0000", "26-495-0001"], n_points // 4)
    sample = results.SampleInfo(utterances=stems, frame_index=np.arange(n_points), labels=None,
                                speakers=np.array([s.split("-")[0] for s in stems]))
    run = results.RunInfo(features_dir=str(features_dir), output_dir=None, seed=seed, max_points=500, num_files=0,
                          similarity="both", wall_s={"read": 1.5, "tsne": 150.0, "total": 160.0},
                          command="visualize_features.py --features_dir x --color_by speaker")
    meta = {"model_name": "/home/me/ckpt/hubert-tiny", "model_revision": "abc123", "rep_type": "contextualized",
            "span": "frame", "normalize": False, "compute_dtype": "float32", "save_dtype": "float32",
            "random_init": False, "seed": None, "sample_rate": 16000}
    return results.AnalysisResult(
        files=sorted(set(stems)), layers=layers, cka=cka, cosine=np.where(np.eye(3) > 0, 1.0, np.nan),
        similarity_frames=np.full((3, 3), 1000), similarity_rule="same rate", sample=sample, meta=meta, run=run,
        notes=["only 4 utterances: <few>"], unavailable={"cca_mel": "the files hold no fbank (extract with --fbank)"})


class Page(HTMLParser):
    """Run card rows, list items, headings and images of report.html."""

    def __init__(self):
        super().__init__()
        self.card, self.items, self.headings, self.images, self.links = {}, [], [], [], []
        self._stack, self._text, self._label = [], "", None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        for name in ("src", "href"):
            if name in attrs:
                self.links.append(attrs[name])
        self._stack.append(tag)
        self._text = ""

    def handle_endtag(self, tag):
        text = self._text.strip()
        if tag == "th":
            self._label = text
        elif tag == "td" and self._label is not None:
            self.card.setdefault(self._label, text)
            self._label = None
        elif tag == "li":
            self.items.append(text)
        elif tag in ("h1", "h2"):
            self.headings.append(text)
        self._stack.pop()

    def handle_data(self, data):
        self._text += data


class Tables(HTMLParser):
    """Every table of a page as rows of cell texts (header row first); ``<wbr>`` joins the header's parts."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def layer_tables(page: str) -> list[list[dict]]:
    """The per-layer tables of report.html (those with a ``layer`` column) as lists of {column: cell text}."""
    parser = Tables()
    parser.feed(page)
    return [[dict(zip(t[0], row)) for row in t[1:]] for t in parser.tables if t and t[0][:1] == ["layer"]]


def unexplained_dashes(page: str, notes: list[str]) -> list[str]:
    """``layer/column`` of every ``—`` cell whose column has neither a note naming it nor a legend entry that
    explains its dash."""
    out = []
    for table in layer_tables(page):
        for row in table:
            for column, text in row.items():
                measure = column.removeprefix("random_init_")
                named = any(measure in note or (measure.startswith("pca_") and f"{row['layer']}: pca" in note)
                            for note in notes)
                if text == "—" and not named and "—" not in html.COLUMN_HELP.get(measure, ""):
                    out.append(f"{row['layer']}/{column}")
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One analysis output folder shared by the tests that read it (drawing the figures takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("report")
    features = tmp_path / "features"
    features.mkdir()
    (features / "manifest.json").write_text(json.dumps(MANIFEST))
    result = make_result(features)
    out = tmp_path / "analysis"
    drawn = figures.draw_all(result, out)
    paths = analysis_run.write_numbers(result, out)  # what an analysis run writes: the numbers, then the report
    paths = sorted({*paths, *analysis_run.write(result, drawn, out)})
    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    return result, drawn, out, paths, page


@pytest.mark.slow
def test_run_card_matches_the_run(written):
    result, _, _, _, page = written
    card = page.card
    assert card["Model"] == "/home/me/ckpt/hubert-tiny (revision abc123)"
    assert card["Representation"] == "rep_type contextualized, span frame"
    assert card["Layers"].startswith("L0, L1, L2 — L0 … L2 = stored keys layer_0 … layer_2")
    assert card["Settings"] == ("waveform normalisation off, compute dtype float32, stored as float32, sample "
                                 "rate 16000 Hz")
    # 4 files, 1000 frames at 50 frames/s = 20 s; the manifest: 3 + 1 of 5 complete, 1 failed, 0.5 h = 30.0 min
    assert card["Data"].startswith("4 files analysed, 1,000 frames (≈ 20.0 s of audio: L0 at 50 frames/s)")
    assert ("4 of 5 files complete (3 written, 1 already complete), 1 failed, 2 not taken, 30.0 min of audio"
            in card["Data"])
    assert card["Seeds"].startswith("analysis seed 0 (frame subsample of 40 points")
    assert card["Seeds"].endswith("no extraction seed (trained weights)")
    assert card["Analysis"] == "all files, similarity both, max_points 500, color_by auto"
    assert card["Wall time"] == ("extraction 15.0 min, 2.0× realtime; analysis 2.7 min (read 1.5 s, tsne 2.5 min)")
    assert f"numpy {version('numpy')}" in card["Versions"] and f"seaborn {version('seaborn')}" in card["Versions"]
    assert "extraction: torch 2.13.0, transformers 5.23.0, python 3.11.2" in card["Versions"]
    assert card["Commands"] == (f"extraction: {shlex.join(MANIFEST['command'])}\n"
                                f"analysis: {result.run.command}")
    assert re.match(r"report \d{4}-\d\d-\d\d \d\d:\d\d UTC; extraction finished \d{4}-", card["Date"])
    assert page.headings[:3] == ["Layer-wise analysis: hubert-tiny", "Contents", "Run card"]  # the tag; card: path
    assert card["Control"] == "none (this run computes no measure with a control)"


def test_every_note_and_unavailable_measure_is_listed_with_its_reason(written):
    _, _, out, _, page = written
    assert "only 4 utterances: <few>" in page.items  # escaped in the file, read back as text
    assert "cca_mel not computed: the files hold no fbank (extract with --fbank)" in page.items
    assert "L2: tsne not computed: too few points" in page.items
    assert "extraction failed for /data/my audio/19-198-0002.flac: cannot decode: <bad header>" in page.items
    assert any(h.startswith("Notes and what could not be computed (4)") for h in page.headings)
    assert "<few>" not in (out / "report.html").read_text(encoding="utf-8")


def test_figures_embedded_with_registry_titles_and_page_is_offline(written):
    _, drawn, out, _, page = written
    assert [d.name for d in drawn] == [f.name for f in figures.FIGURES if f.name in {d.name for d in drawn}]
    for d in drawn:
        image = next(i for i in page.images if i["alt"] == d.figure.title)
        assert base64.b64decode(image["src"].split(",", 1)[1]) == (out / d.name).read_bytes()
        assert d.figure.title in page.headings
    assert len(page.images) == len(drawn) + 1 >= 6  # the key figure twice: on the first screen and in its place
    assert all(link.startswith(("data:image/png;base64,", "#")) for link in page.links)  # nothing fetched


def test_summary_files(written):
    result, drawn, out, paths, _ = written
    assert sorted(p.name for p in paths) == ["per_dim_stats.npz", "report.html", "summary.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layers"] == LAYERS and summary["figures"] == [d.name for d in drawn]
    assert summary["cosine"][0][1] is None and summary["cka"][0][2] == 0.91
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["layer"] for r in rows] == LAYERS and [r["name"] for r in rows] == ["L0", "L1", "L2"]
    assert rows[0]["cka_with_previous"] == "" and float(rows[1]["cka_with_previous"]) == 0.9
    assert [float(r["std"]) for r in rows] == [x.std for x in result.layers]
    with np.load(out / "per_dim_stats.npz") as npz:
        for x in result.layers:
            assert np.array_equal(npz[f"{x.key}_var"], x.dim_var) and np.array_equal(npz[f"{x.key}_mean"], x.dim_mean)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_failed_write_keeps_the_previous_report(written, monkeypatch):
    result, drawn, out, _, _ = written
    before = (out / "report.html").read_bytes()

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(html, "figure_view", broken)
    with pytest.raises(RuntimeError):
        html.write_report_html(out, result, drawn)
    assert (out / "report.html").read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_report_without_manifest_says_not_recorded(tmp_path):
    result = make_result(tmp_path / "nowhere")
    page = Page()
    page.feed(html.render(html.analysis_page(result, [], runcard.analysis_card(result, runcard.Extraction()), [])))
    assert page.card["Wall time"] == "extraction not recorded; analysis 2.7 min (read 1.5 s, tsne 2.5 min)"
    assert page.card["Features"].endswith("(no extraction manifest found: prototype or copied files)")
    assert page.card["Commands"].startswith("extraction: not recorded")


def test_random_initialisation_is_said_in_the_title_and_the_card(tmp_path):
    result = make_result(tmp_path)
    result = dataclasses.replace(result, meta={**result.meta, "random_init": True, "seed": 7})
    page = Page()
    page.feed(html.render(html.analysis_page(result, [], runcard.analysis_card(result, runcard.Extraction()), [])))
    assert page.headings[0] == "Layer-wise analysis: hubert-tiny (random initialisation, not the trained weights)"
    assert page.card["Model"].endswith("RANDOM INITIALISATION (seed 7), not the trained weights")
    assert page.card["Seeds"].endswith("random-initialisation seed 7")


def test_layers_at_different_frame_rates(tmp_path):
    """conv blocks (local features): counts per layer, the audio from the coarsest layer (C2: 250 frames at 50/s)."""
    result = make_result(tmp_path)
    layers = [dataclasses.replace(x, key=f"conv_{i}", n_frames=1000 // 2 ** i, frame_rate=200.0 / 2 ** i)
              for i, x in enumerate(result.layers)]
    result = dataclasses.replace(result, layers=layers, meta={**result.meta, "rep_type": "local"})
    card = runcard.analysis_card(result, runcard.Extraction())
    data = dict(card)["Data"]
    assert data.startswith("4 files analysed, C0: 1,000, C1: 500, C2: 250 frames (≈ 5.0 s of audio: C2 at 50 frames/s)")
    assert dict(card)["Layers"].startswith("C0, C1, C2 — C0 … C2 = stored keys conv_0 … conv_2")


def test_csv_writes_nan_and_none_as_empty(tmp_path):
    html.write_summary_csv(tmp_path, html.with_display_names([{"layer": "conv_3", "a": float("nan"), "b": None,
                                                               "c": 0.5}]))
    with open(tmp_path / "summary.csv", newline="") as handle:
        (read,) = list(csv.DictReader(handle))
    assert read == {"layer": "conv_3", "name": "C3", "a": "", "b": "", "c": "0.5"}


CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install -y chromium)")
def test_headless_chromium_renders_the_report_offline(written, tmp_path):
    """report.html opened from disk by a real browser with networking off: the run card's styles, the notes box and
    the embedded heatmap (viridis yellow of its diagonal) are on the screenshot."""
    from PIL import Image

    _, _, out, _, _ = written
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1400,6000", (out / "report.html").as_uri()],
                   cwd=tmp_path, capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert len(pixels) == 1400 * 6000

    def count(rgb, tolerance=6):
        return int((np.abs(pixels - np.array(rgb)).max(axis=1) <= tolerance).sum())

    assert count((0xE8, 0xEE, 0xF7), 0) > 10_000  # run card label cells (CSS applied)
    assert count((0xFF, 0xF6, 0xE0), 0) > 10_000  # the notes box
    assert count((253, 231, 37)) > 2_000  # viridis at 1.0: the CKA heatmap's diagonal, from an embedded PNG


def test_temporary_file_lists_in_commands_are_marked(tmp_path):
    """The wrapper's temporary lists (deleted when it ends) stay in the command as run, with a line saying what they
    were and where the files are listed; other list files are named as list files; other commands are unchanged."""
    listing = "/tmp/layerwise-files.Ab12Cd"
    analysis = shlex.join(["visualize_features.py", "--features_dir", "out/x y", "--file_list", listing])
    lines = runcard.annotate_command(analysis, 4).split("\n")
    assert lines[0] == analysis and len(lines) == 2
    assert lines[1].startswith(f"  (--file_list {listing}: a temporary list written by the wrapper and deleted after "
                               f"the run; the 4 files it named are listed in summary.json 'files'")
    extraction = "extract_features.py --audio_dir a --write_file_list=/home/me/lists/done.txt"
    lines = runcard.annotate_command(extraction, 4).split("\n")
    assert lines[0] == extraction
    assert lines[1].startswith("  (--write_file_list /home/me/lists/done.txt: a list file; it collects the files this "
                               "extraction completed")
    assert runcard.annotate_command("visualize_features.py --num_files 3", 3) == (
        "visualize_features.py --num_files 3")

    features = tmp_path / "features"
    features.mkdir()
    (features / "manifest.json").write_text(json.dumps({**MANIFEST, "command": [
        "extract_features.py", "--write_file_list", listing]}))
    result = make_result(features)
    result = dataclasses.replace(result, run=dataclasses.replace(result.run, command=analysis, file_list=listing))
    card = dict(runcard.analysis_card(result, runcard.read_extraction(features)))
    assert card["Analysis"].startswith("all files named by --file_list (see Commands), similarity both")
    commands = card["Commands"].split("\n")
    assert commands[0] == f"extraction: extract_features.py --write_file_list {listing}"
    assert commands[1].startswith(f"  (--write_file_list {listing}: a temporary list written by the wrapper")
    assert commands[2] == f"analysis: {analysis}"
    assert commands[3].startswith(f"  (--file_list {listing}: a temporary list") and len(commands) == 4


def test_control_columns_get_their_own_table_and_reference_cells_say_n_a(tmp_path):
    """With a control the per-layer table keeps the analysed model's columns; the control's columns follow in a
    second table; cells empty by definition read 'n/a (why)' in both, other empty cells '—'."""
    result = make_result(tmp_path)
    intra = {"layer_0": None, "layer_1": 0.8, "layer_2": 0.6}
    control = results.ControlResult(str(tmp_path / "ctrl"), 3, {"cca_intra": {"layer_0": None, "layer_1": 0.95,
                                                                             "layer_2": None}},
                                    meta={"model_name": "m", "model_revision": "r", "seed": 4, "random_init": True})
    result = dataclasses.replace(result, measures={"cca_intra": intra}, control=control,
                                 not_applicable={"cca_intra": {"layer_0": "the reference layer"}})
    page = html.render(html.analysis_page(result, [], runcard.analysis_card(result, runcard.Extraction()), []))
    own, ctrl = layer_tables(page)
    assert [r["cca_intra"] for r in own] == ["n/a (the reference layer)", "0.8", "0.6"]
    assert not any(c.startswith("random_init_") for c in own[0])
    assert [r["random_init_cca_intra"] for r in ctrl] == ["n/a (the reference layer)", "0.95", "—"]
    parsed = Page()
    parsed.feed(page)
    assert parsed.card["Control"] == (f"{tmp_path / 'ctrl'}: m (revision r), random initialisation seed 4; 3 of 4 "
                                      f"analysed utterances shared")


def test_one_cell_convention_for_both_reports():
    """Undefined by definition: 'n/a (why)'; not computed: '—' with a tooltip; numbers formatted alike."""
    assert html.cell(float("nan"), "no previous layer") == html.Cell("n/a (no previous layer)", "na")
    assert html.cell(None) == html.Cell("—", "num", html.NOT_COMPUTED)
    assert html.cell(np.float32("inf")).text == "—"
    assert html.cell(0.123456) == html.Cell("0.1235", "num") and html.cell(np.float64(2.0)).text == "2"
    assert html.cell(3646) == html.Cell("3,646", "num") and html.cell(np.int64(12)).text == "12"
    assert html.cell(True).text == "True" and html.cell("a<b").text == "a<b"
    table = html.layer_table([{"layer": "layer_3", "x": None}, {"layer": "conv_1", "x": None}],
                             lambda row, column: "why" if row["layer"] == "layer_3" and column == "x" else None)
    assert [[c.text for c in row] for row in table.cells()] == [["L3", "n/a (why)"], ["C1", "—"]]


def test_summary_csv_writer_writes_values_as_str_and_missing_as_empty(tmp_path):
    rows = [{"folder": "a", "layer": "layer_0", "dim": np.int64(6), "mean": np.float64(0.1), "cka": float("nan"),
             "n": None, "pc": 5},
            {"folder": "a", "layer": "layer_1", "dim": 6, "mean": -2.5e-09, "cka": 0.75, "n": 3, "pc": None}]
    html.write_summary_csv(tmp_path, rows)
    assert (tmp_path / "summary.csv").read_bytes() == (
        b"folder,layer,dim,mean,cka,n,pc\na,layer_0,6,0.1,,,5\na,layer_1,6,-2.5e-09,0.75,3,\n")


def test_run_card_builder_rows_from_the_steps():
    now = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    steps = [runcard.Step("extraction", ("x --a", "x --b"), "1.0 min", "torch 2", "2026-01-01 00:00 UTC"),
             runcard.Step("analysis", (), "2.0 s", "numpy 2")]
    card = runcard.build_card([("Model", "m")], steps, now=now)
    assert card == [("Model", "m"), ("Date", "report 2026-01-02 03:04 UTC; extraction finished 2026-01-01 00:00 UTC"),
                    ("Wall time", "extraction 1.0 min; analysis 2.0 s"),
                    ("Versions", "extraction: torch 2; analysis: numpy 2"),
                    ("Commands", "extraction: x --a\nextraction: x --b\nanalysis: not recorded")]
    (one,) = [runcard.Step("comparison", ("c",), "3.0 s", "numpy 2")]
    assert dict(runcard.build_card([], [one], now=now))["Versions"] == "numpy 2"


MEASURE_SCRIPT = """<script>window.addEventListener('load', () => {
  const key = document.querySelector('#key img'), box = key ? key.getBoundingClientRect() : null;
  document.body.setAttribute('data-measure', JSON.stringify({
    top: box ? box.top : null, height: box ? box.height : null, viewport: window.innerHeight,
    scroll_width: document.scrollingElement.scrollWidth}));
});</script></body>"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install -y chromium)")
def test_first_screen_at_1400px_shows_the_key_figure_and_nothing_overflows(written, tmp_path):
    """At 1,400 × 900 px the key per-layer figure starts above the fold, and the page is no wider than the window
    (wide tables scroll inside their container). The page measures itself: a script writes the key image's box
    and the document's scroll width into the DOM, which Chromium dumps."""
    _, _, out, _, _ = written
    page = tmp_path / "measured.html"
    page.write_text((out / "report.html").read_text(encoding="utf-8").replace("</body>", MEASURE_SCRIPT),
                    encoding="utf-8")
    dumped = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                             "--window-size=1400,900", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r"data-measure=\"([^\"]*)\"", dumped)
    assert found, dumped[:500]
    measured = json.loads(html_module.unescape(found.group(1)))
    assert measured["height"] > 100 and measured["top"] < measured["viewport"], measured
    assert measured["scroll_width"] <= 1400, measured


def test_debiased_heatmap_by_default_linear_one_click_away_and_digits_from_intervals(tmp_path):
    """The similarity figure is two CSS tabs (no script): debiased CKA checked, linear CKA the other tab, each
    saying which estimator it shows; a value with an interval prints only the digits the interval supports."""
    from dataclasses import replace

    result = make_result(tmp_path)
    debiased = np.array([[1.0, 0.41, 0.02], [0.41, 1.0, 0.5], [0.02, 0.5, 1.0]])
    result = replace(result, cka_debiased=debiased, intervals={"std": {"layer_1": (1.9876, 2.0123)}},
                     run=replace(result.run, similarity="cka"))
    drawn = figures.draw_all(result, tmp_path / "out", [figures.BY_NAME["layer_similarity_cka_debiased.png"],
                                                        figures.BY_NAME["layer_similarity_cka.png"]])
    page_html = html.render(html.analysis_page(result, drawn, [("Model", "m")], []))
    assert "<script" not in page_html
    first = page_html.index("id='tab-layer_similarity_cka_debiased-1' checked")
    second = page_html.index("id='tab-layer_similarity_cka_debiased-2'")
    assert first < second and "debiased CKA (shown by default)" in page_html
    assert "Shown: Layer similarity: debiased CKA." in page_html and "Shown: Layer similarity: linear CKA." in page_html
    assert page_html.count("data:image/png;base64,") == 2 + 1  # the two tabs and the key figure (debiased)
    parser = Page()
    parser.feed(page_html)
    assert parser.headings.count("Layer similarity: debiased CKA") == 1
    assert "Layer similarity: linear CKA" not in parser.headings  # a tab of the same figure, not its own section
    # half-width 0.01235 → first significant digit at 1e-2, one more: 3 decimals (2.000 [1.988, 2.012])
    assert "2.000 [1.988, 2.012]" in page_html
    assert html.Estimate(0.5, 0.3, 0.7).text() == "0.50 [0.30, 0.70]"
    assert html.Estimate(123.4, 100.0, 150.0).text() == "123 [100, 150]"


def test_subtitle_gives_each_frame_rate_its_own_count(tmp_path):
    from dataclasses import replace

    result = make_result(tmp_path)
    layers = [replace(x, key=k, n_frames=n) for x, k, n in zip(result.layers, ["conv_0", "conv_1", "layer_0"],
                                                                  (4000, 2000, 500))]
    text = figures.subtitle(replace(result, layers=layers))
    assert "C0: 4,000; C1: 2,000; L0: 500 frames" in text
    assert figures.subtitle(result).endswith("1,000 frames")


def test_estimate_digits_of_integers_and_zero_width_intervals():
    # a component count with a zero-width interval: integers, not "10.000000 [10.000000, 10.000000]"
    assert html.Estimate(10.0, 10.0, 10.0).text() == "10 [10, 10]"
    assert html.Estimate(10.0, 8.0, 12.0).text() == "10 [8, 12]"
    # a tiny value with a zero-width interval: 4 significant digits (format(3.6e-9, ".4g")), not 0.000000
    assert html.Estimate(3.6e-9, 3.6e-9, 3.6e-9).text() == "3.6e-09 [3.6e-09, 3.6e-09]"
    assert html.Estimate(0.123456, 0.123456, 0.123456).text() == "0.1235 [0.1235, 0.1235]"
    # an interval of non-integers keeps the half-width rule: half 0.05 -> 3 decimals
    assert html.Estimate(10.02, 9.97, 10.07).text() == "10.020 [9.970, 10.070]"
    # an interval finer than 6 decimals around a tiny mean (3.6e-9 in [2.9e-9, 4.3e-9], as a LayerNorm output's):
    # half-width 6.7e-10 -> digits down to 1e-11 (one below its first) -> 3 significant digits of 4.3e-9, not
    # "0.000000 [0.000000, 0.000000]"
    assert html.Estimate(3.587e-9, 2.916e-9, 4.259e-9).text() == "3.59e-09 [2.92e-09, 4.26e-09]"
    # near 1 the fixed-point cap stays (no "1 [1, 1]")
    assert html.Estimate(0.999995, 0.99999, 0.999999).text() == "0.999995 [0.999990, 0.999999]"


def test_what_each_layer_encodes_caption_follows_the_measures_drawn(tmp_path):
    from dataclasses import replace

    base = make_result(tmp_path)
    caption = figures.BY_NAME["what_each_layer_encodes.png"].caption_for
    keys = [x.key for x in base.layers]
    frame = replace(base, measures={"cca_mel": dict.fromkeys(keys, 0.5), "pnmi": dict.fromkeys(keys, 0.3)},
                    measure_info={"pnmi_per_k": {"20": dict.fromkeys(keys, 0.3), "50": dict.fromkeys(keys, 0.4)}})
    text = caption(frame)
    assert figures.BY_NAME["what_each_layer_encodes.png"].title == "What each layer encodes: one panel per measure"
    assert "alignment-free" not in text  # PNMI needs alignments
    assert "PNMI: the share of the phone uncertainty" in text and "one line per K" in text
    assert ("as reported by Hsu et al. 2021 (LibriSpeech, K=100): k-means on MFCCs gives cluster purity ≈ 0.099, "
            "phone purity ≈ 0.335 and PNMI ≈ 0.255, and HuBERT-base PNMI ≈ 0.70 for layers 7–12") in text
    assert "Speaker probe" not in text and "PWCCA (stable)" not in text  # only the measures drawn
    span = replace(base, measures={k: dict.fromkeys(keys, 0.3) for k in ("probe_accuracy", "pwcca", "mi",
                                                                            "pwcca_stable", "gender_probe_accuracy")})
    text = caption(span)
    assert "Label probe accuracy, PWCCA and MI" in text and "Gender probe accuracy" in text
    assert "the stable twin drops one one-hot column" in text  # the pasad twin explained beside its panel
    assert "Hsu" not in text and "CCA with the log-mel" not in text
    sentences = [s.strip() for s in re.split(r"(?<=[.;])\s", text) if s.strip()]
    assert len(sentences) == len(set(sentences))  # no sentence said twice


def test_majority_baselines_and_per_k_curves_from_the_result():
    info = {"probe_majority_baseline": 0.1, "speaker_majority_baseline": {"layer_0": 0.5},
            "pnmi_per_k": {"20": {"layer_0": 0.2}, "50": {"layer_0": 0.3}},
            "pnmi_per_k_ci": {"50": {"layer_0": [0.25, 0.35]}}}
    # the label probe's baseline is a scalar of measure_info; speaker's (and gender's) are registry measures of their
    # own, drawn with their group, so not again here
    assert figures.majority_of({"speaker_majority_baseline": {"layer_0": 0.3}}, info) == {"probe_accuracy": 0.1}
    per_k = figures.per_k_of(info, {"pnmi": {"layer_0": (0.1, 0.3)}}, {"pnmi": {"layer_0": 0.05}})
    assert per_k == {"pnmi": {"20": ({"layer_0": 0.2}, {"layer_0": (0.1, 0.3)}, {"layer_0": 0.05}),
                              "50": ({"layer_0": 0.3}, {"layer_0": [0.25, 0.35]}, None)}}
