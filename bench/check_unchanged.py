"""Outputs unchanged across a refactor: extraction, analysis and comparison on the tests' kinds of folder, digested.

    python bench/check_unchanged.py --write digest.json     # before the change
    python bench/check_unchanged.py --check digest.json     # after: exit 1 and one line per difference

The digest holds, for every feature file, the SHA-256 of each array's bytes (the ``meta`` JSON without its
timestamps and host), and for every ``summary.json`` and ``summary.csv`` every number and string (timings, paths of
temporary folders and versions left out). Runs offline on a tiny HuBERT built here and synthesized
LibriSpeech-style audio with phone TextGrids: frame folders with --fbank and their random-init control, a local
folder, phone-span folders and their control, the analysis of each (one process, and two shards merged), and the
comparison of the frame folder with its control. Numbers are compared exactly (``--rtol`` to relax).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOLATILE = ("seconds", "time", "date", "host", "version", "python", "torch", "transformers", "created", "packages",
            "command", "elapsed", "pid", "platform", "cpu", "threads", "machine")


def _volatile(key: str) -> bool:
    return any(word in key.lower() for word in VOLATILE)


def _run(args: list[str], code_ok=(0, 1)) -> None:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    if done.returncode not in code_ok:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")


def _make_inputs(work: Path) -> tuple[Path, Path, Path]:
    """A tiny HuBERT, 9 files of 3 LibriSpeech speakers, a phone TextGrid per file."""
    import soundfile as sf

    from tests.conftest import save_tiny, tone, write_textgrid

    model = save_tiny("hubert", work / "tiny-hubert", do_normalize=False)
    audio, align = work / "LibriSpeech" / "dev-clean", work / "align"
    phones = ["AH", "B", "K", "S", "IY", "T"]
    for s, speaker in enumerate(("84", "174", "251")):
        for u in range(3):
            stem = f"{speaker}-10-{u:04d}"
            n = 16000 + 2000 * u + 500 * s
            path = audio / speaker / "10" / f"{stem}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(n, seed=3 * s + u), 16000)
            end = n / 16000
            bounds = np.round(np.linspace(0.05, end - 0.05, 8), 2)
            tier = [(float(a), float(b), phones[(i + u + s) % len(phones)]) for i, (a, b) in
                    enumerate(zip(bounds[:-1], bounds[1:]))]
            align.mkdir(parents=True, exist_ok=True)
            write_textgrid(align / f"{stem}.TextGrid", {"phones": tier}, end)
    return model, audio, align


def _produce(work: Path) -> Path:
    model, audio, align = _make_inputs(work)
    out = work / "out"
    common = ["--audio_dir", str(audio), "--save_dir", str(out), "--model_name", str(model), "--device", "cpu",
              "--no_progress"]
    ext = str(ROOT / "extract_features.py")
    vis = str(ROOT / "visualize_features.py")
    for extra in (["--fbank"], ["--fbank", "--random_init"], ["--rep_type", "local"],
                  ["--span", "phone", "--alignment_dir", str(align)],
                  ["--span", "phone", "--alignment_dir", str(align), "--random_init"]):
        _run([ext, *common, *extra])
    tag = model.name
    frame = out / tag / "librispeech_dev-clean_sample1"
    local = out / tag / "librispeech_dev-clean_sample1_local"
    span = out / tag / "librispeech_dev-clean_sample1_phone"
    for folder in (frame, local, span):
        assert folder.is_dir(), f"expected {folder}"
        _run([vis, "--features_dir", str(folder), "--output_dir", str(folder) + "_analysis", "--num_files", "0",
              "--max_points", "200"])
    merged = work / "merged_analysis"
    for k in range(2):
        _run([vis, "--features_dir", str(frame), "--output_dir", str(merged), "--num_files", "0",
              "--max_points", "200", "--subset_id", str(k), "--num_subsets", "2"])
    _run([vis, "--features_dir", str(frame), "--output_dir", str(merged), "--num_files", "0", "--max_points", "200",
          "--merge", "--num_subsets", "2"])
    control = out / f"{tag}-random_init" / "librispeech_dev-clean_sample1"
    _run([str(ROOT / "compare_features.py"), "--features_dirs", str(frame), str(control), "--output_dir",
          str(work / "compare")])
    return work


def _leaves(value, prefix: str, out: dict) -> None:
    """Every number and string of a JSON value, keyed by its path; volatile keys left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not _volatile(str(key)):
                _leaves(item, f"{prefix}/{key}", out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _leaves(item, f"{prefix}[{i}]", out)
    elif isinstance(value, str):
        if "/" not in value:  # paths differ between runs' temporary folders
            out[prefix] = value
    else:
        out[prefix] = value


def digest(work: Path) -> dict:
    result: dict = {}
    for path in sorted(work.rglob("*_features.npz")):
        rel = str(path.relative_to(work))
        with np.load(path, allow_pickle=False) as data:
            for key in sorted(data.files):
                array = data[key]
                if key == "meta":
                    meta: dict = {}
                    _leaves(json.loads(str(array)), "", meta)
                    result[f"{rel}:meta"] = meta
                else:
                    result[f"{rel}:{key}"] = f"{array.dtype}{array.shape}:" + hashlib.sha256(
                        np.ascontiguousarray(array).tobytes()).hexdigest()
    for path in sorted(work.rglob("summary.json")):
        leaves: dict = {}
        _leaves(json.loads(path.read_text()), "", leaves)
        result[str(path.relative_to(work))] = leaves
    for path in sorted(work.rglob("summary.csv")):
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        header = rows[0] if rows else []
        keep = [i for i, name in enumerate(header) if not _volatile(name)]
        result[str(path.relative_to(work))] = [[row[i] for i in keep if i < len(row)] for row in rows]
    return result


def _same(a, b, rtol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
    if isinstance(a, str) and isinstance(b, str) and rtol:
        try:
            return _same(float(a), float(b), rtol)
        except ValueError:
            return a == b
    return a == b


def compare(before: dict, after: dict, rtol: float) -> list[str]:
    problems = []
    for name in sorted(set(before) | set(after)):
        if name not in after or name not in before:
            problems.append(f"{name}: only {'before' if name in before else 'after'}")
            continue
        a, b = before[name], after[name]
        if isinstance(a, dict):
            for key in sorted(set(a) | set(b)):
                if key not in a or key not in b:
                    problems.append(f"{name}{key}: only {'before' if key in a else 'after'}")
                elif not _same(a[key], b[key], rtol):
                    problems.append(f"{name}{key}: {a[key]!r} -> {b[key]!r}")
        elif isinstance(a, list):
            if len(a) != len(b):
                problems.append(f"{name}: {len(a)} rows -> {len(b)}")
            for r, (ra, rb) in enumerate(zip(a, b)):
                for c, (x, y) in enumerate(zip(ra, rb)):
                    if not _same(x, y, rtol):
                        problems.append(f"{name} row {r} col {c}: {x!r} -> {y!r}")
        elif a != b:
            problems.append(f"{name}: {a} -> {b}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, help="write the digest of today's code here")
    mode.add_argument("--check", type=Path, help="compare today's outputs with this digest")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for numbers (default exact)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the outputs in this folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="layerwise-check-")) if args.keep is None else args.keep
    try:
        result = digest(_produce(work))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.write:
        args.write.write_text(json.dumps(result, indent=1, sort_keys=True))
        print(f"wrote {args.write}: {len(result)} entries")
        return 0
    problems = compare(json.loads(args.check.read_text()), result, args.rtol)
    for line in problems[:200]:
        print(line)
    print(f"{len(problems)} difference(s) in {len(result)} entries")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
