"""Several people: cross-view association, identity tracking, and the full reconstruction."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.geometry.robust import RobustOptions
from pipeline.skeleton import COCO17
from pipeline.triangulation.association import AssociationOptions, associate
from pipeline.triangulation.reconstruct import ReconstructOptions, reconstruct
from pipeline.triangulation.tracking import TrackingOptions, track
from tests.triangulation.synthetic import crossing_people, make_rig, observe, walking_person

RIG = make_rig(5)
T = 150
OPTIONS = ReconstructOptions(filter="none")  # raw triangulation accuracy; filters tested elsewhere


def match_tracks(joints: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Match output slots to true people; returns (track of each true person, per-frame error (T, G, J))."""
    P, G = joints.shape[1], truth.shape[1]
    cost = np.full((P, G), 1e9)
    for p in range(P):
        for g in range(G):
            d = np.linalg.norm(joints[:, p] - truth[:, g], axis=-1)
            if np.isfinite(d).any():
                cost[p, g] = np.nanmean(d)
    rows, cols = linear_sum_assignment(cost)
    of = np.full(G, -1)
    of[cols] = rows
    err = np.stack([np.linalg.norm(joints[:, of[g]] - truth[:, g], axis=-1) if of[g] >= 0
                    else np.full(truth.shape[::2][:1] + truth.shape[2:3], np.nan) for g in range(G)], 1)
    return of, err


def identity_accuracy(joints: np.ndarray, truth: np.ndarray, visible: np.ndarray) -> float:
    """Fraction of (frame, true person) seen by >= 2 cameras whose matched slot is that person."""
    _, err = match_tracks(joints, truth)
    with np.errstate(all="ignore"):
        ok = np.nanmean(err, axis=-1) < 0.1  # (T, G)
    return float(ok[visible].mean())


def _visible(tr: dict, G: int) -> np.ndarray:
    order = tr["order"]  # (C, T, P)
    return np.stack([(order == g).any(-1).sum(0) >= 2 for g in range(G)], -1)  # (T, G)


def test_association_clusters_are_pure():
    truth = crossing_people(T, 3)
    kp, tr = observe(RIG, truth, noise_px=2.0, shuffle=True, person_miss_rate=0.05, miss_rate=0.05,
                     outlier_rate=0.03, seed=1)
    uv = kp[..., :2].astype(float)
    w = kp[..., 2].astype(float)
    members = associate(RIG, uv, w, AssociationOptions(), RobustOptions())
    C = len(RIG)
    slots = np.clip(members, 0, None)
    truth_of = [np.take_along_axis(tr["order"][c], slots[..., c], axis=1) for c in range(C)]
    ids = np.stack([np.where(members[..., c] >= 0, truth_of[c], -1) for c in range(C)], -1)  # (T, K, C)
    n_clusters = n_impure = 0
    for t in range(T):
        for k in range(members.shape[1]):
            got = ids[t, k][ids[t, k] >= 0]
            if got.size:
                n_clusters += 1
                n_impure += len(set(got.tolist())) > 1
    assert n_impure == 0
    assert n_clusters >= 0.99 * _visible(tr, 3).sum()


def test_three_shuffled_people_keep_identities_and_accuracy():
    single_truth = walking_person(T, (-0.5, 0.0), 1.1, 0.0)[:, None]
    kp1, _ = observe(RIG, single_truth, noise_px=2.0, miss_rate=0.05, seed=2)
    single = reconstruct(RIG, kp1, COCO17.flip_pairs, COCO17.bones, OPTIONS)
    single_mpjpe = np.nanmean(np.linalg.norm(single.joints[:, :1] - single_truth, axis=-1))

    truth = crossing_people(T, 3)
    kp, tr = observe(RIG, truth, noise_px=2.0, shuffle=True, person_miss_rate=0.05, miss_rate=0.05, seed=2)
    res = reconstruct(RIG, kp, COCO17.flip_pairs, COCO17.bones, OPTIONS)
    assert res.joints.shape[1] == 3
    assert identity_accuracy(res.joints, truth, _visible(tr, 3)) >= 0.99
    _, err = match_tracks(res.joints, truth)
    assert np.nanmean(err) < 1.5 * single_mpjpe
    assert res.detections_associated > 0.97


def test_tracking_survives_a_short_gap_and_new_people_appear():
    truth = crossing_people(90, 3)
    pts = truth.copy()
    pts[40:46, 1] = np.nan  # person 1 unseen for 6 frames
    pts[:30, 2] = np.nan  # person 2 enters at frame 30
    rng = np.random.default_rng(0)
    order = np.argsort(rng.random((90, 3)), axis=1)  # per-frame slot order shuffled
    shuffled = np.take_along_axis(pts, order[..., None, None], axis=1)
    track_of = track(shuffled, TrackingOptions())
    identity = np.full((90, 3), -1)
    np.put_along_axis(identity, order, track_of, axis=1)  # track of each true person per frame
    assert track_of.max() == 2
    for g in range(3):
        ids = identity[:, g][np.isfinite(pts[:, g]).all(-1).all(-1)]
        assert len(set(ids.tolist())) == 1 and ids[0] >= 0


def test_person_seen_by_one_camera_is_not_triangulated():
    truth = crossing_people(40, 2)
    kp, _ = observe(RIG, truth, noise_px=1.0, seed=3)
    kp[1:, :, 1] = np.nan  # person 1 only in camera 0
    kp[1:, :, 1, :, 2] = 0.0
    res = reconstruct(RIG, kp, COCO17.flip_pairs, COCO17.bones, OPTIONS)
    assert res.joints.shape[1] == 1
    of, _ = match_tracks(res.joints, truth[:, :1])
    assert of[0] == 0


def test_a_person_only_two_of_six_cameras_detect_is_dropped_as_a_ghost():
    """Two views that agree, while four more cameras have the person in frame and see nothing there,
    are the signature of a ghost (two people matched along an epipolar line): dropped by default."""
    rig = make_rig(6, seed=4)
    truth = crossing_people(20, 2)
    kp, _ = observe(rig, truth, noise_px=1.0, seed=3)
    kp[2:, :, 1] = np.nan  # person 1: only cameras 0 and 1 report it
    kp[2:, :, 1, :, 2] = 0.0
    uv, w = kp[..., :2].astype(float), kp[..., 2].astype(float)
    in_frame = rig.cameras[3].in_image(rig.cameras[3].project(truth[:, 1])).mean()
    assert in_frame > 0.9  # the other cameras do have it in view

    def people_per_frame(share: float) -> np.ndarray:
        members = associate(rig, uv, w, AssociationOptions(min_view_share=share), RobustOptions())
        return (members >= 0).any(-1).sum(-1)

    np.testing.assert_array_equal(people_per_frame(0.0), 2)  # without the check: kept with its 2 views
    np.testing.assert_array_equal(people_per_frame(AssociationOptions().min_view_share), 1)
