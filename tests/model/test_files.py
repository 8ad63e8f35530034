"""A local checkpoint whose files cannot be read: every way is one ModelLoadError (exit 2) naming the file and what
to do (re-save or re-download that folder), raised when the checkpoint is described, before any audio is read.

The damage is made by hand (bytes cut off, garbage, invalid JSON); where transformers can be asked, the test checks
that transformers itself cannot load the damaged folder, so the refusal is not a false alarm."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from layerwise.cli import extract as cli
from layerwise.errors import ModelLoadError, UsageError
from layerwise.model import checkpoint as C
from layerwise.model import files as F

BASE = ["--device", "cpu", "--no_progress"]
SAFETENSORS = "model.safetensors"


def copy_of(tiny_hubert: Path, folder: Path) -> Path:
    shutil.copytree(tiny_hubert, folder)
    return folder


def truncate(path: Path, n_bytes: int) -> None:
    path.write_bytes(path.read_bytes()[:n_bytes])


def as_bin(folder: Path) -> Path:
    """The folder with its weights as pytorch_model.bin (the zip archive torch.save writes) instead of safetensors."""
    from safetensors.torch import load_file

    torch.save(load_file(folder / SAFETENSORS), folder / "pytorch_model.bin")
    (folder / SAFETENSORS).unlink()
    return folder


# name -> (damage(folder) -> the damaged file)
DAMAGE = {
    "safetensors cut short": lambda f: (truncate(f / SAFETENSORS, 20000), f / SAFETENSORS)[1],
    "safetensors header only": lambda f: (truncate(f / SAFETENSORS, 8), f / SAFETENSORS)[1],
    "safetensors of garbage": lambda f: ((f / SAFETENSORS).write_bytes(np.random.default_rng(0).bytes(5000)),
                                         f / SAFETENSORS)[1],
    "bin cut short": lambda f: (truncate(as_bin(f) / "pytorch_model.bin", 3000), f / "pytorch_model.bin")[1],
    "bin of garbage": lambda f: ((as_bin(f) / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not a zip" * 50),
                                 f / "pytorch_model.bin")[1],
    "config not JSON": lambda f: ((f / "config.json").write_text('{"model_type": "hubert",\n'),
                                  f / "config.json")[1],
    "config a JSON list": lambda f: ((f / "config.json").write_text("[1, 2]"), f / "config.json")[1],
    "config not UTF-8": lambda f: ((f / "config.json").write_bytes(b'{"model_type": "\xff"}'), f / "config.json")[1],
    "preprocessor not JSON": lambda f: ((f / "preprocessor_config.json").write_text("xx"),
                                        f / "preprocessor_config.json")[1],
}


def transformers_fails(folder: Path) -> bool:
    try:
        AutoConfig.from_pretrained(folder)
        AutoModel.from_pretrained(folder)
        from transformers import AutoFeatureExtractor

        AutoFeatureExtractor.from_pretrained(folder)
    except Exception:  # noqa: BLE001 -- any failure: transformers cannot use the folder either
        return True
    return False


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_file_is_a_load_error_naming_it(tiny_hubert, tmp_path, damage):
    folder = copy_of(tiny_hubert, tmp_path / "ckbad")
    bad = DAMAGE[damage](folder)
    assert transformers_fails(folder)  # the independent reference: the folder really is unusable
    with pytest.raises(ModelLoadError) as err:
        C.describe(str(folder), fingerprint=False)
    text = str(err.value)
    assert str(bad) in text and "\n" not in text and isinstance(err.value, UsageError)
    assert "re-download" in text and "save_pretrained" in text
    # a local folder is in use: no advice to pass one, no hub download of the folder's name as a hub id
    assert "Pass a local checkpoint folder" not in text and f"hf download {folder} " not in text


def test_reviewer_example_exits_2_before_any_audio_is_read(tiny_hubert, audio_dir, tmp_path, monkeypatch, caplog):
    """`head -c 20000 ck/model.safetensors > ckbad2/model.safetensors`: exit 2 (README: an unloadable model), one
    line naming the file, and no audio file decoded."""
    from layerwise.extract import audio

    folder = copy_of(tiny_hubert, tmp_path / "ckbad2")
    truncate(folder / SAFETENSORS, 20000)
    monkeypatch.setattr(audio, "load_audio", lambda *a, **k: pytest.fail("audio read before the model check"))
    code = cli.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path / "o"), "--model_name", str(folder),
                     *BASE])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and len(errors) == 1 and str(folder / SAFETENSORS) in errors[0] and "\n" not in errors[0]
    assert not list((tmp_path).rglob("*_features.npz"))


def test_a_random_init_control_needs_only_the_config(tiny_hubert, tmp_path):
    """--random_init builds fresh weights from config.json: damaged weight files are not its concern."""
    folder = copy_of(tiny_hubert, tmp_path / "m")
    truncate(folder / SAFETENSORS, 20000)
    assert C.describe(str(folder), weights=False).num_layers == json.loads(
        (folder / "config.json").read_text())["num_hidden_layers"]


@pytest.mark.parametrize("name", ["config.json", SAFETENSORS, "preprocessor_config.json"])
def test_permission_denied_is_a_load_error_naming_the_file(tiny_hubert, tmp_path, monkeypatch, name):
    """An unreadable file (chmod 000; as root, where chmod does not bite, the same OSError is raised by hand)."""
    folder = copy_of(tiny_hubert, tmp_path / "m")
    target = folder / name
    if os.geteuid() != 0:
        target.chmod(0)
    else:
        real_open = open

        def denied(path, *args, **kwargs):
            if Path(path) == target:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(F, "open", denied, raising=False)
    try:
        with pytest.raises(ModelLoadError, match=r"cannot read .*" + name.replace(".", r"\.") +
                                                 r": Permission denied; give this user read permission") as err:
            C.describe(str(folder))
        assert "\n" not in str(err.value)
    finally:
        target.chmod(0o644)


def test_a_config_transformers_refuses_gets_advice_for_a_local_folder(tiny_hubert, tmp_path):
    """Valid JSON that transformers still cannot use (an unknown model_type): its whole reason on one line, and the
    advice for the folder in use (re-save it), never "pass a local checkpoint folder instead"."""
    folder = copy_of(tiny_hubert, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "no-such-type"}))
    with pytest.raises(ModelLoadError) as err:
        C.describe(str(folder))
    text = str(err.value)
    assert "no-such-type" in text and "\n" not in text and "re-download" in text
    assert "--model_name DIR" not in text and "Pass a local checkpoint folder" not in text


def test_advice_depends_on_the_source():
    """A hub id is told about local folders; a local folder is told to rebuild itself."""
    hub, local = C.load_advice("org/some-model"), C.load_advice("./some-folder")
    assert "--model_name DIR" in hub and "hf download org/some-model" in hub
    assert "--model_name DIR" not in local and "some-folder" in local and "re-download" in local
