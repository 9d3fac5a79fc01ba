"""The recorded mosaics' tiles, cut by the known rectangles, equal the per-camera renders."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.synth import SynthOptions, generate_session, load_ground_truth, render_camera_frames
from pipeline.synth.mosaic import split
from tests.synth.conftest import read_video

TINY = SynthOptions(seed=3, tile_size=(160, 120), intrinsics_frames=3, extrinsics_frames=3,
                    capture_frames=3, people=1, codec="ffv1")


@pytest.fixture(scope="module")
def tiny_session(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    generate_session(out, TINY, show_progress=False, workers=1)
    return out


def _outside(rect, timestamp):
    """Mask of a tile's pixels not covered by the burned-in timestamp."""
    x, y, w, h = rect
    mask = np.ones((h, w), bool)
    if timestamp is not None:
        tx, ty, tw, th = timestamp
        mask[max(ty - y, 0):max(ty - y + th, 0), max(tx - x, 0):max(tx - x + tw, 0)] = False
    return mask


def test_lossless_tiles_equal_renders_exactly(tiny_session):
    gt = load_ground_truth(tiny_session)
    for path, layout in gt.mosaics.items():
        video = read_video(tiny_session / path)
        recording = gt.recordings[path]["recording"]
        assert video.shape[1:3] == (layout.frame_size[1], layout.frame_size[0])
        assert len(video) == gt.recordings[path]["frame_count"]
        for cam, rect in zip(layout.cameras, layout.rects):
            renders = render_camera_frames(tiny_session, recording, cam)
            tiles = np.stack([split(f, layout)[cam] for f in video])
            ts = layout.timestamp_rect if gt.recordings[path]["timestamp_camera"] == cam else None
            keep = _outside(rect, ts)
            np.testing.assert_array_equal(tiles[:, keep], renders[:, keep], err_msg=f"{path} {cam}")
            if ts is not None:
                burned = np.abs(tiles[:, ~keep].astype(int) - renders[:, ~keep]).mean()
                assert burned > 10, "the timestamp is burned into its tile"
        # Separators are black.
        covered = np.zeros(video.shape[1:3], bool)
        for x, y, w, h in layout.rects:
            covered[y:y + h, x:x + w] = True
        assert video[:, ~covered].max(initial=0) == 0


def test_quad_tiles_differ_by_a_pixel(tiny_session):
    gt = load_ground_truth(tiny_session)
    quad = next(m for p, m in gt.mosaics.items() if m.grid == (2, 2))
    widths = {r[2] for r in quad.rects}
    heights = {r[3] for r in quad.rects}
    assert widths == {160, 159} and heights == {120, 121}
    for cam, (_, _, w, h) in zip(quad.cameras, quad.rects):
        assert tuple(gt.cameras[cam].image_size) == (w, h)


def test_committed_mp4_tiles_match_renders_within_codec_loss(calib_dir, calib_gt, calib_scene):
    """calib_data uses lossy mp4v: tiles equal the renders up to compression (bound stated here)."""
    for path, layout in calib_gt.mosaics.items():
        recording = calib_gt.recordings[path]["recording"]
        video = read_video(calib_dir / path)
        frames = [len(video) // 2, len(video) - 1]
        for cam, rect in zip(layout.cameras, layout.rects):
            renders = render_camera_frames(calib_scene, recording, cam, frames).astype(np.float64)
            tiles = np.stack([split(video[i], layout)[cam] for i in frames]).astype(np.float64)
            ts = layout.timestamp_rect if calib_gt.recordings[path]["timestamp_camera"] == cam else None
            keep = _outside(rect, ts)
            err = np.abs(tiles[:, keep] - renders[:, keep])
            mse = np.mean(err ** 2)
            psnr = 10 * np.log10(255.0 ** 2 / mse)
            assert err.mean() < 4.0 and psnr > 32.0, (
                f"{path} {cam}: mean abs {err.mean():.2f}, PSNR {psnr:.1f} dB")
            # A wrong rectangle (shifted by 2 px) must be clearly worse.
            x, y, w, h = rect
            shifted = np.stack([video[i][y:y + h, x + 2:x + 2 + w - 2] for i in frames]).astype(np.float64)
            assert np.abs(shifted - renders[:, :, :w - 2]).mean() > err.mean() + 1.0
