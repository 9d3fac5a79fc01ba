"""The crop stage on synthetic sessions from ``pipeline.synth`` (exact tile rects and renders known).

Two sessions: a tiny one generated here (always runs), and the committed ``calib_data/`` sample
(runs when it exists; ``POSECAP_CALIB_DATA`` may point elsewhere). crop writes lossless PNG
streams, so every cropped frame equals the crop of the decoded mosaic frame exactly. Against the
generator's per-camera renders the stated bound is the raw codec's: exact equality for FFV1
mosaics; for MPEG-4 (``mp4v``, the generator's default) a mean absolute error per frame under 6
grey levels (measured: 3.3-4.2 on 128x96 tiles with the generator's sensor noise), everywhere
except inside the burned-in timestamp box (drawn over cam0's tile after rendering).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.artifacts import read_yaml
from pipeline.video.reader import leading_frames
from pipeline.video.tiles import detect_tiles
from stages.crop import CropParams
from tests.crop.crop_fixtures import read_all, run_config

ROOT = Path(__file__).resolve().parents[2]
MP4V_BOUND = 6.0  # grey levels, mean absolute error over a frame, all channels
CALIB_DATA = Path(os.environ.get("POSECAP_CALIB_DATA", ROOT / "calib_data"))

synth_session = pytest.importorskip("pipeline.synth.session")
synth_scene = pytest.importorskip("pipeline.synth.scene")


def _tile_mask(rect: list[int], timestamp_rect: list[int] | None) -> np.ndarray:
    """(h, w) bool, False where the timestamp box covers the tile."""
    x, y, w, h = rect
    keep = np.ones((h, w), bool)
    if timestamp_rect is not None:
        tx, ty, tw, th = timestamp_rect
        keep[max(0, ty - y):max(0, ty + th - y), max(0, tx - x):max(0, tx + tw - x)] = False
    return keep


def _check_streams(out_dir: Path, session: Path, recordings: tuple[str, ...],
                   spot_check: bool = False) -> None:
    """Rects in session.yaml == ground truth; streams == renders outside the timestamp box.

    Every stream frame must equal the crop of the decoded mosaic frame exactly (crop adds no
    loss). Against the generator's render, the bound depends on the raw codec: exact for FFV1,
    and for MPEG-4 Part 2 (``mp4v``) a mean absolute error under ``MP4V_BOUND`` per frame.
    """
    truth = read_yaml(out_dir / "ground_truth/mosaics.yaml", "synth_mosaics@1")["files"]
    doc = read_yaml(session / "session.yaml", "session@1")
    for raw, gt in truth.items():
        rec = gt["recording"]
        if rec not in recordings:
            continue
        lossless = raw.endswith(".avi") and _fourcc(out_dir / raw) == "FFV1"
        mosaic = read_all(out_dir / raw)
        ts_cam = gt.get("timestamp_camera")
        for cam, rect in zip(gt["cameras"], gt["rects"]):
            entry = doc["recordings"][rec]["cameras"][cam]
            assert Path(entry["source"]).as_posix().endswith(raw) and entry["crop_rect"] == rect, (raw, cam)
            assert entry["frame_count"] == gt["frame_count"] and entry["fps"] == gt["fps"]
            assert entry["truncated_at_frame"] is None
            got = read_all(session / entry["stream"])
            assert len(got) == gt["frame_count"] == len(mosaic)
            x, y, w, h = rect
            for n, frame in enumerate(got):
                assert np.array_equal(frame, mosaic[n][y:y + h, x:x + w]), (raw, cam, n)
            count = gt["frame_count"]
            idx = sorted({0, count - 1}) if spot_check else list(range(count))
            want = synth_session.render_camera_frames(out_dir, rec, cam, idx)
            keep = _tile_mask(rect, gt["timestamp_rect"] if cam == ts_cam else None)
            for n, expected in zip(idx, want):
                assert got[n].shape == expected.shape, (cam, n)
                diff = np.abs(got[n].astype(np.int16) - expected).max(axis=2)
                if lossless:
                    assert diff[keep].max(initial=0) == 0, (raw, cam, n)
                else:
                    err = np.abs(got[n].astype(np.int16) - expected)[keep].mean()
                    assert err < MP4V_BOUND, (raw, cam, n, err)
                if not keep.all():  # the timestamp box was cropped with the tile, not lost
                    assert diff[~keep].mean() > diff[keep].mean()


def _fourcc(path: Path) -> str:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    cap.release()
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).upper()


@pytest.fixture(scope="module", params=["ffv1", "mp4v"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"synth_{request.param}")
    options = synth_scene.SynthOptions(tile_size=(128, 96), intrinsics_frames=3, extrinsics_frames=3,
                                       capture_frames=4, codec=request.param)
    synth_session.generate_session(out, options, show_progress=False)
    return out


def test_tiny_synthetic_session(tiny: Path) -> None:
    session = tiny / "session"
    run_config(tiny / "posecap.yaml", session)
    _check_streams(tiny, session, ("intrinsics", "extrinsics", "capture"))
    doc = read_yaml(session / "session.yaml", "session@1")
    config = yaml.safe_load((tiny / "posecap.yaml").read_text())
    assert doc["stereo_pairs"] == config["crop"]["stereo_pairs"]
    assert sorted(doc["cameras"]) == sorted(read_yaml(tiny / "ground_truth/rig.yaml", "rig@1")["cameras"])


needs_calib_data = pytest.mark.skipif(not (CALIB_DATA / "ground_truth/mosaics.yaml").is_file(),
                                      reason="calib_data/ sample not generated yet")


@needs_calib_data
def test_calib_data_detected_rects_equal_ground_truth() -> None:
    truth = read_yaml(CALIB_DATA / "ground_truth/mosaics.yaml", "synth_mosaics@1")["files"]
    assert truth
    for raw, gt in truth.items():
        frames = leading_frames(CALIB_DATA / raw, CropParams().detect_frames)
        rects = detect_tiles(frames, tuple(gt["grid"]), where=raw)
        assert [list(r) for r in rects] == gt["rects"], raw


@needs_calib_data
def test_calib_data_crop_equals_renders(tmp_path: Path) -> None:
    config = yaml.safe_load((CALIB_DATA / "posecap.yaml").read_text())
    crop = config["crop"]
    crop["recordings"] = {"intrinsics": crop["recordings"]["intrinsics"]}  # one recording keeps it quick
    for src in crop["recordings"]["intrinsics"]["sources"]:
        src["path"] = str((CALIB_DATA / src["path"]).resolve())
    cfg = tmp_path / "posecap.yaml"
    cfg.write_text(yaml.safe_dump({"crop": crop}))
    run_config(cfg, tmp_path / "session")
    _check_streams(CALIB_DATA, tmp_path / "session", ("intrinsics",), spot_check=True)
