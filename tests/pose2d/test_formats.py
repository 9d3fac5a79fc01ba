"""Import formats: each writes our keypoints and reads them back equal; BODY_25 -> COCO-17 mapping."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ArtifactError
from pipeline.pose2d.formats import (
    find_camera_source,
    read_coco,
    read_dlc,
    read_openpose,
    write_coco,
    write_dlc,
    write_openpose,
)
from pipeline.pose2d.io import read_pose2d
from pipeline.skeleton import BODY25, BODY25_TO_COCO17, COCO17
from pipeline.stage import StageContext
from stages.pose2d import STAGE, Pose2dParams


def sample_keypoints(frames: int = 5, people: int = 3, seed: int = 0) -> np.ndarray:
    """(T, P, 17, 3): per frame a leading run of persons, some joints missing; the rest empty slots."""
    rng = np.random.default_rng(seed)
    kp = np.zeros((frames, people, 17, 3), np.float32)
    kp[..., :2] = np.nan
    for t in range(frames):
        n = t % (people + 1)
        kp[t, :n, :, 0] = rng.uniform(1, 559, (n, 17))
        kp[t, :n, :, 1] = rng.uniform(1, 419, (n, 17))
        kp[t, :n, :, 2] = rng.uniform(0.05, 1.0, (n, 17))
        drop = rng.random((n, 17)) < 0.2
        kp[t, :n][drop] = [np.nan, np.nan, 0.0]
    return kp


def _check_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("out_skeleton", ["body25", "coco17"])
def test_openpose_round_trip(tmp_path, out_skeleton):
    kp = sample_keypoints()
    write_openpose(tmp_path / "cam0", kp, COCO17, out_skeleton=out_skeleton)
    _check_equal(read_openpose(tmp_path / "cam0", len(kp), COCO17), kp)


def test_coco_round_trip(tmp_path):
    kp = sample_keypoints(seed=1)
    write_coco(tmp_path / "cam0.json", kp, COCO17)
    _check_equal(read_coco(tmp_path / "cam0.json", len(kp), COCO17), kp)


def test_dlc_round_trip(tmp_path):
    kp = sample_keypoints(seed=2)
    write_dlc(tmp_path / "cam0.csv", kp, COCO17)
    _check_equal(read_dlc(tmp_path / "cam0.csv", len(kp), COCO17), kp)


def test_body25_to_coco17_table():
    assert len(BODY25_TO_COCO17) == 17
    for coco_index, body_index in enumerate(BODY25_TO_COCO17):
        assert BODY25.joint_names[body_index] == COCO17.joint_names[coco_index]
    assert BODY25_TO_COCO17[0] == 0 and BODY25_TO_COCO17[9] == 7 and BODY25_TO_COCO17[16] == 11


def test_openpose_body25_reads_into_body25_skeleton(tmp_path):
    kp = sample_keypoints(seed=3)
    write_openpose(tmp_path / "cam0", kp, COCO17, out_skeleton="body25")
    body = read_openpose(tmp_path / "cam0", len(kp), BODY25)
    assert body.shape == (*kp.shape[:2], 25, 3)
    np.testing.assert_array_equal(body[:, :, list(BODY25_TO_COCO17)], kp)
    assert np.isnan(body[:, :, BODY25.index("neck"), :2]).all()  # COCO has no neck


def test_frames_outside_the_file_are_empty(tmp_path):
    kp = sample_keypoints(frames=3)
    write_coco(tmp_path / "cam0.json", kp, COCO17)
    longer = read_coco(tmp_path / "cam0.json", 6, COCO17)
    assert longer.shape[0] == 6
    np.testing.assert_array_equal(longer[:3], kp[:, : longer.shape[1]])  # frames 0-2 hold at most 2 people
    assert np.isnan(kp[:, longer.shape[1]:, :, :2]).all()
    assert np.isnan(longer[3:, ..., :2]).all() and (longer[3:, ..., 2] == 0).all()


def test_bad_files_are_one_line_errors(tmp_path):
    (tmp_path / "cam0.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ArtifactError, match="not a DeepLabCut CSV"):
        read_dlc(tmp_path / "cam0.csv", 2, COCO17)
    with pytest.raises(ArtifactError, match="no coco keypoints for camera 'cam9'"):
        find_camera_source(tmp_path, "cam9", "coco")


@pytest.mark.parametrize("fmt", ["openpose", "coco", "dlc"])
def test_import_backend_writes_pose2d(session, tmp_path, fmt):
    imported = tmp_path / "theirs"
    imported.mkdir()
    data = {"cam0": sample_keypoints(frames=6, seed=4), "cam1": sample_keypoints(frames=6, seed=5)}
    for cam, kp in data.items():
        {"openpose": lambda k, c=cam: write_openpose(imported / c, k, COCO17),
         "coco": lambda k, c=cam: write_coco(imported / f"{c}.json", k, COCO17),
         "dlc": lambda k, c=cam: write_dlc(imported / f"{c}DLC_resnet50_demo.csv", k, COCO17)}[fmt](kp)
    params = Pose2dParams(backend="import", import_format=fmt, import_path="theirs")
    ctx = StageContext(session, params, None, tmp_path, show_progress=False)
    assert str(imported.resolve()) in STAGE.inputs(ctx)
    STAGE.run(ctx)
    for cam, kp in data.items():
        got, frame_index = read_pose2d(session / "pose2d" / f"{cam}.npz", 17)
        np.testing.assert_array_equal(frame_index, np.arange(6))
        np.testing.assert_array_equal(got[:, : kp.shape[1]], kp)
        assert np.isnan(got[:, kp.shape[1]:, :, :2]).all()
