"""Running the stage: the DESIGN.md format, metadata, no-detection warning, and resume after a kill."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import read_yaml
from pipeline.errors import ConfigError
from pipeline.pose2d.io import PARTIAL_DIR, read_pose2d
from pipeline.stage import StageContext
from stages.pose2d import STAGE, Pose2dParams

REPO = Path(__file__).resolve().parents[2]


def _run(session: Path, config_dir: Path, **params) -> StageContext:
    ctx = StageContext(session, Pose2dParams(device="cpu", **params), None, config_dir, show_progress=False)
    STAGE.run(ctx)
    return ctx


def test_bottomup_stage_writes_design_format(session, weights, tmp_path):
    ctx = _run(session, tmp_path, backend="bottomup", bottomup_weights=str(weights["bottomup"]),
               batch_frames=2, chunk_frames=2)
    assert str(weights["bottomup"]) in STAGE.inputs(ctx) and "streams" in STAGE.inputs(ctx)
    meta = read_yaml(session / "pose2d" / "pose2d.yaml", "pose2d@1")
    assert meta["backend"] == "bottomup" and meta["weights"]["bottomup"]["digest"].startswith("sha256:")
    assert meta["settings"]["batch_frames"] == 2 and meta["timing"]["seconds"] > 0
    for cam in ("cam0", "cam1"):
        with np.load(session / "pose2d" / f"{cam}.npz") as npz:
            assert sorted(npz.files) == ["frame_index", "keypoints"]
            kp, fi = npz["keypoints"], npz["frame_index"]
        assert kp.dtype == np.float32 and kp.ndim == 4 and kp.shape[0] == 6 and kp.shape[2:] == (17, 3)
        assert fi.dtype.kind == "i" and list(fi) == list(range(6))
        missing = np.isnan(kp[..., 0])
        assert (np.isnan(kp[..., 1]) == missing).all() and (kp[..., 2][missing] == 0).all()
        assert ((kp[..., 2] >= 0) & (kp[..., 2] <= 1)).all()
        assert meta["cameras"][cam]["detections"] == int((~missing).any(-1).sum())
        assert meta["cameras"][cam]["frames"] == 6
    assert not (session / "pose2d" / PARTIAL_DIR).exists()


def test_camera_without_detections_warns(session, weights, tmp_path, caplog):
    for png in (session / "streams" / "cam1").iterdir():  # a black camera
        import cv2

        img = cv2.imread(str(png))
        cv2.imwrite(str(png), np.zeros_like(img))
    with caplog.at_level(logging.WARNING, logger="posecap"):
        _run(session, tmp_path, backend="topdown", bottomup_weights=str(weights["bottomup"]),
             topdown_weights=str(weights["topdown"]), min_person_score=0.0, min_joints=1,
             detector_min_person_score=0.99)
    assert any("camera cam1: no person detected" in r.message for r in caplog.records)
    kp, _ = read_pose2d(session / "pose2d" / "cam1.npz", 17)
    assert kp.shape[0] == 6 and np.isnan(kp[..., :2]).all()


def test_missing_weights_and_bad_params_are_config_errors(session, tmp_path):
    with pytest.raises(ConfigError, match="weights not found"):
        _run(session, tmp_path, backend="bottomup", bottomup_weights="nope.pt")
    with pytest.raises(ValueError, match="multiple of 'batch_frames'"):
        Pose2dParams(batch_frames=3, chunk_frames=4)
    ctx = StageContext(session, Pose2dParams(backend="onnx"), None, tmp_path, show_progress=False)
    with pytest.raises(ConfigError, match="onnx_model is empty"):
        STAGE.inputs(ctx)


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    import pipeline.pose2d.runner as runner
    from pipeline.stage import StageContext
    from stages.pose2d import STAGE, Pose2dParams

    session, config_dir, bu, td, kill_after = sys.argv[1:6]
    original = runner.run_cameras

    def killing(backend, jobs, stores, options, on_chunk=None):
        seen = []
        def hook(cam, done):
            seen.append(done)
            if len(seen) == int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, no flush: as a crash or kill -9
        return original(backend, jobs, stores, options, hook)

    runner.run_cameras = killing
    params = Pose2dParams(backend="topdown", device="cpu", bottomup_weights=bu, topdown_weights=td,
                          refresh_every=3, min_person_score=0.0, min_joints=1, batch_frames=1, chunk_frames=2)
    STAGE.run(StageContext(Path(session), params, None, Path(config_dir), show_progress=False))
""")


def test_resume_after_kill_equals_uninterrupted(tmp_path, weights):
    from tests.pose2d.conftest import make_session

    params = dict(backend="topdown", bottomup_weights=str(weights["bottomup"]), topdown_weights=str(weights["topdown"]),
                  refresh_every=3, min_person_score=0.0, min_joints=1, batch_frames=1, chunk_frames=2)
    whole = make_session(tmp_path / "whole")
    _run(whole, tmp_path, **params)

    cut = make_session(tmp_path / "cut")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(cut), str(tmp_path), str(weights["bottomup"]),
                           str(weights["topdown"]), "4"], cwd=REPO, env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    partial = cut / "pose2d" / PARTIAL_DIR
    assert len(list((partial / "cam0").glob("chunk_*.npz"))) == 3  # cam0 done (6 frames), cam1 one chunk
    assert len(list((partial / "cam1").glob("chunk_*.npz"))) == 1
    assert not (cut / "pose2d" / "cam0.npz").exists()

    _run(cut, tmp_path, **params)
    meta = read_yaml(cut / "pose2d" / "pose2d.yaml", "pose2d@1")
    assert meta["camera_timing"]["cam0"]["frames_computed"] == 0
    assert meta["camera_timing"]["cam1"]["resumed_at_frame"] == 2
    assert not partial.exists()
    for cam in ("cam0", "cam1"):
        a, _ = read_pose2d(whole / "pose2d" / f"{cam}.npz")
        b, _ = read_pose2d(cut / "pose2d" / f"{cam}.npz")
        assert np.isfinite(a[..., :2]).any()
        np.testing.assert_array_equal(a, b)


def test_changed_settings_discard_checkpoints(tmp_path, weights):
    from pipeline.pose2d.io import ChunkStore

    store = ChunkStore(tmp_path, "cam0", "key-a")
    store.save(0, np.zeros((2, 1, 17, 3), np.float32))
    assert ChunkStore(tmp_path, "cam0", "key-a").load()[1] == 2
    assert ChunkStore(tmp_path, "cam0", "key-b").load() == ([], 0)


def test_engine_reruns_when_the_weights_change(session, weights, tmp_path):
    import shutil

    from pipeline.config import Config
    from pipeline.runner import Runner

    bu = shutil.copy(weights["bottomup"], tmp_path / "bu.pt")
    params = Pose2dParams(backend="bottomup", device="cpu", bottomup_weights="bu.pt")
    config = Config(sections={"pose2d": params}, session_dir=session, source=tmp_path / "posecap.yaml")
    Runner([STAGE], config, session, show_progress=False).run()
    status = Runner([STAGE], config, session, show_progress=False).own_status("pose2d")
    assert status.state.name == "UP_TO_DATE", status
    from tests.pose2d.conftest import make_weights

    make_weights(Path(bu), "bottomup", seed=7, input_size=(160, 128))
    status = Runner([STAGE], config, session, show_progress=False).own_status("pose2d")
    assert status.state.name == "STALE" and "bu.pt" in " ".join(status.reasons), status
