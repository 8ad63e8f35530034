"""The feature-file contract: round trip, numeric key order, atomic writes, legacy layout, resume check."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from layerwise.contract import layout, store
from layerwise.contract.grid import Grid
from layerwise.errors import FeatureFileError, OwnFileError, UsageError


def test_round_trip_and_numeric_order(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"layer_{i}": rng.standard_normal((7, 4)) for i in (12, 0, 2, 10, 1)}
    path = store.feature_path(tmp_path, "utt")
    store.write_features(path, arrays, {"rep_type": "contextualized"}, labels=["a", "b"], intervals=[[0, 1], [1, 2]])
    f = store.read_features(path)
    assert list(f.layers) == ["layer_0", "layer_1", "layer_2", "layer_10", "layer_12"]
    for key, value in arrays.items():
        assert f.layers[key].dtype == np.float32
        np.testing.assert_array_equal(f.layers[key], value.astype(np.float32))
    assert f.labels.tolist() == ["a", "b"] and f.intervals.shape == (2, 2)
    assert f.meta["rep_type"] == "contextualized" and f.stem == "utt"
    with np.load(path, allow_pickle=False) as data:  # loads without pickle: no object arrays inside
        assert set(data.files) == set(arrays) | {"labels", "intervals", "meta"}


def test_float16_and_shape_validation(tmp_path):
    path = store.feature_path(tmp_path, "u")
    store.write_features(path, {"conv_0": np.ones((3, 2))}, {}, save_dtype="float16")
    assert store.read_features(path).layers["conv_0"].dtype == np.float16
    with pytest.raises(ValueError, match="2-D"):
        store.write_features(path, {"layer_0": np.ones((1, 3, 2))}, {})


def test_float16_overflow_is_an_error_not_a_silent_inf(tmp_path):
    path = store.feature_path(tmp_path, "u")
    big = np.array([[1.0, 65504.0], [-70000.0, 2.0]], dtype=np.float32)  # 65504 = float16 max; 70000 overflows
    with pytest.raises(FeatureFileError, match="layer_1: values up to 70000 overflow float16"):
        store.write_features(path, {"layer_0": np.ones((2, 2)), "layer_1": big}, {}, save_dtype="float16")
    assert list(tmp_path.iterdir()) == []
    store.write_features(path, {"layer_1": big}, {}, save_dtype="float32")  # float32 holds it
    assert store.read_features(path).layers["layer_1"][1, 0] == -70000.0
    store.write_features(path, {"layer_1": big[:, 1:] * 1.0}, {}, save_dtype="float16")  # 65504 fits exactly
    assert store.read_features(path).layers["layer_1"][0, 0] == 65504.0


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    path = store.feature_path(tmp_path, "u")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        store.write_features(path, {"layer_0": np.ones((3, 2))}, {})
    assert list(tmp_path.iterdir()) == []


def test_legacy_batch_layout_is_read(tmp_path):
    path = tmp_path / "old_features.npz"
    np.savez(path, layer_0=np.ones((1, 5, 3)), layer_1=np.zeros((1, 5, 3)))
    f = store.read_features(path)
    assert f.layers["layer_0"].shape == (5, 3) and f.meta == {}


def test_truncated_or_foreign_files_are_damaged(tmp_path):
    path = store.feature_path(tmp_path, "u")
    identity = {"model_name": "m"}
    store.write_features(path, {"layer_0": np.ones((3, 2))}, identity)
    assert store.resume_state(path, ["layer_0"], identity)[0] == "complete"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated, as a crash of a non-atomic writer leaves it
    assert store.resume_state(path, ["layer_0"], identity)[0] == "damaged"
    path.write_text("not a zip file")
    assert store.resume_state(path, ["layer_0"], identity)[0] == "damaged"
    with pytest.raises(FeatureFileError):
        store.read_features(path)


def test_foreign_npz_is_rejected(tmp_path):
    path = tmp_path / "x_features.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(FeatureFileError, match="no layer_k"):
        store.read_features(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(FeatureFileError):
        store.read_features(path)
    assert not zipfile.is_zipfile(path)


def test_resume_state(tmp_path):
    path = store.feature_path(tmp_path, "u")
    same = {"model_name": "m", "normalize": False}
    assert store.resume_state(path, ["layer_0"], same)[0] == "missing"
    store.write_features(path, {"layer_0": np.ones((3, 2))}, same)
    assert store.resume_state(path, ["layer_0"], same) == ("complete", "")
    assert store.resume_state(path, ["layer_0", "layer_1"], same)[0] == "damaged"  # a key missing: recompute
    state, detail = store.resume_state(path, ["layer_0"], {**same, "normalize": True})
    assert state == "other_settings" and detail == "normalize: False vs True"
    np.savez(path, layer_0=np.ones((1, 3, 2)))  # a prototype file: no metadata, never silently replaced
    assert store.resume_state(path, ["layer_0"], same)[0] == "other_settings"
    path.write_bytes(b"PK\x03\x04 half-written")
    assert store.resume_state(path, ["layer_0"], same)[0] == "damaged"


def test_layer_spec_indices_ranges_and_keys():
    keys = [f"layer_{i}" for i in range(13)]
    assert layout.parse_layer_spec("12,0-2,layer_6", keys) == ["layer_0", "layer_1", "layer_2", "layer_6", "layer_12"]
    assert layout.parse_layer_spec("all", keys) == keys
    for bad in ("13", "0-13", "3-1", "x", "conv_0", "1.5"):
        with pytest.raises(UsageError, match="layers"):
            layout.parse_layer_spec(bad, keys)
    convs = [f"conv_{i}" for i in range(7)]
    assert layout.parse_layer_spec("0,6", convs) == ["conv_0", "conv_6"]
    with pytest.raises(UsageError, match="ambiguous"):
        layout.parse_layer_spec("0", ["layer_0", "conv_0"])


def test_layer_grids_follow_the_conv_stack():
    meta = {"model_config": {"conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2]}}
    # hop = product of strides, field = k0 + sum (k_i - 1) * hop_before_i, written out by hand
    assert layout.layer_grid(meta, "layer_4") == Grid(320, 400)
    assert [layout.layer_grid(meta, f"conv_{i}") for i in range(7)] == [
        Grid(5, 10), Grid(10, 20), Grid(20, 40), Grid(40, 80), Grid(80, 160), Grid(160, 240), Grid(320, 400)]


# ---------------------------------------------------------------- the one guarded reader (issue 22, kind 6)
def _cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "crc"])
def test_read_own_npz_names_the_file_and_the_rebuild_command(tmp_path, damage):
    path = tmp_path / "partial_0000_of_0002.npz"
    np.savez(path, a=np.arange(1000.0), header=np.array('{"x": 1}'))
    got = store.read_own(path, what="partial statistics", rebuild="REBUILD-CMD")
    np.testing.assert_array_equal(got["a"], np.arange(1000.0))  # a good file reads as numpy reads it
    if damage == "truncated":
        _cut(path)
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "missing":
        path.unlink()
    else:  # flip one byte inside array a's data: the zip CRC no longer matches
        data = bytearray(path.read_bytes())
        data[data.index(np.arange(1000.0).tobytes()[8:16]) + 3] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(OwnFileError, match=r"partial statistics .*partial_0000_of_0002\.npz.*REBUILD-CMD") as info:
        store.read_own(path, what="partial statistics", rebuild="REBUILD-CMD")
    assert isinstance(info.value, UsageError)  # exit 2 in every CLI
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("suffix, kind, content, expected", [
    (".json", None, '{"files": {"a": 1}}', {"files": {"a": 1}}),
    (".marker", "json", '\ufeff{"md5": "x"}', {"md5": "x"}),
    (".txt", None, "\ufeffa\nb\n", "a\nb\n"),
])
def test_read_own_json_and_text(tmp_path, suffix, kind, content, expected):
    path = tmp_path / f"f{suffix}"
    path.write_text(content, encoding="utf-8")
    assert store.read_own(path, what="w", rebuild="r", kind=kind) == expected
    if kind == "json" or suffix == ".json":
        path.write_text(content[: len(content) // 2], encoding="utf-8")  # cut mid-object, as a full disk leaves it
        with pytest.raises(OwnFileError, match=r"cannot read w .*damaged or incomplete.*rebuild it: r"):
            store.read_own(path, what="w", rebuild="r", kind=kind)
    path.write_bytes(b"\xff\xfe\x00bad utf-8 \xc3")
    with pytest.raises(OwnFileError, match=str(path.name)):
        store.read_own(path, what="w", rebuild="r", kind=kind)


def test_truncated_feature_file_names_the_file_and_how_to_rebuild(tmp_path):
    path = store.feature_path(tmp_path, "u")
    store.write_features(path, {"layer_0": np.ones((300, 20))}, {"model_name": "m"})
    _cut(path, 0.7)
    with pytest.raises(FeatureFileError, match=r"feature file .*u_features\.npz.*extract_features\.py"):
        store.read_features(path)


def test_an_os_error_while_writing_names_the_file_asked_for_not_the_temporary(tmp_path):
    """A full disk while writing (here: the move onto a folder in its place) and no inode for the temporary both
    name the output file; no temporary is left."""
    (tmp_path / "sweep.png").mkdir()
    with pytest.raises(IsADirectoryError) as raised, store.atomic_open(tmp_path / "sweep.png", "wb") as handle:
        handle.write(b"x")
    assert raised.value.filename == str(tmp_path / "sweep.png")
    missing = tmp_path / "missing" / "summary.json"  # the temporary cannot even be made
    with pytest.raises(FileNotFoundError) as raised, store.atomic_open(missing) as handle:
        handle.write("x")
    assert raised.value.filename == str(tmp_path / "missing" / "summary.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.png"]


def test_a_stop_while_the_temporary_is_made_leaves_no_temporary(tmp_path, monkeypatch):
    """Ctrl-C/SIGTERM arriving just as the temporary is created (the handler runs before atomic_open has its file
    descriptor): the temporary is removed all the same; nothing is left in the folder."""
    import os
    import signal

    from layerwise.cli.common import stops_as_interrupt

    real = os.open

    def open_then_stop(file, flags, *args, **kwargs):
        fd = real(file, flags, *args, **kwargs)
        if str(file).endswith(".tmp"):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, with the temporary on disk
        return fd

    monkeypatch.setattr(os, "open", open_then_stop)
    with pytest.raises(KeyboardInterrupt), stops_as_interrupt(), store.atomic_open(tmp_path / "x.json") as handle:
        handle.write("x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
