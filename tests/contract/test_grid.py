"""contract.grid against independent computations: sample windows traced block by block, explicit loops, the
checkpoint config; the layer-key grid of the metadata (layout.layer_grid) agrees with the model's geometry."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise.contract import grid, layout

HUBERT_KERNELS, HUBERT_STRIDES = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)


def traced_window(kernels, strides, frame: int) -> tuple[int, int]:
    """Input samples ``[first, last]`` that output ``frame`` of the stack reads, traced back block by block."""
    first, last = frame, frame
    for kernel, stride in reversed(list(zip(kernels, strides))):
        first, last = first * stride, last * stride + kernel - 1
    return first, last


def test_hubert_base_frame_math():
    from transformers import HubertConfig

    config = HubertConfig()  # the hubert-base-ls960 architecture
    geo = grid.FrameGeometry(tuple(config.conv_kernel), tuple(config.conv_stride), 16000)
    assert (geo.hop, geo.receptive_field, geo.frame_rate) == (320, 400, 50.0)
    assert geo.n_frames(16000) == 49 and geo.n_frames(400) == 1 and geo.n_frames(399) == 0
    for n in np.random.default_rng(0).integers(400, 400_000, size=200):
        assert geo.n_frames(int(n)) == (n - 400) // 320 + 1
    np.testing.assert_allclose(geo.centres(3), [200 / 16000, 520 / 16000, 840 / 16000])


@pytest.mark.parametrize("depth", range(1, 8))
def test_conv_grid_is_the_traced_window_of_every_prefix(depth):
    kernels, strides = HUBERT_KERNELS[:depth], HUBERT_STRIDES[:depth]
    g = grid.conv_grid(kernels, strides)
    for frame in (0, 1, 7):
        first, last = traced_window(kernels, strides, frame)
        assert (first, last - first + 1) == (frame * g.hop, g.field)
    # frame i exists exactly when its whole window fits in the input
    for n in (g.field - 1, g.field, g.field + g.hop - 1, g.field + g.hop, 12_345):
        expected = max(0, (n - g.field) // g.hop + 1)
        assert grid.conv_output_length(n, kernels, strides) == expected


def test_layer_geometry_and_the_metadata_grid_agree():
    geo = grid.FrameGeometry(HUBERT_KERNELS, HUBERT_STRIDES, 16000)
    meta = {"model_config": {"conv_kernel": list(HUBERT_KERNELS), "conv_stride": list(HUBERT_STRIDES)}}
    assert geo.of_layer("layer", 4) is geo and geo.grid == grid.Grid(320, 400)
    for index in range(7):
        sub = geo.of_layer("conv", index)
        assert sub.kernels == HUBERT_KERNELS[: index + 1] and sub.strides == HUBERT_STRIDES[: index + 1]
        assert layout.layer_grid(meta, f"conv_{index}") == sub.grid
        assert geo.conv_lengths(16000)[index] == sub.n_frames(16000)
    assert layout.layer_grid(meta, "layer_12") == geo.grid
    assert [grid.layer_blocks("conv", i, 7) for i in range(7)] == list(range(1, 8))
    assert grid.layer_blocks("layer", 0, 7) == grid.layer_blocks("layer", 12, 7) == 7


def test_pool_frames_and_match_equal_explicit_loops():
    rng = np.random.default_rng(1)
    fine, coarse = rng.normal(size=(101, 3)).astype(np.float32), rng.normal(size=(24, 2))
    kernel, stride = grid.pool_plan(grid.Grid(80, 160), grid.Grid(320, 400))  # conv_4 onto 20 ms frames
    assert (kernel, stride) == (4, 4)  # ceil((400 − 160) / 80) + 1, 320 / 80
    loops = np.array([fine[j * stride: j * stride + kernel].astype(np.float64).mean(axis=0)
                      for j in range((101 - kernel) // stride + 1)])
    np.testing.assert_allclose(grid.pool_frames(fine, kernel, stride), loops, rtol=1e-12)
    a, b = grid.match(fine, grid.Grid(80, 160), coarse, grid.Grid(320, 400))
    np.testing.assert_allclose(a, loops[:24], rtol=1e-12)
    np.testing.assert_array_equal(b, coarse[: len(a)])
    b2, a2 = grid.match(coarse, grid.Grid(320, 400), fine, grid.Grid(80, 160))  # order does not matter
    np.testing.assert_array_equal(a2, a)
    np.testing.assert_array_equal(b2, b)
    assert grid.pool_plan(grid.Grid(320, 400), grid.Grid(320, 400)) == (1, 1)
