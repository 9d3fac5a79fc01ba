"""Long takes in parallel tasks: chunked pose2d and triangulate equal the unchunked run, identities included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import read_npz
from pipeline.executors import InlineExecutor
from pipeline.executors.local import LocalPoolExecutor
from pipeline.skeleton import COCO17
from pipeline.stage import StageContext
from pipeline.triangulation.reconstruct import FRAME_BLOCK, reconstruct
from pipeline.triangulation.take import block_ranges, task_groups
from stages.pose2d import STAGE as POSE2D
from stages.pose2d import Pose2dParams
from stages.triangulate import STAGE as TRIANGULATE
from stages.triangulate import TriangulateParams, options_from_params
from tests.engine.batch_sessions import make_weight_files
from tests.pose2d.conftest import _one_thread, make_session  # noqa: F401 - _one_thread: autouse fixture
from tests.triangulation.synthetic import crossing_people, make_rig, observe, write_session

RIG = make_rig(4, seed=11)
T_LONG = 2 * FRAME_BLOCK + 150  # three blocks, the last one short


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    return make_weight_files(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def long_take():
    truth = crossing_people(T_LONG, 2)
    kp, _ = observe(RIG, truth, noise_px=2.0, shuffle=True, seed=4, miss_rate=0.05, outlier_rate=0.03,
                    swap_rate=0.05)
    return truth, kp


def test_tasks_are_whole_blocks():
    assert block_ranges(950) == [(0, 400), (400, 800), (800, 950)]
    assert block_ranges(0) == [(0, 0)]
    assert task_groups(3, 0) == [[0, 1, 2]]
    assert task_groups(3, 1000) == [[0, 1], [2]]
    assert task_groups(3, 500) == [[0], [1], [2]]
    assert task_groups(3, 100) == [[0], [1], [2]]


def test_chunked_triangulation_equals_one_process_with_identities(long_take):
    truth, kp = long_take
    options = options_from_params(TriangulateParams(refine=True))
    whole = reconstruct(RIG, kp, COCO17.flip_pairs, COCO17.bones, options)
    calls = []

    def mapper(fn, items):
        calls.append(len(items))
        return InlineExecutor().map(fn, items)

    split = reconstruct(RIG, kp, COCO17.flip_pairs, COCO17.bones, options, FRAME_BLOCK, mapper)
    assert calls == [3, 3]  # per-frame work and refinement, three frame ranges each
    for field in ("joints", "reprojection_error_px", "views_used"):
        np.testing.assert_array_equal(getattr(whole, field), getattr(split, field))
    assert whole.swaps_corrected == split.swaps_corrected
    # identities: two people, each keeping its slot across both range boundaries
    assert split.joints.shape[1] == 2
    for p in range(2):
        seen = np.isfinite(split.joints[:, p]).all(-1).any(-1)
        assert seen[FRAME_BLOCK - 1] and seen[FRAME_BLOCK] and seen[2 * FRAME_BLOCK - 1] and seen[2 * FRAME_BLOCK]
        g = np.nanmean(np.linalg.norm(split.joints[:, p, None] - truth, axis=-1), axis=(0, 2)).argmin()
        err_mm = np.linalg.norm(split.joints[:, p] - truth[:, g], axis=-1) * 1000
        assert np.nanmean(err_mm[FRAME_BLOCK - 20:FRAME_BLOCK + 20]) < 30.0  # the same person after the boundary


def _triangulate(root: Path, kp: np.ndarray, task_frames: int, executor) -> bytes:
    write_session(root, RIG, kp)
    ctx = StageContext(root, TriangulateParams(task_frames=task_frames), None, root, show_progress=False,
                       executor=executor)
    TRIANGULATE.run(ctx)
    return (root / "pose3d" / "skeletons.npz").read_bytes()


@pytest.mark.slow
def test_triangulate_stage_in_a_process_pool_is_byte_identical(long_take, tmp_path):
    _, kp = long_take
    one = _triangulate(tmp_path / "one", kp, 0, InlineExecutor())
    with LocalPoolExecutor(2) as pool:
        split = _triangulate(tmp_path / "split", kp, FRAME_BLOCK, pool)
    assert one == split
    assert sorted(p.name for p in (tmp_path / "split" / "pose3d").iterdir()) == ["pose3d.yaml", "skeletons.npz"]
    out = read_npz(tmp_path / "split" / "pose3d" / "skeletons.npz")
    assert out["joints"].shape == (T_LONG, 2, 17, 3)


def _pose2d(root: Path, weights: dict[str, Path], executor, **params) -> dict[str, bytes]:
    session = make_session(root, frames=8)
    p = Pose2dParams(device="cpu", bottomup_weights=str(weights["bottomup"]), topdown_weights=str(weights["topdown"]),
                     batch_frames=1, chunk_frames=2, min_person_score=0.0, min_joints=1, refresh_every=3,
                     detector_min_person_score=0.0, **params)
    POSE2D.run(StageContext(session, p, None, root, show_progress=False, executor=executor))
    return {cam: (session / "pose2d" / f"{cam}.npz").read_bytes() for cam in ("cam0", "cam1")}


@pytest.mark.parametrize("backend, boxes", [("bottomup", "detect"), ("topdown", "detect")])
def test_chunked_pose2d_equals_unchunked(tmp_path, weights, backend, boxes):
    whole = _pose2d(tmp_path / "whole", weights, InlineExecutor(), backend=backend, boxes=boxes)
    split = _pose2d(tmp_path / "split", weights, InlineExecutor(), backend=backend, boxes=boxes, task_frames=2)
    assert whole == split
    with np.load(tmp_path / "split" / "session" / "pose2d" / "cam0.npz") as npz:
        assert npz["keypoints"].shape[0] == 8 and np.isfinite(npz["keypoints"][..., :2]).any()


@pytest.mark.slow
def test_tracked_pose2d_tasks_do_not_depend_on_the_executor(tmp_path, weights):
    """With boxes: track a task starts a fresh tracker, so the split matters; where the tasks run does not."""
    here = _pose2d(tmp_path / "here", weights, InlineExecutor(), backend="topdown", boxes="track", task_frames=4)
    with LocalPoolExecutor(2) as pool:
        pooled = _pose2d(tmp_path / "pool", weights, pool, backend="topdown", boxes="track", task_frames=4)
    assert here == pooled
