"""Per-frame 2D pose for one camera: the bottom-up backend and the top-down backend with its box source.

A backend turns a batch of consecutive frames into per-frame detections [(P_t, J, 3), ...]
(x, y image pixels, score in [0, 1], missing = NaN, NaN, 0). It may carry state from frame to
frame (the top-down tracker); :meth:`reset` sets that state from the last frame already done, so
a run resumed from a chunk checkpoint continues exactly as the uninterrupted run would have.

Top-down person boxes (``TopDownBackend``):

- every frame takes the previous frame's people (a tracker's boxes): each person's box is the
  box of its joints scoring at least ``box_score_threshold``, padded by ``box_padding`` and
  fixed to the network's aspect ratio;
- frames whose index is a multiple of ``refresh_every`` (and any frame after one where nobody
  was found) also run the bottom-up detector, whose boxes add the people that no tracked box
  covers (IoU below ``box_nms_iou``). A tracked box is kept over a detection of the same person:
  it comes from the top-down keypoints, which are the more accurate.

With ``track=False`` every frame takes its boxes from the detector alone.

After the network, persons with fewer than ``min_joints`` joints or a mean score below
``min_person_score`` are dropped, and of two persons whose joints coincide (median distance of the
joints both are sure of below ``duplicate_fraction`` x the box height) the lower-scoring one goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.pose2d.estimators import BottomUpEstimator, TopDownEstimator
from pipeline.training.augment import box_from_keypoints

__all__ = ["BottomUpBackend", "BoxOptions", "TopDownBackend", "box_iou", "boxes_from_people"]


@dataclass(frozen=True)
class BoxOptions:
    """How top-down boxes are made and persons filtered (see the module docstring)."""

    track: bool = True
    refresh_every: int = 1
    padding: float = 1.25
    score_threshold: float = 0.2
    nms_iou: float = 0.5
    min_joints: int = 4
    min_person_score: float = 0.2
    duplicate_fraction: float = 0.1


def boxes_from_people(people: np.ndarray, aspect: float, padding: float, score_threshold: float) -> np.ndarray:
    """(P, J, 3) keypoints -> (B, 4) boxes cx, cy, w, h (persons with < 2 confident joints give none)."""
    boxes = []
    for person in people:
        valid = (person[:, 2] >= score_threshold) & np.isfinite(person[:, :2]).all(-1)
        box = box_from_keypoints(person[:, :2].astype(np.float64), valid, aspect, padding)
        if box is not None:
            boxes.append(box)
    return np.array(boxes, np.float64).reshape(-1, 4)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) intersection over union of cx, cy, w, h boxes (A, 4) and (B, 4)."""
    a0, a1 = a[:, None, :2] - a[:, None, 2:] / 2, a[:, None, :2] + a[:, None, 2:] / 2
    b0, b1 = b[None, :, :2] - b[None, :, 2:] / 2, b[None, :, :2] + b[None, :, 2:] / 2
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None).prod(-1)
    union = a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter
    return inter / np.maximum(union, 1e-9)


def _filter(people: np.ndarray, boxes: np.ndarray, opts: BoxOptions) -> np.ndarray:
    """Drop weak persons and duplicates (see the module docstring)."""
    if len(people) == 0:
        return people
    found = people[..., 2] > 0
    sure = people[..., 2] >= opts.score_threshold
    strength = people[..., 2].mean(-1)
    keep = (found.sum(-1) >= opts.min_joints) & (strength >= opts.min_person_score)
    order = [i for i in np.argsort(-strength, kind="stable") if keep[i]]
    chosen: list[int] = []
    for i in order:
        duplicate = False
        for j in chosen:
            both = sure[i] & sure[j]
            if both.sum() < 2:
                both = found[i] & found[j]
            if both.sum() >= 2:  # median: a few wild low-score joints must not hide a duplicate
                d = np.median(np.linalg.norm(people[i, both, :2] - people[j, both, :2], axis=-1))
                if d < opts.duplicate_fraction * max(boxes[i, 3], boxes[j, 3]):
                    duplicate = True
                    break
        if not duplicate:
            chosen.append(i)
    return people[sorted(chosen)]


class BottomUpBackend:
    """Every frame through the bottom-up model (batched over frames)."""

    name = "bottomup"

    def __init__(self, estimator: BottomUpEstimator) -> None:
        self.estimator = estimator
        self.joints = estimator.joints

    def reset(self, previous: np.ndarray | None) -> None:
        """Bottom-up keeps no state between frames."""

    def __call__(self, frames: list[np.ndarray], first_index: int) -> list[np.ndarray]:
        return self.estimator(frames)


class TopDownBackend:
    """A top-down estimator on boxes from a detector, or from the previous frame's people.

    Args:
        estimator: the top-down network (torch, ViTPose or ONNX).
        detector: the bottom-up estimator giving boxes on refresh frames.
        options: box and filter settings.
        name: the backend name recorded in the metadata.
    """

    def __init__(self, estimator: TopDownEstimator, detector: BottomUpEstimator, options: BoxOptions,
                 name: str = "topdown") -> None:
        self.estimator, self.detector, self.options, self.name = estimator, detector, options, name
        self.joints = estimator.joints
        self.previous = np.zeros((0, self.joints, 3), np.float32)
        self.detector_frames = 0

    def reset(self, previous: np.ndarray | None) -> None:
        """Carry on after a frame whose people were ``previous`` (P, J, 3); None = the stream's start."""
        if previous is None:
            self.previous = np.zeros((0, self.joints, 3), np.float32)
        else:
            prev = np.asarray(previous, np.float32)
            self.previous = prev[np.isfinite(prev[..., :2]).any(-1).any(-1)] if len(prev) else prev

    def _boxes(self, frame: np.ndarray, index: int, detections: np.ndarray | None) -> np.ndarray:
        o = self.options
        aspect = self.estimator.aspect
        previous = self.previous if o.track else self.previous[:0]
        tracked = boxes_from_people(previous, aspect, o.padding, o.score_threshold)
        if detections is None and len(tracked):
            return tracked
        if detections is None:
            detections = self.detector([frame])[0]
            self.detector_frames += 1
        detected = boxes_from_people(detections, aspect, o.padding, o.score_threshold)
        if len(tracked) and len(detected):
            detected = detected[box_iou(detected, tracked).max(1) < o.nms_iou]
        return np.concatenate([tracked, detected])

    def __call__(self, frames: list[np.ndarray], first_index: int) -> list[np.ndarray]:
        n = self.options.refresh_every if self.options.track else 1
        refresh = [i for i in range(len(frames)) if (first_index + i) % n == 0]
        detections: dict[int, Any] = {}
        if refresh:
            detections = dict(zip(refresh, self.detector([frames[i] for i in refresh])))
            self.detector_frames += len(refresh)
        out = []
        for i, frame in enumerate(frames):
            boxes = self._boxes(frame, first_index + i, detections.get(i))
            people = self.estimator(frame, boxes) if len(boxes) else np.zeros((0, self.joints, 3), np.float32)
            people = _filter(people, boxes, self.options)
            self.previous = people
            out.append(people)
        return out
