"""Stage calibrate_intrinsics end to end on rendered sweeps, against the true cameras."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import read_npz, read_yaml
from pipeline.calibration.board import BoardConfig
from pipeline.calibration.intrinsics import ray_error_px, undistortion_error_px
from pipeline.config import from_mapping, render_defaults
from pipeline.errors import ConfigError, PosecapError
from pipeline.stage import StageContext
from stages.calibrate_intrinsics import STAGE, CalibrateIntrinsicsParams
from tests.calibration.conftest import Sweep, make_session
from tests.calibration.render import render, write_video


def run_stage(session: Path, board: BoardConfig, **params) -> None:
    ctx = StageContext(
        session_dir=session,
        params=CalibrateIntrinsicsParams(**params),
        config={"board": board},
        config_dir=session,
        show_progress=False,
        log=logging.getLogger("posecap.test"),
    )
    STAGE.run(ctx)


def check_against_truth(result: dict, sweep: Sweep) -> dict:
    """The figures the issue asks for; asserts each and returns them."""
    K, dist = np.array(result["K"]), np.array(result["dist"])
    K_true, dist_true = sweep.camera.K, sweep.camera.dist
    figures = {
        "focal_pct": float(np.max(np.abs(K[[0, 1], [0, 1]] / K_true[[0, 1], [0, 1]] - 1)) * 100),
        "pp_px": float(np.max(np.abs(K[:2, 2] - K_true[:2, 2]))),
        "undistortion_px": float(
            undistortion_error_px("pinhole5", K, dist, K_true, dist_true, sweep.camera.size).max()
        ),
        "ray_px": float(ray_error_px("pinhole5", K, dist, K_true, dist_true, sweep.camera.size).max()),
        "rms_px": float(result["rms_px"]),
    }
    assert figures["focal_pct"] < 0.5, figures
    assert figures["pp_px"] < 3.0, figures
    assert figures["undistortion_px"] < 0.5, figures
    assert figures["ray_px"] < 1.5, figures  # also counts the principal-point offset
    assert figures["rms_px"] < 0.5, figures
    return figures


@pytest.fixture(scope="module")
def checker_session(checker_sweep, tmp_path_factory) -> Path:
    session = make_session(
        tmp_path_factory.mktemp("s_checker"), {"cam0": (checker_sweep.video, checker_sweep.camera.size)}
    )
    run_stage(session, checker_sweep.board, workers=2)
    return session


def test_checkerboard_matches_ground_truth(checker_session, checker_sweep):
    result = read_yaml(checker_session / "calib/intrinsics/cam0.yaml", "intrinsics@1")
    check_against_truth(result, checker_sweep)
    assert result["model"] == "pinhole5" and len(result["dist"]) == 5
    assert result["image_size"] == [640, 480]
    frames = result["frames"]
    assert frames["scanned"] == 40 and frames["detected"] >= 36
    assert (
        frames["used"]
        + sum(len(v) for k, v in frames["rejected"].items() if k != "redundant")
        + frames["rejected"]["redundant"]
        == frames["detected"]
    )
    blurred = {9, 19, 29, 39}  # blur_every=10
    detected = set(read_npz(checker_session / "calib/detections/cam0.npz")["frame_index"].tolist())
    assert blurred & detected <= set(frames["rejected"]["blurred"]) <= blurred
    assert len(result["per_frame"]) >= frames["used"]
    assert 0.5 < result["coverage"] <= 1.0 and result["warnings"] == []
    assert (checker_session / "calib/intrinsics/cam0.png").stat().st_size > 1000


def test_detections_artifact(checker_session):
    arrays = read_npz(checker_session / "calib/detections/cam0.npz")
    assert arrays["corners"].shape[1:] == (54, 2)
    assert arrays["corners"].shape[0] == arrays["frame_index"].shape[0] == arrays["sharpness"].shape[0]
    assert int(arrays["frames_scanned"]) == 40


def test_rerun_reuses_detections_and_agrees(checker_session, checker_sweep, caplog):
    before = read_yaml(checker_session / "calib/intrinsics/cam0.yaml", "intrinsics@1")
    with caplog.at_level(logging.INFO, logger="posecap.test"):
        run_stage(checker_session, checker_sweep.board, workers=1)
    assert any("reusing" in r.message for r in caplog.records)
    after = read_yaml(checker_session / "calib/intrinsics/cam0.yaml", "intrinsics@1")
    np.testing.assert_allclose(after["K"], before["K"], rtol=1e-9)


def test_charuco_matches_ground_truth(charuco_sweep, tmp_path):
    session = make_session(tmp_path, {"cam0": (charuco_sweep.video, charuco_sweep.camera.size)})
    run_stage(session, charuco_sweep.board, workers=1)
    result = read_yaml(session / "calib/intrinsics/cam0.yaml", "intrinsics@1")
    check_against_truth(result, charuco_sweep)
    assert result["board"]["type"] == "charuco"


def test_camera_without_board_is_a_clear_error(checker_sweep, tmp_path):
    cut = [
        render(
            checker_sweep.camera,
            checker_sweep.board,
            np.zeros(3),
            np.array([0.36 + 0.004 * k, -0.12, 0.7]),
            ss=1,
        )
        for k in range(12)
    ]  # the board half out of the frame: never detected
    video = write_video(tmp_path / "cut.mkv", cut)
    session = make_session(
        tmp_path / "s", {"cam0": (checker_sweep.video, (640, 480)), "cam7": (video, (640, 480))}
    )
    with pytest.raises(
        PosecapError,
        match=r"^camera cam7: the board \(checkerboard 9x6 inner corners\) was found "
        r"in 0 of 12 frames examined in .*cam7.mkv \(need at least "
        r"calibrate_intrinsics.min_frames = 8\)\. No likely alternative",
    ) as info:
        run_stage(session, checker_sweep.board, workers=1)
    assert "\n" not in str(info.value)
    assert (session / "calib/intrinsics/cam0.yaml").is_file(), "the good camera is still calibrated"
    assert not (session / "calib/intrinsics/cam7.yaml").exists()


def test_blank_stream_fails_fast(checker_sweep, tmp_path):
    blank = [np.full((480, 640), 3, np.uint8)] * 40
    session = make_session(tmp_path, {"cam0": (write_video(tmp_path / "black.mkv", blank), (640, 480))})
    with pytest.raises(
        PosecapError, match=r"camera cam0: .* found in 0 of 12 sample frames .* are nearly uniform"
    ):
        run_stage(session, checker_sweep.board, workers=1)
    assert not (session / "calib/detections/cam0.npz").exists(), "no full detection pass was run"


def test_wrong_board_definition_names_the_right_one(checker_sweep, tmp_path):
    session = make_session(tmp_path, {"cam0": (checker_sweep.video, (640, 480))})
    squares = BoardConfig(inner_corners=(10, 7))  # squares counted instead of inner corners
    with pytest.raises(
        PosecapError,
        match=r"checkerboard 9x6 inner corners matches \d+ \(squares counted instead "
        r"of inner corners\?\); set board: \{type: checkerboard, "
        r"inner_corners: \[9, 6\]",
    ):
        run_stage(session, squares, workers=1, stride=3)


def test_image_size_differing_from_session_is_an_error(checker_sweep, tmp_path):
    session = make_session(tmp_path, {"cam0": (checker_sweep.video, (1280, 720))})
    with pytest.raises(
        PosecapError, match=r"camera cam0 frames are 640x480 px but session.yaml says 1280x720"
    ):
        run_stage(session, checker_sweep.board, workers=1)


def test_unknown_recording_and_camera_are_config_errors(checker_sweep, tmp_path):
    session = make_session(tmp_path, {"cam0": (checker_sweep.video, (640, 480))})
    with pytest.raises(ConfigError, match=r"no recording 'sweep' \(found: intrinsics\)"):
        run_stage(session, checker_sweep.board, recording="sweep")
    with pytest.raises(ConfigError, match=r"calibrate_intrinsics.cameras names cam9"):
        run_stage(session, checker_sweep.board, cameras=["cam9"])


def test_stage_declaration_and_config():
    ctx = StageContext(
        session_dir=Path("."),
        params=CalibrateIntrinsicsParams(recording="lens"),
        config={},
        config_dir=Path("."),
    )
    assert STAGE.inputs(ctx) == ["session.yaml", "calib/streams/lens"]
    assert STAGE.outputs(ctx) == ["calib/detections", "calib/intrinsics"]
    text = render_defaults({"board": BoardConfig, "calibrate_intrinsics": CalibrateIntrinsicsParams})
    assert "inner_corners: [9, 6]" in text and "model: pinhole5" in text
    board = from_mapping(BoardConfig, {"type": "charuco", "inner_corners": [7, 5]}, "x.yaml", "board.")
    assert board.inner_corners == (7, 5)
    with pytest.raises(ConfigError, match="aruco_dict 'DICT_9X9' is not an OpenCV dictionary"):
        from_mapping(BoardConfig, {"type": "charuco", "aruco_dict": "DICT_9X9"}, "x.yaml", "board.")
    with pytest.raises(ConfigError, match="did you mean 'fisheye'"):
        from_mapping(CalibrateIntrinsicsParams, {"model": "fishey"}, "x.yaml", "calibrate_intrinsics.")
