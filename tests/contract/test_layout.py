"""layout: the shared rules each defined once — shards, the identity check, the control rule, folder names, spans."""

from pathlib import Path

import pytest

from layerwise.contract import layout
from layerwise.contract.results import ControlResult, MeasureFamily
from layerwise.errors import CompareError, UsageError

META = {"model_name": "facebook/hubert-base-ls960", "model_revision": "abc", "rep_type": "contextualized",
        "span": "frame", "normalize": False, "random_init": False, "seed": 0, "sample_rate": 16000}


@pytest.mark.parametrize("count, shards", [(0, 3), (1, 1), (7, 3), (10, 4), (13, 13)])
def test_file_i_goes_to_shard_i_mod_n(count, shards):
    items = list(range(count))
    parts = [layout.shard_indices(count, k, shards) for k in range(shards)]
    assert parts == [items[k::shards] for k in range(shards)]  # the extraction's slicing rule
    assert sorted(i for part in parts for i in part) == items  # disjoint, and together every item


def test_blocks_of_a_unit_go_to_shards_whole():
    # 10 items in blocks of 3: blocks [0-2], [3-5], [6-8], [9] -> shards 0, 1, 0, 1
    assert layout.shard_indices(10, 0, 2, unit=3) == [0, 1, 2, 6, 7, 8]
    assert layout.shard_indices(10, 1, 2, unit=3) == [3, 4, 5, 9]


def test_shard_suffix():
    assert layout.shard_suffix(0, 1) == ""
    assert layout.shard_suffix(2, 4) == ".shard-2-of-4"


def test_same_extraction_passes_and_another_is_refused_naming_the_settings():
    layout.check_same_extraction(dict(META), dict(META), subject="a", reference_name="b")
    layout.check_same_extraction({**META, "source": "other.wav"}, META, subject="a", reference_name="b")  # not identity
    other = {**META, "normalize": True, "seed": 3}
    assert layout.identity_difference(other, META) == "normalize: True vs False, seed: 3 vs 0"
    with pytest.raises(UsageError) as caught:
        layout.check_same_extraction(other, META, subject="x.npz", reference_name="y.npz", advice="; fix it")
    assert str(caught.value) == "x.npz was made with other settings than y.npz: normalize: True vs False, seed: 3 vs 0; fix it"
    with pytest.raises(CompareError, match="normalize: True vs False$"):
        layout.check_same_extraction(other, META, subject="x", reference_name="y", may_differ=("seed",),
                                     error=CompareError)


def test_the_control_rule_lets_only_revision_random_init_and_seed_differ():
    control = {**META, "model_revision": "r2", "random_init": True, "seed": 7}
    assert layout.identity_difference(control, META, may_differ=layout.CONTROL_DIFFERS) == ""
    assert set(layout.CONTROL_DIFFERS) < set(layout.IDENTITY_KEYS)
    for key in set(layout.IDENTITY_KEYS) - set(layout.CONTROL_DIFFERS):
        changed = {**control, key: "something else"}
        assert layout.identity_difference(changed, META, may_differ=layout.CONTROL_DIFFERS).startswith(f"{key}: ")


def test_control_folder_and_run_label_follow_the_output_folder_rule(tmp_path):
    kwargs = {"rep_type": "local", "span": "phone"}
    trained = layout.output_folder(tmp_path, "runs/x/checkpoint-100", "dev-clean", 1, **kwargs)
    control = layout.output_folder(tmp_path, "runs/x/checkpoint-100", "dev-clean", 1, random_init=True, **kwargs)
    assert control == tmp_path / "x-checkpoint-100-random_init" / "librispeech_dev-clean_sample1_local_phone"
    assert layout.control_folder_of(trained) == control.resolve()
    assert layout.control_folder_of(Path("relative") / "split").is_absolute()
    tag = layout.model_tag("facebook/hubert-base-ls960")
    assert layout.run_label(tag) == "hubert-base-ls960"
    assert layout.run_label(tag, random_init=True, **kwargs) == "hubert-base-ls960-random_init-local-phone"
    assert layout.run_label(tag, rep_type="contextualized", span=layout.FRAME_SPAN) == "hubert-base-ls960"


def test_spans():
    assert layout.FRAME_SPAN == layout.DEFAULT_SPAN == layout.SPANS[0] and set(layout.SPANS) == {"frame", "phone",
                                                                                                "word"}


def test_a_control_result_is_built_from_its_family():
    family = MeasureFamily(values={"pwcca": {"layer_0": 0.5}}, unavailable={"mi": "too few"},
                           info={"probe_majority_baseline": 0.25}, provenance={"seed": 1})
    result = ControlResult.of(family, features_dir=Path("/c"), n_files=3, meta={"seed": 7})
    assert (result.features_dir, result.n_files, result.meta) == ("/c", 3, {"seed": 7})
    assert result.measures == family.values and result.unavailable == family.unavailable
    assert result.measure_info == family.info  # provenance is not written
    assert result.measures is not family.values  # the result owns its dicts
