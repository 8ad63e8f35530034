"""Loading checks: incomplete checkpoints, unused heads, configs that do not match the weights, the content
fingerprint of a local folder, offline hub, paths that do not exist, quiet transformers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from layerwise.cli import extract as cli
from layerwise.errors import ModelLoadError, UsageError
from layerwise.extract.run import extract_folder
from layerwise.model import adapter as M
from layerwise.model import checkpoint as C
from tests.conftest import ROOT, build_tiny, save_tiny, tone


def rewrite_weights(src, dst, edit) -> dict:
    """Copy checkpoint folder ``src`` to ``dst`` with its safetensors passed through ``edit(dict) -> dict``."""
    shutil.copytree(src, dst)
    tensors = load_file(src / "model.safetensors")
    save_file(edit(dict(tensors)), dst / "model.safetensors", metadata={"format": "pt"})
    return tensors


def test_missing_encoder_layer_is_a_load_error_naming_the_parameters(tiny_hubert, tmp_path):
    tensors = rewrite_weights(tiny_hubert, tmp_path / "ckpt",
                              lambda t: {k: v for k, v in t.items() if not k.startswith("encoder.layers.1.")})
    dropped = sorted(k for k in tensors if k.startswith("encoder.layers.1."))
    assert len(dropped) == 16
    with pytest.raises(ModelLoadError, match=r"16 parameters missing: encoder\.layers\.1\.") as err:
        M.SpeechModel.load(str(tmp_path / "ckpt"), device="cpu")
    assert dropped[0] in str(err.value) and "--random_init" in str(err.value)
    assert isinstance(err.value, UsageError)  # exit 2 in the CLIs


def test_mismatched_shape_is_a_load_error(tiny_hubert, tmp_path):
    key = "encoder.layers.0.attention.q_proj.weight"

    def shrink(t):
        t[key] = t[key][:, :16].contiguous()
        return t

    rewrite_weights(tiny_hubert, tmp_path / "ckpt", shrink)
    with pytest.raises(ModelLoadError, match=rf"1 with another shape: {key} \(checkpoint \(32, 16\), model \(32, 32\)\)"):
        M.SpeechModel.load(str(tmp_path / "ckpt"), device="cpu")


def test_unused_heads_load_with_one_log_line(tiny_wav2vec2, tmp_path, caplog, capsys):
    """A CTC checkpoint (prefixed base weights plus lm_head) gives the base model's exact features; the head is
    mentioned once in the log, and transformers prints no load report or progress bar."""
    from transformers import AutoModel, Wav2Vec2Config, Wav2Vec2ForCTC

    config = Wav2Vec2Config.from_pretrained(tiny_wav2vec2)
    config.vocab_size = 12
    ctc = Wav2Vec2ForCTC(config).eval()
    ctc.wav2vec2.load_state_dict(AutoModel.from_pretrained(tiny_wav2vec2).state_dict())
    ctc.save_pretrained(tmp_path / "ctc")
    shutil.copy(tiny_wav2vec2 / "preprocessor_config.json", tmp_path / "ctc")
    capsys.readouterr()
    with caplog.at_level("INFO", logger="layerwise"):
        model = M.SpeechModel.load(str(tmp_path / "ctc"), device="cpu")
    lines = [r.getMessage() for r in caplog.records if "lm_head" in r.getMessage()]
    assert len(lines) == 1 and "2 tensors of heads the base model does not use" in lines[0]
    out = capsys.readouterr()
    assert "LOAD REPORT" not in out.out + out.err and "Loading weights" not in out.out + out.err
    x = tone(8000)
    ours = model.features(x, "contextualized", [2])["layer_2"]
    with torch.no_grad():
        ref = ctc(torch.from_numpy(model.prepare(x))[None], output_hidden_states=True).hidden_states[2][0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("head", ["Wav2Vec2ForPreTraining", "Wav2Vec2ForXVector", "HubertForSequenceClassification"])
def test_pretraining_and_classification_heads_load_as_the_base_model(head, tmp_path):
    """The tensors these heads add (quantizer, project_q/hid; x-vector tdnn, its linear feature_extractor.weight,
    objective; projector, classifier) are ignored, and the features are the head model's own base hidden states."""
    import transformers

    cls = getattr(transformers, head)
    config_cls = transformers.HubertConfig if head.startswith("Hubert") else transformers.Wav2Vec2Config
    base = build_tiny("hubert" if head.startswith("Hubert") else "wav2vec2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        full = cls(config_cls(**base.config.to_dict())).eval()
    full.base_model.load_state_dict(base.state_dict())
    full.save_pretrained(tmp_path / "head")
    model = M.SpeechModel.load(str(tmp_path / "head"), device="cpu", normalize="off")
    x = tone(8000)
    with torch.no_grad():
        ref = full.base_model(torch.from_numpy(x)[None], output_hidden_states=True).hidden_states[2][0].numpy()
    np.testing.assert_allclose(model.features(x, "contextualized", [2])["layer_2"], ref, atol=1e-5, rtol=1e-4)


def test_config_with_fewer_layers_than_the_weights_is_a_load_error(tmp_path):
    """4 encoder layers in the weights, num_hidden_layers 2 in config.json: the extra layers are not "heads"."""
    folder = save_tiny("hubert", tmp_path / "ckpt", do_normalize=False, model=build_tiny("hubert", num_hidden_layers=4))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 2}))
    with pytest.raises(ModelLoadError, match=r"32 tensors .*encoder\.layers\.2\..*config does not match the "
                                               r"weights") as err:
        M.SpeechModel.load(str(folder), device="cpu")
    assert "and 24 more" in str(err.value) and isinstance(err.value, UsageError)  # exit 2 in the CLIs


