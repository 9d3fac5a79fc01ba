"""Stage calibrate_extrinsics end to end on the rendered sample ``calib_data/`` (extrinsic sweep), against ground truth.

The extrinsics recording is cropped with the crop stage; the intrinsics are the ground truth's
(written as ``calib/intrinsics/<cam>.yaml``), so the figures measure this stage alone. Camera
centres and rotations are compared after a similarity alignment (the stage's world is cam0).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import read_yaml, write_yaml
from pipeline.calibration.board import BoardConfig
from pipeline.config import from_mapping, render_defaults
from pipeline.errors import ArtifactError, ConfigError, PosecapError
from pipeline.geometry.rig import Rig
from pipeline.stage import StageContext
from stages.calibrate_extrinsics import STAGE, CalibrateExtrinsicsParams
from tests.calibration.extrinsics_synthetic import rig_errors

ROOT = Path(__file__).resolve().parents[2]
CALIB_DATA = Path(os.environ.get("POSECAP_CALIB_DATA", ROOT / "calib_data"))


def run_stage(session: Path, board: BoardConfig | None = None, **params) -> None:
    ctx = StageContext(session_dir=session, params=CalibrateExtrinsicsParams(**params),
                       config={"board": board or BoardConfig()}, config_dir=session, show_progress=False,
                       log=logging.getLogger("posecap.test"))
    STAGE.run(ctx)


def write_intrinsics(session: Path, rig: Rig) -> None:
    for cam in rig.cameras:
        write_yaml(session / "calib" / "intrinsics" / f"{cam.name}.yaml",
                   {"camera": cam.name, "model": "pinhole5", "image_size": list(cam.image_size), "K": cam.K,
                    "dist": cam.dist, "rms_px": 0.0}, "intrinsics@1")


@pytest.fixture(scope="module")
def calib_session(tmp_path_factory):
    """calib_data's extrinsics recording cropped, ground-truth intrinsics, the stage run once."""
    if not (CALIB_DATA / "raw" / "extrinsics").is_dir() or not (CALIB_DATA / "ground_truth" / "rig.yaml").is_file():
        pytest.skip(f"no rendered sample at {CALIB_DATA}")
    from pipeline.config import Config
    from stages.crop import STAGE as CROP
    from stages.crop import CropParams

    cfg = read_yaml(CALIB_DATA / "ground_truth" / "mosaics.yaml", "synth_mosaics@1")["files"]
    sources = [{"path": str((CALIB_DATA / raw).resolve()), "grid": list(m["grid"]), "cameras": list(m["cameras"])}
               for raw, m in cfg.items() if m["recording"] == "extrinsics"]
    crop = from_mapping(CropParams, {"recordings": {"extrinsics": {"kind": "extrinsics", "sources": sources}},
                                     "stereo_pairs": [["stereo_l", "stereo_r"]]}, "<test>", "crop.")
    session = tmp_path_factory.mktemp("extrinsics") / "session"
    session.mkdir()
    config = Config(sections={"crop": crop}, session_dir=session, source=None)
    CROP.run(StageContext(session_dir=session, params=crop, config=config, config_dir=session, show_progress=False))
    truth = Rig.load(CALIB_DATA / "ground_truth" / "rig.yaml")
    write_intrinsics(session, truth)
    board = read_yaml(CALIB_DATA / "ground_truth" / "options.yaml", "synth_options@1")
    board_cfg = BoardConfig(type=board["board"], inner_corners=tuple(board["inner_corners"]),
                            square_size_m=board["square_size_m"])
    run_stage(session, board_cfg, workers=2)
    return session, truth, board_cfg


@pytest.mark.slow
def test_rig_against_ground_truth(calib_session):
    session, truth, _ = calib_session
    data = read_yaml(session / "calib" / "rig.yaml", "rig@1")
    assert data["units"] == "m" and data["world"] == "cam0"
    for cam in data["cameras"].values():
        assert list(cam) == ["image_size", "K", "dist", "R", "t", "reprojection_rms_px"]
        assert cam["reprojection_rms_px"] < 0.5
    rig = Rig.load(session / "calib" / "rig.yaml")
    err = rig_errors(rig, truth)
    assert err["centre_mm"].max() < 10.0, err
    assert err["rotation_deg"].max() < 0.2, err
    assert abs(err["scale"] - 1.0) < 2e-3, err


