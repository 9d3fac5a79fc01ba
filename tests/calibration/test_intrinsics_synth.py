"""calibrate_intrinsics on the committed synthetic sample (calib_data/), against its ground truth.

The camera tiles are cut from the raw mosaics with the exact rectangles of
``ground_truth/mosaics.yaml`` (so this test does not depend on the crop stage) and written as
lossless streams (``pipeline.video.writer``, as crop writes them) into a session folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.artifacts import read_npz, read_yaml
from pipeline.calibration.board import BoardConfig
from pipeline.calibration.detect import iter_frames
from pipeline.calibration.intrinsics import pixel_grid, ray_error_px, undistortion_error_px
from pipeline.stage import StageContext
from pipeline.video.writer import StreamWriter
from stages.calibrate_intrinsics import STAGE, CalibrateIntrinsicsParams

DATA = Path(__file__).resolve().parents[2] / "calib_data"
pytestmark = pytest.mark.skipif(
    not (DATA / "ground_truth/rig.yaml").is_file(), reason="calib_data/ not generated"
)


def cut_session(root: Path, recording: str = "intrinsics") -> Path:
    """Streams and session.yaml for one recording, tiles cut with the ground-truth rectangles."""
    mosaics = yaml.safe_load((DATA / "ground_truth/mosaics.yaml").read_text())["files"]
    cams = {}
    for raw, info in mosaics.items():
        if info["recording"] != recording:
            continue
        tiles: dict[str, list] = {cam: [] for cam in info["cameras"]}
        for _, gray in iter_frames(DATA / raw):
            for cam, (x, y, w, h) in zip(info["cameras"], info["rects"]):
                tiles[cam].append(np.ascontiguousarray(gray[y : y + h, x : x + w]))
        for cam, (x, y, w, h) in zip(info["cameras"], info["rects"]):
            rel = f"calib/streams/{recording}/{cam}.mkv"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            writer = StreamWriter(root / rel, "auto", info["fps"], (w, h))  # png frames for odd sizes
            for tile in tiles[cam]:
                writer.write(cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR))
            writer.close()
            cams[cam] = {
                "stream": rel,
                "source": raw,
                "crop_rect": [x, y, w, h],
                "image_size": [w, h],
                "fps": info["fps"],
                "frame_count": len(tiles[cam]),
                "time_offset_s": 0.0,
                "truncated_at_frame": None,
            }
    session = {
        "schema": "posecap/session@1",
        "cameras": list(cams),
        "stereo_pairs": [],
        "recordings": {recording: {"kind": "intrinsics", "cameras": cams}},
    }
    (root / "session.yaml").write_text(yaml.safe_dump(session, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def synth_session(tmp_path_factory) -> Path:
    session = cut_session(tmp_path_factory.mktemp("synth_session"))
    options = yaml.safe_load((DATA / "ground_truth/options.yaml").read_text())
    board = BoardConfig(
        type=options["board"],
        inner_corners=tuple(options["inner_corners"]),
        square_size_m=options["square_size_m"],
    )
    ctx = StageContext(
        session_dir=session,
        params=CalibrateIntrinsicsParams(workers=1),
        config={"board": board},
        config_dir=session,
        show_progress=False,
        log=logging.getLogger("posecap.test"),
    )
    STAGE.run(ctx)
    return session


def covered(grid: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Which grid pixels ``(G, 2)`` lie inside the convex hull of the detected corners ``(..., 2)``."""
    pts = corners.reshape(-1, 2)
    hull = cv2.convexHull(pts[np.isfinite(pts).all(axis=1)].astype(np.float32))
    return np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0 for x, y in grid])


def test_synthetic_sample_matches_ground_truth(synth_session):
    rig = read_yaml(DATA / "ground_truth/rig.yaml", "rig@1")["cameras"]
    truth_corners = np.load(DATA / "ground_truth/boards.npz")
    for cam, truth in rig.items():
        result = read_yaml(synth_session / f"calib/intrinsics/{cam}.yaml", "intrinsics@1")
        K, dist = np.array(result["K"]), np.array(result["dist"])
        K_true, dist_true = np.array(truth["K"]), np.array(truth["dist"])
        size = tuple(truth["image_size"])
        assert result["image_size"] == list(size)
        det = read_npz(synth_session / f"calib/detections/{cam}.npz")
        grid = pixel_grid(size)
        inside = covered(grid, det["corners"])
        figures = {
            "focal_pct": float(np.max(np.abs(np.diag(K)[:2] / np.diag(K_true)[:2] - 1)) * 100),
            "pp_px": float(np.max(np.abs(K[:2, 2] - K_true[:2, 2]))),
            "undistortion_px": float(
                undistortion_error_px("pinhole5", K, dist, K_true, dist_true, size, uv=grid[inside]).max()
            ),
            "ray_px": float(
                ray_error_px("pinhole5", K, dist, K_true, dist_true, size, uv=grid[inside]).max()
            ),
            "rms_px": result["rms_px"],
            "covered": float(inside.mean()),
        }
        assert figures["focal_pct"] < 0.5, (cam, figures)
        assert figures["pp_px"] < 3.0, (cam, figures)
        assert figures["undistortion_px"] < 0.5, (cam, figures)
        assert figures["rms_px"] < 0.5, (cam, figures)
        # detections are in the generator's corner order (same board orientation convention)
        expected = truth_corners[f"corners_intrinsics_{cam}"][det["frame_index"]]
        assert np.nanmedian(np.linalg.norm(det["corners"] - expected, axis=2)) < 0.2, cam