def test_local_revision_is_a_fingerprint_of_the_config_and_weights(tmp_path):
    """Other weights saved to the same path give another revision; the same checkpoint elsewhere the same one."""
    folder = tmp_path / "m"
    first = C.describe(str(save_tiny("hubert", folder, do_normalize=False, seed=1))).revision
    shutil.copytree(folder, tmp_path / "copy")
    second = C.describe(str(save_tiny("hubert", folder, do_normalize=False, seed=2))).revision
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", first) and first != second
    assert C.describe(str(tmp_path / "copy")).revision == first
    assert M.SpeechModel.load(str(tmp_path / "copy"), device="cpu").revision == first


def test_other_weights_in_the_same_folder_are_not_already_complete(audio_dir, tmp_path):
    """Extract, replace the weights in the model folder by another seed's, delete one feature file, re-run: no file
    counts as complete, every one is a failure naming model_revision (exit 1)."""
    folder = save_tiny("hubert", tmp_path / "m", do_normalize=False, seed=1)
    args = ["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path / "out"), "--model_name", str(folder),
            "--device", "cpu", "--no_progress"]
    assert cli.main(args) == 0
    files = sorted((tmp_path / "out").rglob("*_features.npz"))
    assert len(files) == 4
    save_tiny("hubert", folder, do_normalize=False, seed=2)
    files[0].unlink()
    assert cli.main(args) == 2  # every file failed: nothing produced (README exit-status table)
    log = extract_folder(audio_dir, tmp_path / "out", cli.options_from_args(cli.build_parser().parse_args(args)))
    assert log.n_skipped == 0 and log.n_done == 0 and len(log.failures) == 4
    assert all("model_revision" in reason for _, reason in log.failures)


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/folder", "~/no-such-folder-xyz", "a/b/c"])
def test_path_that_does_not_exist_is_folder_not_found(name):
    with pytest.raises(ModelLoadError, match="model folder not found") as err:
        C.describe(name)
    assert "Repo id" not in str(err.value)


def test_folder_without_config_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        C.describe(str(tmp_path))


def test_hub_probe_gives_up_within_its_timeout(monkeypatch):
    import socket

    def hang(*args, **kwargs):  # a connect that never answers in time (then fails, as a real timeout does)
        time.sleep(3)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    assert C.hub_reachable("https://huggingface.co", timeout=0.5) is False
    assert time.perf_counter() - t0 < 2