@pytest.mark.slow
def test_stereo_pair_against_ground_truth(calib_session):
    session, truth, _ = calib_session
    st = read_yaml(session / "calib" / "stereo" / "stereo_l-stereo_r.yaml", "stereo@1")
    true_mm = np.linalg.norm(truth.camera("stereo_l").center_world - truth.camera("stereo_r").center_world) * 1000
    assert abs(st["baseline_mm"] - true_mm) < 1.0, (st["baseline_mm"], true_mm)
    assert abs(st["baseline_mm_rig"] - true_mm) < 1.0, (st["baseline_mm_rig"], true_mm)
    assert st["rectified"]["mean_abs_dy_px"] < 0.5
    assert st["rms_px"] < 0.5
    for key in ("R", "T", "E", "F", "R1", "R2", "P1", "P2", "Q"):
        assert key in st
    assert (session / "calib" / "stereo" / "stereo_l-stereo_r.png").stat().st_size > 1000


@pytest.mark.slow
def test_report_and_pictures(calib_session):
    session, truth, _ = calib_session
    rep = read_yaml(session / "calib" / "report.yaml", "rig_report@1")
    assert set(rep["cameras"]) == set(truth.names)
    for cam in rep["cameras"].values():
        assert {"views_detected", "views_used", "observations", "rms_px", "p50_px", "p95_px", "p99_px",
                "max_px"} <= set(cam)
    assert "stereo_l-stereo_r" in rep["pairs"] and rep["pairs"]["stereo_l-stereo_r"]["frames"] > 5
    assert len(rep["covisibility"]["spanning_tree"]) == len(truth) - 1
    counts = rep["dropped_views"]["counts"]
    assert sum(counts.values()) == len(rep["dropped_views"]["views"])
    assert rep["bundle_adjustment"]["converged"] and not rep["bundle_adjustment"]["kept_initial"]
    assert rep["overall"]["rms_px"] < rep["overall"]["initial_rms_px"]
    import open3d as o3d

    ls = o3d.io.read_line_set(str(session / "calib" / "extrinsics" / "rig.ply"))
    assert len(ls.lines) == 8 * len(truth) + 3
    assert (session / "calib" / "extrinsics" / "rig.png").stat().st_size > 1000
    assert sorted(p.name for p in (session / "calib" / "extrinsics" / "detections").iterdir()) == \
        sorted(f"{c}.npz" for c in truth.names)


@pytest.mark.slow
def test_rerun_reuses_detections(calib_session, caplog):
    session, _, board = calib_session
    with caplog.at_level(logging.INFO, logger="posecap.test"):
        run_stage(session, board, workers=1, world="first_camera", reference_camera="cam1", write_png=False,
                  write_ply=False)
    assert caplog.text.count("reusing") == 6
    assert read_yaml(session / "calib" / "rig.yaml", "rig@1")["world"] == "cam1"


def test_params_and_errors(tmp_path):
    assert "calibrate_extrinsics" in render_defaults({"calibrate_extrinsics": CalibrateExtrinsicsParams})
    with pytest.raises(ConfigError, match="floor_frame"):
        from_mapping(CalibrateExtrinsicsParams, {"world": "floor_board"}, "cfg.yaml", "calibrate_extrinsics.")
    with pytest.raises(ConfigError, match="unknown k9"):
        from_mapping(CalibrateExtrinsicsParams, {"refine_intrinsics": {"*": ["k9"]}}, "cfg.yaml",
                     "calibrate_extrinsics.")
    params = from_mapping(CalibrateExtrinsicsParams, {"refine_intrinsics": {"cam0": ["fx", "cx"]}}, "cfg.yaml",
                          "calibrate_extrinsics.")
    assert params.refine_intrinsics == {"cam0": ["fx", "cx"]}
    session = tmp_path / "s"
    session.mkdir()
    cams = {c: {"stream": f"calib/streams/extrinsics/{c}.mkv", "image_size": [64, 48], "fps": 30.0,
                "time_offset_s": 0.0} for c in ("a", "b")}
    write_yaml(session / "session.yaml", {"cameras": ["a", "b"], "stereo_pairs": [],
                                          "recordings": {"extrinsics": {"kind": "extrinsics", "cameras": cams}}},
               "session@1")
    with pytest.raises(ConfigError, match="no recording 'sweep'"):
        run_stage(session, recording="sweep")
    with pytest.raises(ConfigError, match="names zz"):
        run_stage(session, cameras=["zz"])
    with pytest.raises(ArtifactError, match="intrinsics of camera a missing"):
        run_stage(session)
    write_yaml(session / "calib" / "intrinsics" / "a.yaml", {"model": "fisheye", "K": np.eye(3), "dist": [0, 0, 0, 0],
                                                            "image_size": [64, 48]}, "intrinsics@1")
    with pytest.raises(PosecapError, match="fisheye model"):
        run_stage(session)
