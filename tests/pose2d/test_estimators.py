"""Top-down crops: native packing, fixed batching, flip test, and the vitpose backend on the stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.pose2d.backends import box_iou, boxes_from_people
from pipeline.pose2d.build import load_posecap_model
from pipeline.pose2d.estimators import TorchTopDown, crop_size_for
from pipeline.pose2d.io import read_pose2d
from pipeline.stage import StageContext
from stages.pose2d import STAGE, Pose2dParams


def test_crop_size_for_rounds_to_stride_and_clamps():
    assert crop_size_for(np.array([0, 0, 90.0, 120.0]), 16, 64, 128) == (96, 128)
    assert crop_size_for(np.array([0, 0, 300.0, 400.0]), 16, 64, 128) == (96, 128)  # scaled down to 128
    assert crop_size_for(np.array([0, 0, 15.0, 20.0]), 16, 64, 128) == (48, 64)  # scaled up to 64
    w, h = crop_size_for(np.array([0, 0, 75.0, 100.0]), 16, 64, 128)
    assert (w, h) == (80, 96) and w % 16 == 0 and h % 16 == 0


def test_native_packed_equals_fixed_at_the_input_size(weights):
    model = load_posecap_model(weights["topdown"], torch.device("cpu"), head="topdown")
    frame = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[100.0, 110.0, 96.0, 128.0], [220.0, 120.0, 150.0, 200.0]])  # both crop to 96 x 128
    native = TorchTopDown(model, native=True)(frame, boxes)
    fixed = TorchTopDown(model, native=False)(frame, boxes)
    np.testing.assert_allclose(native, fixed, atol=1e-3)
    small = np.array([[100.0, 110.0, 48.0, 64.0], [220.0, 120.0, 96.0, 128.0]])  # packed: 48 x 64 and 96 x 128
    mixed = TorchTopDown(model, native=True)(frame, small)
    assert mixed.shape == (2, 17, 3) and np.isfinite(mixed[..., :2]).all()
    flipped = TorchTopDown(model, native=True, flip_test=True)(frame, small)
    assert flipped.shape == mixed.shape and not np.allclose(flipped, mixed)


def test_boxes_from_people_and_iou():
    person = np.zeros((1, 17, 3), np.float32)
    person[0, :, 0] = np.linspace(10, 40, 17)
    person[0, :, 1] = np.linspace(20, 100, 17)
    person[0, :, 2] = 1.0
    box = boxes_from_people(person, 0.75, 1.25, 0.2)[0]
    np.testing.assert_allclose(box, [25.0, 60.0, 0.75 * 80 * 1.25, 80 * 1.25])
    person[0, 1:, 2] = 0.1  # one confident joint is not enough for a box
    assert boxes_from_people(person, 0.75, 1.25, 0.2).shape == (0, 4)
    iou = box_iou(np.array([[0, 0, 2, 2.0]]), np.array([[0, 0, 2, 2.0], [1, 0, 2, 2.0], [5, 5, 1, 1.0]]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]])


def test_vitpose_backend_runs_on_the_stage(session, weights, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    backbone = transformers.VitPoseBackboneConfig(image_size=(64, 48), patch_size=(16, 16), hidden_size=48,
                                                  num_hidden_layers=1, num_attention_heads=3, out_indices=[1])
    hf = transformers.VitPoseForPoseEstimation(transformers.VitPoseConfig(backbone_config=backbone, num_labels=17))
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.1)
        hf.head.conv.bias.add_(1.0)
    hf.eval().save_pretrained(tmp_path / "vitpose")
    params = Pose2dParams(backend="vitpose", device="cpu", vitpose_weights="vitpose",
                          bottomup_weights=str(weights["bottomup"]), min_person_score=0.0, min_joints=1)
    ctx = StageContext(session, params, None, tmp_path, show_progress=False)
    assert str((tmp_path / "vitpose").resolve()) in STAGE.inputs(ctx)
    STAGE.run(ctx)
    kp, _ = read_pose2d(session / "pose2d" / "cam0.npz", 17)
    assert kp.shape[0] == 6 and np.isfinite(kp[..., :2]).any()


def test_bottomup_flip_test_is_mirror_symmetric():
    """With flip_test the averaged heatmaps and the tag pair of a mirrored frame are the mirror of the
    frame's, so the people found in the mirror are the frame's people mirrored, left and right
    swapped (a wrong joint swap or axis in the merge breaks this)."""
    import cv2

    from pipeline.pose2d.estimators import BottomUpEstimator
    from pipeline.skeleton import COCO17
    from pipeline.weights import load_default

    cap = cv2.VideoCapture(str(Path(__file__).resolve().parents[2] / "calib_data/raw/capture/stereo.mp4"))
    ok, mosaic = cap.read()
    cap.release()
    assert ok
    frame = np.ascontiguousarray(mosaic[:, : mosaic.shape[1] // 2])
    est = BottomUpEstimator(load_default("bottomup_ae"), flip_test=True)
    a, b = est([frame, np.ascontiguousarray(frame[:, ::-1])])
    assert len(a) >= 2 and len(a) == len(b)
    mirrored = b[:, list(COCO17.flip_indices)].copy()
    mirrored[..., 0] = (frame.shape[1] - 1) - mirrored[..., 0]
    key = lambda p: np.nanmean(p[..., 0], axis=-1)  # noqa: E731 - order people by mean x
    np.testing.assert_allclose(a[np.argsort(key(a))], mirrored[np.argsort(key(mirrored))], atol=0.05)
