"""The synthetic generator's stereo clock: a known start offset and frame rate, recorded in the ground truth."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.artifacts import read_npz, read_yaml
from pipeline.synth import SynthOptions, build_scene, generate_session, read_options
from pipeline.synth.people import COCO17, person_points

TINY = dict(tile_size=(64, 64), intrinsics_frames=2, extrinsics_frames=2, capture_frames=6, people=1,
            supersample=1, codec="mjpg")


def test_defaults_leave_the_options_file_unchanged():
    mapping = SynthOptions().to_mapping()
    assert "stereo_offset_s" not in mapping and "stereo_fps" not in mapping
    assert build_scene(SynthOptions(capture_frames=4)).stereo_points is None


def test_stereo_offset_and_fps_are_rendered_and_recorded(tmp_path):
    offset = 7.4 / 30.0
    options = SynthOptions(**TINY, stereo_offset_s=offset, stereo_fps=20.0)
    generate_session(tmp_path, options, show_progress=False, workers=1)
    assert read_options(tmp_path) == options
    cap = cv2.VideoCapture(str(tmp_path / "raw" / "capture" / "stereo.avi"))
    try:
        assert cap.get(cv2.CAP_PROP_FPS) == 20.0 and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    finally:
        cap.release()
    mosaics = read_yaml(tmp_path / "ground_truth" / "mosaics.yaml", "synth_mosaics@1")["files"]
    stereo = mosaics["raw/capture/stereo.avi"]
    assert stereo["fps"] == 20.0 and stereo["frame_count"] == 4 and stereo["time_offset_s"] == offset
    assert mosaics["raw/capture/quad.avi"]["fps"] == 30.0 and "time_offset_s" not in mosaics["raw/capture/quad.avi"]
    gt = read_npz(tmp_path / "ground_truth" / "people.npz")
    np.testing.assert_allclose(gt["stereo_times_s"], offset + np.arange(4) / 20.0)
    np.testing.assert_allclose(gt["times_s"], np.arange(6) / 30.0)
    assert gt["uv_stereo_l"].shape == (4, 1, 17, 2) and gt["uv_cam0"].shape == (6, 1, 17, 2)
    scene = build_scene(options)
    want = person_points(scene.people[0], gt["stereo_times_s"])[:, :len(COCO17)]
    np.testing.assert_allclose(gt["stereo_joints"][:, 0], want, atol=1e-5)
