"""The two commands of a fresh clone: extract_hubert_features.sh and run_tests.sh find an already-built virtual
environment (tools/ensure_venv.sh) and install nothing; a folder that is not a virtual environment is refused, never
installed into."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPTS = ["run_tests.sh", "extract_hubert_features.sh"]


def fake_venv(folder: Path) -> Path:
    """A venv folder whose bin/python runs this interpreter (the suite runs in a built environment)."""
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return python


def setup_step(script: str, venv: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"} | {"LAYERWISE_VENV": str(venv), "SETUP_ONLY": "1"}
    return subprocess.run(["bash", str(ROOT / script)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize("script", SCRIPTS)
def test_setup_finds_a_built_venv_and_installs_nothing(script, tmp_path):
    python = fake_venv(tmp_path / "venv")
    done = setup_step(script, tmp_path / "venv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"python: {python}"
    assert "installing" not in done.stderr and "first use" not in done.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_setup_refuses_an_interpreter_that_is_not_a_venv(script, tmp_path):
    """bin/python that lacks layerwise and is no virtual environment: exit 2 with the reason, nothing installed."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text('#!/bin/sh\nexec /usr/bin/env python3 -I -S "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    done = setup_step(script, venv)
    assert done.returncode == 2, done.stderr
    assert "is not a virtual environment" in done.stderr and "python:" not in done.stdout


def test_ci_runs_the_test_script_and_the_script_runs_the_readme_command():
    assert "exec ./run_tests.sh" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "./run_tests.sh" in readme and "./extract_hubert_features.sh" in readme
    assert '"${PYTHON}" -m pytest -q tests' in (ROOT / "run_tests.sh").read_text()
    assert "python -m pytest -q tests" in readme
