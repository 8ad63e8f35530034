"""Installable package: requirements.txt and pyproject.toml pin the same dependencies; console scripts answer."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib

from tests.conftest import ROOT


def requirement_lines(text: str) -> set[str]:
    return {re.sub(r"\s+", "", line.split("#")[0]) for line in text.splitlines() if line.split("#")[0].strip()}


def test_requirements_equal_the_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {re.sub(r"\s+", "", d) for d in project["dependencies"]}
    test_only = {re.sub(r"\s+", "", d) for d in project["optional-dependencies"]["test"]}
    assert requirement_lines((ROOT / "requirements.txt").read_text()) == pinned | test_only


def test_console_scripts_are_installed_and_help_is_fast():
    for name in ("layerwise-extract", "layerwise-visualize", "layerwise-compare"):
        exe = shutil.which(name) or str(ROOT / ".venv" / "bin" / name)
        start = time.perf_counter()
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0 and "usage:" in out.stdout, (name, out.stderr[-500:])
        assert time.perf_counter() - start < 3.0, name  # heavy imports deferred (well under a second when warm)


def test_help_imports_no_heavy_library():
    probe = ("import sys\n"
             "from layerwise.cli import extract, visualize, compare\n"
             "for m in (extract, visualize, compare):\n"
             "    try: m.main(['--help'])\n"
             "    except SystemExit: pass\n"
             "heavy = [n for n in ('torch', 'transformers', 'matplotlib', 'scipy', 'sklearn', 'librosa') "
             "if n in sys.modules]\n"
             "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-800:] + out.stderr[-800:]
