"""Tile detection, size checks, margins and masks (pipeline/video/tiles.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import PosecapError
from pipeline.video.reader import leading_frames
from pipeline.video.tiles import (
    DetectOptions,
    apply_margins,
    check_rects_fit,
    detect_tiles,
    mask_array,
    temporal_max,
)
from tests.crop.crop_fixtures import Mosaic, layout, mosaic_frame


def _frames(col_widths, row_heights, border, sep, n=6, timestamp=True):
    size, rects = layout(col_widths, row_heights, border, sep)
    return [mosaic_frame(size, rects, i, timestamp) for i in range(n)], rects


def test_quad_with_odd_tiles_and_timestamp(quad: Mosaic) -> None:
    frames = leading_frames(quad.path, 8)
    assert detect_tiles(frames, quad.grid) == quad.rects


def test_side_by_side_with_thin_separator(stereo: Mosaic) -> None:
    assert detect_tiles(leading_frames(stereo.path, 8), stereo.grid) == stereo.rects


def test_abutting_tiles_are_split_evenly() -> None:
    frames, rects = _frames([70, 70], [50], border=0, sep=0)
    assert detect_tiles(frames, (1, 2)) == rects


def test_odd_width_abutting_tiles_split_within_one_pixel() -> None:
    frames, _ = _frames([71, 70], [50], border=0, sep=0)
    got = detect_tiles(frames, (1, 2))
    assert got == [(0, 0, 70, 50), (70, 0, 71, 50)] or got == [(0, 0, 71, 50), (71, 0, 70, 50)]


def test_dark_scene_content_inside_a_tile_is_not_a_separator() -> None:
    frames, rects = _frames([90, 90], [60, 60], border=4, sep=3)
    x, y, w, h = rects[0]
    for f in frames:  # a dark vertical stripe through the whole left tile column, in every frame
        f[:, x + 30:x + 36] = 0
        f[y + 20:y + 25, :] = 0  # and a dark horizontal band across the top tile row
    assert detect_tiles(frames, (2, 2)) == rects


def test_timestamp_across_the_border_is_masked_out() -> None:
    frames, rects = _frames([90, 90], [60, 60], border=10, sep=4, timestamp=False)
    for f in frames:  # a wide, bright overlay in the top border, over 80 % of the width
        f[2:8, 5:160] = 255
    with pytest.raises(PosecapError):
        detect_tiles(frames, (2, 2), options=DetectOptions(line_fraction=0.9))
    got = detect_tiles(frames, (2, 2), options=DetectOptions(line_fraction=0.9), mask=[(0, 0, 190, 9)])
    assert got == rects


def test_tiles_of_different_size_are_refused() -> None:
    frames, _ = _frames([90, 70], [60], border=4, sep=3)
    with pytest.raises(PosecapError, match="widths .* differ by more than 4 px"):
        detect_tiles(frames, (1, 2))
    assert len(detect_tiles(frames, (1, 2), options=DetectOptions(size_tolerance_px=25))) == 2


def test_grid_that_does_not_fit_the_frame() -> None:
    frames, _ = _frames([20, 20], [20], border=0, sep=2)
    with pytest.raises(PosecapError, match="grid does not fit the 42x20 frame"):
        detect_tiles(frames, (1, 8))


def test_wrong_grid_is_a_clear_error() -> None:
    frames, _ = _frames([60, 60, 60], [40], border=4, sep=4)
    with pytest.raises(PosecapError) as err:
        detect_tiles(frames, (1, 2))
    assert "\n" not in str(err.value) and "rects" in str(err.value)


def test_black_frames_are_a_clear_error() -> None:
    with pytest.raises(PosecapError, match="every column looks like a dark border"):
        detect_tiles([np.zeros((60, 80, 3), np.uint8)], (1, 2))


def test_margins_and_fit() -> None:
    rects = [(0, 0, 100, 50), (104, 0, 100, 50)]
    assert apply_margins(rects, (10, 1, 2, 3)) == [(3, 10, 96, 38), (107, 10, 96, 38)]
    check_rects_fit(rects, (204, 50), "m")
    with pytest.raises(PosecapError, match="does not fit the 200x50 frame"):
        check_rects_fit(rects, (200, 50), "m")


def test_temporal_max_and_mask_array() -> None:
    a = np.zeros((2, 3, 3), np.uint8)
    b = a.copy()
    a[0, 0, 2] = 7
    b[1, 2, 0] = 9
    assert temporal_max([a, b]).tolist() == [[7, 0, 0], [0, 0, 9]]
    m = mask_array((4, 5), [(3, 1, 10, 2), (-1, -1, 2, 2)])
    assert m.sum() == 4 + 1 and m[1, 3] and m[2, 4] and m[0, 0]