def test_offline_failure_is_fast_and_says_what_to_do(tmp_path):
    """With the hub unreachable (connection refused), HF_HUB_OFFLINE unset and an empty cache, loading a hub id
    fails in seconds (transformers alone retries for ≈ 25 s), once, naming the ways out."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT)}
    code = ("import logging, time; logging.basicConfig(level=logging.INFO)\n"
            "from layerwise.errors import ModelLoadError\nfrom layerwise.model.adapter import SpeechModel\nfrom layerwise.model.checkpoint import describe\n"
            "from transformers import AutoConfig, AutoFeatureExtractor, AutoModel\n"  # start-up, not the failure
            "t0 = time.perf_counter()\n"
            "for attempt in ('describe', 'load'):\n"
            "    try:\n"
            "        describe('facebook/hubert-base-ls960') if attempt == 'describe' else "
            "SpeechModel.load('facebook/hubert-base-ls960', device='cpu')\n"
            "    except ModelLoadError as err:\n        print('ERROR', err)\n"
            "print('SECONDS', time.perf_counter() - t0)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    elapsed = float(proc.stdout.split("SECONDS")[-1])
    assert elapsed < 10, (elapsed, proc.stderr[-2000:])
    assert proc.stdout.startswith("ERROR model 'facebook/hubert-base-ls960' is not in the local Hugging Face cache")
    for hint in ("cannot be reached", "--model_name DIR", "MODEL_NAME=DIR", "HF_HUB_OFFLINE=1"):
        assert hint in proc.stdout
    assert proc.stdout.count("ERROR") == 2  # describe() and load() both fail ...
    assert proc.stderr.count("cannot reach the Hugging Face hub") == 1  # ... and the hub is probed and named once
    assert "Retrying" not in proc.stderr


def test_offline_mode_uses_the_cache_only(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1 is set.*--model_name DIR"):
        C.describe("no-such-org/no-such-model-xyz")


def test_quiet_transformers_restores_settings():
    from transformers.utils import logging as hf_logging

    before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    with C.quiet_transformers():
        assert not hf_logging.is_progress_bar_enabled()
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before


def test_config_summary_matches_config_json(tiny_hubert):
    config = json.loads((tiny_hubert / "config.json").read_text())
    summary = C.describe(str(tiny_hubert)).config_summary
    assert summary["conv_kernel"] == config["conv_kernel"] and summary["hidden_size"] == config["hidden_size"]


# --- issue 22, kind 4: the dtype a checkpoint was saved in never leaks into the computation ----------------------

@pytest.mark.parametrize("stored", ["bfloat16", "float16"])
@pytest.mark.parametrize("kind", ["hubert", "wav2vec2"])
def test_checkpoint_saved_in_a_half_type_gives_the_float32_features(kind, stored, tmp_path):
    """A checkpoint saved in bf16/fp16 run with dtype float32 equals transformers' own float32 load of it
    (``AutoModel.from_pretrained(dir, dtype=torch.float32)``: the positional conv's weight norm computed in float32
    from the stored g and v) to float32 rounding; loading in the stored dtype and casting afterwards would not."""
    folder = save_tiny(kind, tmp_path / "ckpt", do_normalize=False,
                       model=build_tiny(kind).to(getattr(torch, stored)))
    x = tone(16000, seed=3)
    model = M.SpeechModel.load(str(folder), device="cpu", dtype="float32")
    assert all(p.dtype == torch.float32 for p in model.model.parameters())
    ours = model.features(x, "contextualized", list(range(model.num_layers + 1)))
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    stored_then_cast = AutoModel.from_pretrained(folder).eval()  # transformers 5: loads in the stored dtype
    assert next(stored_then_cast.parameters()).dtype == getattr(torch, stored)
    from torch.nn.utils import parametrize

    # the weight norm frozen in the stored dtype, then cast: the computation the fix rules out
    parametrize.remove_parametrizations(stored_then_cast.encoder.pos_conv_embed.conv, "weight")
    stored_then_cast = stored_then_cast.float()
    with torch.no_grad():
        ref = reference(torch.from_numpy(x)[None], output_hidden_states=True).hidden_states
        leaked = stored_then_cast(torch.from_numpy(x)[None], output_hidden_states=True).hidden_states
    gap = max(float(np.abs(leaked[i][0].numpy() - ref[i][0].numpy()).max()) for i in range(1, len(ref)))
    for i, state in enumerate(ref):
        assert np.abs(ours[f"layer_{i}"] - state[0].numpy()).max() <= 1e-5 * max(1.0, float(state.abs().max()))
    assert gap > 1e-4  # the test can tell: freezing the weight norm in the stored dtype moves the features


def test_random_init_of_a_half_type_config_is_float32(tmp_path):
    """--random_init builds the config saved with a bf16 checkpoint (config.dtype = bfloat16) in float32."""
    folder = save_tiny("hubert", tmp_path / "ckpt", do_normalize=False,
                       model=build_tiny("hubert").to(torch.bfloat16))
    model = M.SpeechModel.load(str(folder), device="cpu", dtype="float32", random_init=True)
    assert {p.dtype for p in model.model.parameters()} == {torch.float32}


# --- issue 22, kind 5: weights validated at load; remedies that fit the actual settings and cause ---------------

def test_non_finite_weight_is_a_load_error_naming_the_tensor(tiny_hubert, tmp_path, audio_dir, caplog):
    """The issue's example: inf in final_layer_norm.bias of a float32 run is a load error naming the tensor, with
    no dtype advice (float32 is in use and the checkpoint itself is damaged); the CLI exits 2 before any file."""
    key = "encoder.layers.1.final_layer_norm.bias"

    def poison(t):
        t[key] = t[key].clone()
        t[key][3] = float("inf")
        return t

    rewrite_weights(tiny_hubert, tmp_path / "ckpt", poison)
    with pytest.raises(ModelLoadError, match=re.escape(key)) as err:
        M.SpeechModel.load(str(tmp_path / "ckpt"), device="cpu")
    assert "dtype float32" not in str(err.value) and "damaged" in str(err.value)
    code = cli.main(["--audio_dir", str(audio_dir), "--save_dir", str(tmp_path / "out"), "--model_name",
                     str(tmp_path / "ckpt"), "--device", "cpu", "--no_progress"])
    assert code == 2 and key in caplog.text and not list((tmp_path / "out").rglob("*_features.npz"))


def test_weight_beyond_float16_range_names_the_tensor_and_other_dtypes(tiny_hubert, tmp_path):
    """A finite float32 weight of 1e6 becomes inf in float16 (max 65504): a load error for dtype float16 naming
    the tensor and only dtypes other than float16; float32 and bfloat16 load it."""
    key = "encoder.layers.0.feed_forward.output_dense.bias"

    def big(t):
        t[key] = t[key].clone()
        t[key][0] = 1e6
        return t

    rewrite_weights(tiny_hubert, tmp_path / "ckpt", big)
    with pytest.raises(ModelLoadError, match=re.escape(key)) as err:
        M.SpeechModel.load(str(tmp_path / "ckpt"), device="cpu", dtype="float16")
    advice = str(err.value).split("Extract with", 1)[1]
    assert "float32" in advice and "bfloat16" in advice and "float16 " not in advice.replace("bfloat16", "")
    for dtype in ("float32", "bfloat16"):
        M.SpeechModel.load(str(tmp_path / "ckpt"), device="cpu", dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_overflow_advice_names_only_other_dtypes(dtype):
    """Every remedy names a setting other than the one in use; float32 (no wider type) gets no dtype advice."""
    message = M.non_finite_message("layer_3", dtype)
    advice = message.split("extract it with", 1)[1] if "extract it with" in message else ""
    suggested = set(re.findall(r"\b(b?float(?:16|32))\b", advice))
    assert dtype not in suggested
    assert (suggested == set()) if dtype == "float32" else suggested


def test_preprocessor_lookup_of_an_invalid_hub_id_finds_nothing_and_other_errors_propagate(monkeypatch):
    """Only an id the hub cache cannot hold (HFValidationError) means "no cached preprocessor_config.json"; any
    other failure of the cache lookup is raised, never read as "use the defaults"."""
    import huggingface_hub

    from layerwise.model import checkpoint

    assert checkpoint._preprocessor_file("bad id//x", {"pretrained_model_name_or_path": "bad id//x"}) is None

    def broken(*args, **kwargs):
        raise OSError("cache folder unreadable")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", broken)
    with pytest.raises(OSError, match="cache folder unreadable"):
        checkpoint._preprocessor_file("facebook/hubert-base-ls960", {"pretrained_model_name_or_path": "x"})
