"""README.md and docs/ describe code that exists: every Python name they show imports, every file they name exists,
every flag they show is a flag of the command it belongs to (or of the named outside tool), every Python snippet
compiles. A rename that leaves the docs behind fails here."""

from __future__ import annotations

import ast
import importlib
import re

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Flags of outside tools the docs show in their own commands (sbatch, chromium, huggingface-cli, pip, pytest).
OUTSIDE_FLAGS = {
    "--array", "--cpus-per-task", "--dependency", "--job-name", "--mem", "--parsable", "--time", "--wrap", "--output",
    "--headless", "--disable-background-networking", "--disable-component-update", "--disable-gpu", "--no-first-run",
    "--no-sandbox", "--screenshot", "--user-data-dir", "--window-size", "--local-dir", "--upgrade", "--durations",
    "--signal",
}
# Files of a model checkpoint folder the docs name (not files of this repository).
CHECKPOINT_FILES = {"config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin"}
NAME_RE = re.compile(r"\blayerwise(?:\.[A-Za-z_]\w*)+")
IMPORT_RE = re.compile(r"from (layerwise[\w.]*) import ([\w, ()]+)")
FILE_RE = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|sh|md|toml|txt|json|item|csv))`")
FLAG_RE = re.compile(r"(?:^|[\s`(\[])(--[a-z][a-z0-9_-]+)")


def _texts():
    return [(path, path.read_text()) for path in DOCS]


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and getattr the rest; raises when any part is missing."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _known_flags() -> set[str]:
    sources = [*(ROOT / "layerwise" / "cli").glob("*.py"), *(ROOT / "bench").glob("*.py")]
    flags = set()
    for source in sources:
        flags |= set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source.read_text()))
        flags |= set(re.findall(r"add_argument\(\s*\"-\w\",\s*\"(--[\w-]+)\"", source.read_text()))
    # dashed spellings are accepted for every flag (cli.common); the help flag of argparse
    return flags | {f.replace("_", "-") for f in flags} | {"--help"}


def test_every_documented_python_name_imports():
    missing = []
    for path, text in _texts():
        names = set(NAME_RE.findall(text))
        for module, imported in IMPORT_RE.findall(text):
            names |= {f"{module}.{n.strip()}" for n in imported.strip("()").split(",") if n.strip()}
        for name in sorted(names):
            if name.endswith((".py", ".data")) and name.count(".") == 1:
                continue
            try:
                _resolve(name.rstrip("."))
            except (ImportError, AttributeError) as err:
                missing.append(f"{path.name}: {name} ({type(err).__name__})")
    assert not missing, "\n".join(missing)


def _unique_modules() -> dict[str, str]:
    """Module stem -> dotted name, for the stems that name exactly one module of the package (``layout``, ``store``)."""
    seen: dict[str, list[str]] = {}
    for path in (ROOT / "layerwise").rglob("*.py"):
        if path.stem not in ("__init__", "__main__"):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            seen.setdefault(path.stem, []).append(dotted)
    return {stem: names[0] for stem, names in seen.items() if len(names) == 1}


def test_every_documented_short_name_exists():
    """`store.output_folder`, `layout.IDENTITY_KEYS`: a module's stem and a name, as the docs write them."""
    modules = _unique_modules()
    missing = []
    for path, text in _texts():
        for stem, attr in sorted(set(re.findall(r"`(\w+)\.([A-Za-z_]\w*)[`(]", text))):
            if stem in modules and attr not in ("py", "md"):
                try:
                    getattr(importlib.import_module(modules[stem]), attr)
                except AttributeError:
                    missing.append(f"{path.name}: {stem}.{attr} (not in {modules[stem]})")
    assert not missing, "\n".join(missing)


def test_every_documented_file_exists():
    files = {p.name for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}
    missing = []
    for path, text in _texts():
        for name in sorted(set(FILE_RE.findall(text))):
            if "/" in name:
                candidates = [ROOT / name, path.parent / name, ROOT / "layerwise" / name]
                if not any(c.exists() for c in candidates) and not name.startswith(("output/", "content/", "/")):
                    missing.append(f"{path.name}: {name}")
            elif name not in files | CHECKPOINT_FILES and not name.startswith(("summary", "manifest", "failures", "report")):
                missing.append(f"{path.name}: {name}")
    assert not missing, "\n".join(missing)


def test_every_documented_flag_belongs_to_a_command():
    known = _known_flags() | OUTSIDE_FLAGS
    unknown = []
    for path, text in _texts():
        for flag in sorted(set(FLAG_RE.findall(text))):
            if flag not in known:
                unknown.append(f"{path.name}: {flag}")
    assert not unknown, "\n".join(unknown)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_snippets_compile(path):
    for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S):
        ast.parse(block)
