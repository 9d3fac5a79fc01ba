"""The visualize stage: overlay videos, mosaic, contact sheet, 3D renders and the calibration report."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np
import pytest

from pipeline.artifacts import read_yaml
from pipeline.geometry.rig import Rig
from pipeline.visualization.draw import person_bgr
from pipeline.visualization.overlay import match_detections
from stages.visualize import STAGE
from tests.visualization.synthetic import SIZE, run_stage, write_session

T = 10


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def with_streams(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz_streams")
    rig, joints = write_session(root, T=T, P=2, streams=True)
    report = run_stage(STAGE, root, {"render_size": [320, 240], "max_render_frames": 5, "contact_sheet_frames": 2})
    assert report.ok
    return root, rig, joints


def test_overlay_videos_open_with_the_right_frame_count(with_streams):
    root, rig, _ = with_streams
    for cam in rig.names:
        frames = _frames(root / "viz" / "overlay" / f"{cam}.mp4")
        assert len(frames) == T
        assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    mosaic = _frames(root / "viz" / "mosaic.mp4")
    assert len(mosaic) == T
    assert len(_frames(root / "viz" / "scene3d.mp4")) == 5
    sheet = cv2.imread(str(root / "viz" / "contact_sheet.png"))
    assert sheet.shape[0] == 2 * SIZE[1] and sheet.shape[1] == 3 * SIZE[0]  # 2 frames x 3 cameras
    assert cv2.imread(str(root / "viz" / "scene3d_frames.png")) is not None


def test_overlay_draws_on_the_right_stream_frame_and_skeleton_where_it_projects(with_streams):
    root, rig, joints = with_streams
    cam = rig.cameras[1]
    frames = _frames(root / "viz" / "overlay" / f"{cam.name}.mp4")
    for k in (0, 5, 9):
        # pose frame k is stream frame k + 3, a flat grey of level 10 * (k + 3); check a quiet corner
        corner = frames[k][-12:-4, 4:12].astype(float).mean()
        assert abs(corner - 10 * (k + 3)) < 8, (k, corner)
        for p in range(2):
            mid = cam.project((joints[k, p, 13] + joints[k, p, 15]) / 2)  # middle of the left shin
            x, y = np.round(mid).astype(int)
            patch = frames[k][y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)
            dist = np.abs(patch - np.array(person_bgr(p))).max(axis=1).min()
            assert dist < 40, (k, p, patch)  # identity colour (MPEG-4 blurs it a little)


def test_viz_yaml_and_calibration_report(with_streams):
    root, rig, _ = with_streams
    viz = read_yaml(root / "viz" / "viz.yaml", "viz@1")
    assert viz["overlays"]["frames"] == T and viz["overlays"]["cameras_with_video"] == rig.names
    assert viz["fps"] == 25.0  # session.yaml's rate wins over pose3d.yaml's 30
    assert viz["scene3d"]["every_nth_frame"] == 2
    page = (root / "viz" / "calibration_report.html").read_text()
    for cam in rig.names:
        assert f"<td>{cam}</td>" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # the report figure and the 3D view
    png = cv2.imdecode(np.frombuffer(base64.b64decode(images[0]), np.uint8), cv2.IMREAD_COLOR)
    assert png is not None and png.shape[1] > 800
    report = viz["calibration_report"]
    assert report["cameras"]["cam0"]["rms_px"] == 0.4 and report["cameras"]["cam0"]["status"] == "good"
    assert 0.2 < report["area_seen_by_2_or_more"] <= 1.0


def test_hand_made_session_without_streams(tmp_path):
    write_session(tmp_path, T=4, P=1, streams=False, rms=None)
    assert _declared_inputs(tmp_path, [STAGE]) == ["calib/rig.yaml", "pose3d", "pose2d"]  # never blocked
    report = run_stage(STAGE, tmp_path, {"render3d": False, "mosaic": False, "contact_sheet_frames": 0})
    assert report.ok
    frames = _frames(tmp_path / "viz" / "overlay" / "cam0.mp4")
    assert len(frames) == 4
    assert abs(frames[0][-10:-4, 4:10].astype(float).mean() - 64) < 6  # neutral grey background
    assert not (tmp_path / "viz" / "mosaic.mp4").exists()
    assert "n/a" in (tmp_path / "viz" / "calibration_report.html").read_text()  # no error figures known


def _declared_inputs(session, stages) -> list[str]:
    from pipeline.config import load_config
    from pipeline.dag import build_dag

    config = load_config(None, {s.name: s.params_type for s in stages})
    node = build_dag(stages, config, session).nodes["visualize"]
    return [node.rel(p) for p in node.inputs]


def test_inputs_declare_session_when_crop_will_make_it(tmp_path):
    from stages.crop import STAGE as CROP

    write_session(tmp_path, T=2, P=1, pose2d=False)
    assert _declared_inputs(tmp_path, [CROP, STAGE]) == ["calib/rig.yaml", "pose3d", "session.yaml", "streams"]


def test_match_detections():
    reproj = np.zeros((2, 17, 2))
    reproj[0] = np.stack([np.arange(17) * 3.0, np.full(17, 50.0)], -1)
    reproj[1] = reproj[0] + [200.0, 0.0]
    det = np.zeros((3, 17, 3))
    det[0, :, :2], det[0, :, 2] = reproj[1] + 2.0, 0.9
    det[1, :, :2], det[1, :, 2] = reproj[0] - 1.0, 0.9
    det[2, :, :2], det[2, :, 2] = reproj[0] + 500.0, 0.9  # nobody there
    assert match_detections(det, reproj, 30.0, 0.3).tolist() == [1, 0, -1]
    det[1, :, 2] = 0.1  # below the score threshold: ignored
    assert match_detections(det, reproj, 30.0, 0.3).tolist() == [1, -1, -1]


def test_rig_yaml_round_trip_unchanged(with_streams):
    root, rig, _ = with_streams
    assert Rig.load(root / "calib" / "rig.yaml").names == rig.names
