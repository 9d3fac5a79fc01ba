"""The sync stage on synthetic unsynchronized takes: offsets within 0.2 frame, MPJPE, fallback, override.

Figures (seed 0, 8 s, two people walking, 0.7 px keypoint noise, 4 quad + 2 stereo cameras):
see the asserts and ``docs/sync.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import read_npz, read_yaml, write_yaml
from pipeline.config import Config, render_defaults
from pipeline.errors import ConfigError
from pipeline.stage import StageContext
from pipeline.sync.io import read_sync
from stages.sync import STAGE as SYNC
from stages.sync import SyncParams
from stages.triangulate import STAGE as TRIANGULATE
from stages.triangulate import TriangulateParams
from tests.sync.synthetic import Take, make_take

OFFSET_FRAMES = 7.4  # quad (30 fps) frames


def _ctx(root: Path, params, sections=None) -> StageContext:
    config = Config(sections=sections or {}) if sections is not None else None
    return StageContext(session_dir=root, params=params, config=config, config_dir=root, show_progress=False)


def _sync(root: Path, **params) -> dict:
    SYNC.run(_ctx(root, SyncParams(**params)))
    return read_yaml(root / "sync.yaml", "sync@1")


def _triangulate(take: Take) -> float:
    """Triangulate the take (sync.yaml applied when present) and return the MPJPE in mm."""
    TRIANGULATE.run(_ctx(take.session, TriangulateParams(refine=False, filter="none")))
    out = read_npz(take.session / "pose3d" / "skeletons.npz")
    joints = out["joints"].astype(np.float64)
    truth = take.joints[out["frame_index"]]
    P = truth.shape[1]
    errs = []
    for p in range(joints.shape[1]):
        d = [np.nanmean(np.linalg.norm(joints[:, p] - truth[:, g], axis=-1)) for g in range(P)]
        g = int(np.nanargmin(d))
        errs.append(np.linalg.norm(joints[:, p] - truth[:, g], axis=-1).ravel())
    e = np.concatenate(errs)
    return float(np.nanmean(e) * 1000)


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> dict[str, Take]:
    root = tmp_path_factory.mktemp("sync")
    return {
        "perfect": make_take(root / "perfect"),
        "offset30": make_take(root / "offset30", stereo_offset_s=OFFSET_FRAMES / 30.0),
        "fps25": make_take(root / "fps25", stereo_fps=25.0, stereo_offset_s=OFFSET_FRAMES / 30.0),
        "early25": make_take(root / "early25", stereo_fps=25.0, stereo_offset_s=-13.3 / 30.0, seed=3),
    }


@pytest.fixture(scope="module")
def synced(takes) -> dict[str, dict]:
    return {name: _sync(takes[name].session) for name in ("offset30", "fps25", "early25")}


@pytest.mark.parametrize("name", ["offset30", "fps25", "early25"])
def test_offset_within_a_fifth_of_a_frame(takes, synced, name):
    doc = synced[name]
    take = takes[name]
    stereo = doc["clocks"]["stereo"]
    assert doc["reference"] == "quad" and doc["reference_fps"] == 30.0
    assert stereo["method"] == "correlation+reprojection"
    err_s = stereo["offset_s"] - take.stereo_offset_s
    print(f"{name}: offset error {err_s * 30:+.4f} quad frames ({err_s * take.stereo_fps:+.4f} stereo frames)")
    # within 0.2 frame of either clock
    assert abs(err_s) * max(30.0, take.stereo_fps) < 0.2, f"offset error {err_s * 30:.3f} quad frames"
    assert stereo["fps"] == take.stereo_fps and stereo["rate"] == 1.0
    assert doc["cameras"]["stereo_r"]["offset_s"] == stereo["offset_s"]
    assert doc["cameras"]["cam2"] == {"clock": "quad", "fps": 30.0, "offset_s": 0.0, "rate": 1.0,
                                      "confidence": 1.0, "method": "reference"}
    assert 0.0 <= stereo["confidence"] <= 1.0 and stereo["geometric_confidence"] > 0.5
    table = read_sync(take.session / "sync.yaml")
    assert table.cameras["stereo_l"].fps == take.stereo_fps


def test_mpjpe_synced_vs_unsynced_vs_perfect(takes, synced):
    perfect = _triangulate(takes["perfect"])
    # 30 fps, stereo 7.4 frames late: without sync.yaml the frames are paired by index.
    take = takes["offset30"]
    (take.session / "sync.yaml").rename(take.session / "sync.yaml.bak")
    unsynced = _triangulate(take)
    (take.session / "sync.yaml.bak").rename(take.session / "sync.yaml")
    synced30 = _triangulate(take)
    # 25 vs 30 fps: frame rates applied but offsets zeroed = unsynced; the estimated ones = synced.
    take25 = takes["fps25"]
    doc = synced["fps25"]
    zero = {**doc, "cameras": {k: {**v, "offset_s": 0.0} for k, v in doc["cameras"].items()}}
    zero.pop("schema", None)
    write_yaml(take25.session / "sync.yaml", zero, "sync@1")
    unsynced25 = _triangulate(take25)
    doc.pop("schema", None)
    write_yaml(take25.session / "sync.yaml", doc, "sync@1")
    synced25 = _triangulate(take25)
    skel = read_npz(take25.session / "pose3d" / "skeletons.npz")
    np.testing.assert_allclose(skel["timestamp_s"], skel["frame_index"] / 30.0)
    print(f"MPJPE mm: perfect {perfect:.2f}; 30 fps +7.4 frames: synced {synced30:.2f}, unsynced {unsynced:.2f}; "
          f"25 vs 30 fps: synced {synced25:.2f}, unsynced {unsynced25:.2f}")
    assert synced30 <= 1.10 * perfect
    assert synced25 <= 1.10 * perfect
    assert unsynced > 2.0 * perfect and unsynced25 > 2.0 * perfect


def test_too_little_motion_warns_and_falls_back(tmp_path, caplog):
    make_take(tmp_path, still=True, stereo_offset_s=0.2, session_offsets={"stereo": 0.125})
    with caplog.at_level(logging.WARNING, logger="posecap"):
        doc = _sync(tmp_path)
    stereo = doc["clocks"]["stereo"]
    assert stereo["method"] == "fallback" and stereo["offset_s"] == 0.125 and stereo["confidence"] == 0.0
    assert "too little motion" in stereo["warning"]
    assert any("too little motion to synchronize" in r.message and "falling back" in r.message
               for r in caplog.records)


def test_config_offsets_win_and_are_reported(tmp_path, caplog):
    make_take(tmp_path, seconds=3.0, stereo_offset_s=0.2)
    with caplog.at_level(logging.INFO, logger="posecap"):
        doc = _sync(tmp_path, offsets_s={"stereo_l": 0.5}, rates={"stereo": 1.0001})
    stereo = doc["clocks"]["stereo"]
    assert stereo["method"] == "config" and stereo["offset_s"] == 0.5 and stereo["rate"] == 1.0001
    assert stereo["config_key"] == "offsets_s.stereo_l"
    assert doc["cameras"]["stereo_r"]["method"] == "config"
    assert any("from config" in r.message for r in caplog.records)
    with pytest.raises(ConfigError, match="neither a clock nor a camera"):
        _sync(tmp_path, offsets_s={"stereo_x": 0.5})


def test_single_clock_gives_identity(tmp_path):
    take = make_take(tmp_path, seconds=2.0)
    session = read_yaml(tmp_path / "session.yaml", "session@1")
    for cam in session["recordings"]["capture"]["cameras"].values():
        cam["source"] = "raw/capture/all.avi"
    session.pop("schema")
    write_yaml(tmp_path / "session.yaml", session, "session@1")
    doc = _sync(tmp_path)
    assert list(doc["clocks"]) == ["all"] and doc["clocks"]["all"]["method"] == "reference"
    assert all(c["offset_s"] == 0.0 for c in doc["cameras"].values())
    assert take.session == tmp_path


def test_triangulate_declares_sync_only_when_it_exists_or_will(tmp_path):
    from pipeline.config import load_config
    from pipeline.dag import build_dag

    make_take(tmp_path, seconds=1.0)

    def declared(stages) -> list[str]:
        config = load_config(None, {s.name: s.params_type for s in stages})
        node = build_dag(stages, config, tmp_path).nodes["triangulate"]
        return [node.rel(p) for p in node.inputs]

    assert declared([TRIANGULATE]) == ["calib/rig.yaml", "pose2d"]
    assert declared([SYNC, TRIANGULATE]) == ["calib/rig.yaml", "pose2d", "sync.yaml"]
    (tmp_path / "session.yaml").unlink()  # hand-made session: sync cannot run, so it never blocks
    assert declared([SYNC, TRIANGULATE]) == ["calib/rig.yaml", "pose2d"]


def test_params_are_documented_and_validated():
    text = render_defaults({"sync": SyncParams})
    assert "offsets_s: {}" in text and "min_motion: 0.05" in text
    with pytest.raises(ValueError, match="max_offset_s"):
        SyncParams(max_offset_s=0)
    assert [str(p) for p in SYNC.outputs(None)] == ["sync.yaml"]


def test_clock_rate_ratio_is_estimated_when_asked(tmp_path):
    take = make_take(tmp_path, stereo_fps=25.0, stereo_offset_s=OFFSET_FRAMES / 30.0, stereo_rate=1.003)
    stereo = _sync(tmp_path, estimate_rate=True)["clocks"]["stereo"]
    assert abs(stereo["rate"] - 1.003) < 3e-4
    assert abs(stereo["offset_s"] - take.stereo_offset_s) * 30.0 < 0.2
    table = read_sync(tmp_path / "sync.yaml")
    assert table.cameras["stereo_l"].rate == stereo["rate"]


def test_clock_without_keypoints_falls_back(tmp_path, caplog):
    make_take(tmp_path, seconds=2.0, session_offsets={"stereo": 0.05})
    for cam in ("stereo_l", "stereo_r"):
        (tmp_path / "pose2d" / f"{cam}.npz").unlink()
    with caplog.at_level(logging.WARNING, logger="posecap"):
        stereo = _sync(tmp_path)["clocks"]["stereo"]
    assert stereo["method"] == "fallback" and stereo["offset_s"] == 0.05
    assert "no 2D keypoints" in stereo["warning"]


def test_runner_orders_sync_before_triangulate(tmp_path):
    from pipeline.runner import Runner

    take = make_take(tmp_path, seconds=4.0, stereo_fps=25.0, stereo_offset_s=0.3)
    config = Config(sections={"sync": SyncParams(),
                              "triangulate": TriangulateParams(refine=False, filter="none")})
    report = Runner([TRIANGULATE, SYNC], config, tmp_path, show_progress=False).run()
    assert report.ran == ["sync", "triangulate"]
    skel = read_npz(tmp_path / "pose3d" / "skeletons.npz")
    assert skel["joints"].shape[0] == take.joints.shape[0] and "timestamp_s" in skel
    again = Runner([TRIANGULATE, SYNC], config, tmp_path, show_progress=False).run()
    assert again.ran == [] and sorted(again.skipped_up_to_date) == ["sync", "triangulate"]
