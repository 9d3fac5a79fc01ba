"""The triangulate stage end to end on a session folder, and its bad-input messages."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from pipeline.artifacts import ArraySpec, read_npz, read_yaml, write_npz
from pipeline.config import from_mapping, render_defaults
from pipeline.errors import ConfigError, PosecapError
from pipeline.stage import StageContext
from stages.triangulate import STAGE, TriangulateParams
from tests.triangulation.synthetic import crossing_people, make_rig, observe, write_session

RIG = make_rig(4, seed=11)


def _ctx(root, **params) -> StageContext:
    return StageContext(session_dir=root, params=TriangulateParams(**params), config=None, config_dir=root,
                        show_progress=False)


def _session(root, n_people: int = 2, T: int = 60, **obs):
    truth = crossing_people(T, n_people)
    kp, _ = observe(RIG, truth, noise_px=2.0, shuffle=True, seed=4, **obs)
    write_session(root, RIG, kp)
    return truth, kp


def test_stage_writes_skeletons_matching_truth(tmp_path):
    truth, _ = _session(tmp_path, outlier_rate=0.05, miss_rate=0.05, swap_rate=0.1)
    assert [str(p) for p in STAGE.inputs(_ctx(tmp_path))] == ["calib/rig.yaml", "pose2d"]
    STAGE.run(_ctx(tmp_path))
    out = read_npz(tmp_path / "pose3d" / "skeletons.npz", {
        "joints": ArraySpec(("T", "P", 17, 3)), "reprojection_error_px": ArraySpec(("T", "P", 17)),
        "views_used": ArraySpec(("T", "P", 17), kind="iu"), "frame_index": ArraySpec(("T",), kind="iu")})
    joints = out["joints"]
    assert joints.dtype == np.float32 and joints.shape == (60, 2, 17, 3)
    # Slot order = first appearance; match slots to people by distance.
    d = np.array([[np.nanmean(np.linalg.norm(joints[:, p] - truth[:, g], axis=-1)) for g in range(2)]
                  for p in range(2)])
    g_of = d.argmin(1)
    assert sorted(g_of.tolist()) == [0, 1]
    err_mm = np.linalg.norm(joints - truth[:, g_of], axis=-1) * 1000
    assert np.nanmean(err_mm) < 15.0
    assert (out["views_used"] >= 2).mean() > 0.95
    meta = read_yaml(tmp_path / "pose3d" / "pose3d.yaml", "pose3d@1")
    assert len(meta["people"]) == 2 and meta["people"][0]["frames_visible"] == 60
    assert meta["people"][0]["mean_reprojection_error_px"] < 5.0
    assert meta["settings"]["reprojection_threshold_px"] == 15.0
    assert meta["joint_names"][9] == "left_wrist" and meta["cameras"] == RIG.names
    assert meta["stats"]["swaps_corrected"] > 0


def test_params_are_documented_and_validated():
    text = render_defaults({"triangulate": TriangulateParams})
    assert "reprojection_threshold_px: 15.0" in text
    assert all(f.metadata.get("help") for f in dataclasses.fields(TriangulateParams))
    with pytest.raises(ConfigError, match="min_views"):
        from_mapping(TriangulateParams, {"min_views": 1}, "cfg.yaml", prefix="triangulate.")
    with pytest.raises(ConfigError, match="did you mean 'triangulate.reprojection_threshold_px'"):
        from_mapping(TriangulateParams, {"reprojection_threshold": 3}, "cfg.yaml", prefix="triangulate.")


def _one_line_error(root, match: str):
    with pytest.raises(PosecapError, match=match) as info:
        STAGE.run(_ctx(root, refine=False))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_camera_names_not_in_rig(tmp_path):
    _, kp = _session(tmp_path, T=20)
    (tmp_path / "pose2d" / "cam3.npz").rename(tmp_path / "pose2d" / "camX.npz")
    msg = _one_line_error(tmp_path, "camX")
    assert "rig cameras: cam0, cam1, cam2, cam3" in msg


def test_mismatched_frame_counts(tmp_path):
    _, kp = _session(tmp_path, T=20)
    write_npz(tmp_path / "pose2d" / "cam2.npz", keypoints=kp[2, :15], frame_index=np.arange(15))
    _one_line_error(tmp_path, "cam2.npz has 15 frames but cam0.npz has 20")


def test_wrong_joint_count(tmp_path):
    _, kp = _session(tmp_path, T=20)
    write_npz(tmp_path / "pose2d" / "cam1.npz", keypoints=kp[1, :, :, :12], frame_index=np.arange(20))
    _one_line_error(tmp_path, r"cam1.npz: array 'keypoints' has shape \(20, 2, 12, 3\)")


def test_missing_inputs(tmp_path):
    _one_line_error(tmp_path, "rig.yaml: required input missing")
    RIG.save(tmp_path / "calib" / "rig.yaml")
    _one_line_error(tmp_path, "pose2d: required input missing")


def test_all_nan_camera_warns_and_missing_camera_warns(tmp_path, caplog):
    _, kp = _session(tmp_path, T=30)
    dead = np.full_like(kp[0], np.nan)
    dead[..., 2] = 0
    write_npz(tmp_path / "pose2d" / "cam0.npz", keypoints=dead, frame_index=np.arange(30))
    (tmp_path / "pose2d" / "cam3.npz").unlink()
    with caplog.at_level(logging.WARNING, logger="posecap"):
        STAGE.run(_ctx(tmp_path, refine=False))
    text = caplog.text
    assert "no keypoints for camera(s) cam3" in text and "ignoring camera cam0" in text
    meta = read_yaml(tmp_path / "pose3d" / "pose3d.yaml", "pose3d@1")
    assert meta["cameras"] == ["cam1", "cam2"]
    # With only one usable camera left it is an error.
    write_npz(tmp_path / "pose2d" / "cam1.npz", keypoints=dead, frame_index=np.arange(30))
    _one_line_error(tmp_path, "only 1 camera")
