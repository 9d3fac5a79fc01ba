"""Import 2D keypoints made by other tools: OpenPose JSON folders, COCO results JSON, DeepLabCut CSV.

Every reader returns one camera's keypoints as (T, P, J, 3) float32 in the *configured* skeleton
(x, y distorted pixels, score in [0, 1]; missing = NaN, NaN, 0), with T the number of frames the
caller asks for: frames the file does not mention stay empty. Joints are mapped by name
(:func:`pipeline.skeleton.remap_joints`), so OpenPose BODY_25 lands on COCO-17 through
:data:`pipeline.skeleton.BODY25_TO_COCO17`; joints the source lacks are missing.

Layouts (one camera each; ``find_camera_source`` picks the file or folder for a camera):

- OpenPose: a folder ``<cam>/`` of ``<anything>_<frame:012d>_keypoints.json`` files, each
  ``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}]}``; the joint count (25 -> BODY_25,
  17 -> COCO-17) tells the skeleton. x = y = c = 0 marks a missing joint, as OpenPose writes it.
- COCO results: ``<cam>.json``, a list of ``{"image_id": frame, "category_id": 1,
  "keypoints": [x, y, s] * 17, "score": s}`` (or a dataset dict with an ``annotations`` list);
  ``image_id`` is the frame index. The third value is read as the joint score (results files)
  or as visibility flags 0 / 1 / 2 (datasets: 0 = missing, else score 1).
- DeepLabCut: ``<cam>*.csv`` with the header rows scorer / [individuals] / bodyparts / coords
  (x, y, likelihood); the first column is the frame number or an image path ending in one.
  Body-part names are matched to the skeleton's joint names (case and '-' / ' ' ignored).

The writers (:func:`write_openpose`, :func:`write_coco`, :func:`write_dlc`) produce the same
layouts, so each format round-trips; they also let a user hand posecap keypoints to those tools.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from pipeline.artifacts import write_bytes
from pipeline.errors import ArtifactError
from pipeline.pose2d.io import clean_keypoints, stack_frames
from pipeline.skeleton import BODY25, COCO17, Skeleton, get_skeleton, remap_joints

__all__ = ["FORMATS", "find_camera_source", "read_coco", "read_dlc", "read_openpose", "read_source",
           "write_coco", "write_dlc", "write_openpose"]

FORMATS = ("openpose", "coco", "dlc")
_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _frame_of(name: str, where: str) -> int:
    m = _FRAME_NUMBER.search(name)
    if m is None:
        raise ArtifactError(f"{where}: cannot tell the frame number of {name!r}; names must end in a number")
    return int(m.group(1))


def _canon(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _place(per_frame: dict[int, list[np.ndarray]], frames: int, joints: int) -> np.ndarray:
    rows = [np.stack(per_frame[t]) if per_frame.get(t) else np.zeros((0, joints, 3), np.float32)
            for t in range(frames)]
    return clean_keypoints(stack_frames(rows, joints))


# ----------------------------------------------------------------------------- OpenPose


def _openpose_skeleton(n: int, where: str) -> Skeleton:
    by_count = {BODY25.num_joints: BODY25, COCO17.num_joints: COCO17}
    if n not in by_count:
        raise ArtifactError(f"{where}: pose_keypoints_2d holds {n} joints; expected 25 (BODY_25) or 17 (COCO-17)")
    return by_count[n]


def read_openpose(folder: str | Path, frames: int, skeleton: Skeleton) -> np.ndarray:
    """(frames, P, J, 3) from an OpenPose JSON folder (see the module docstring)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ArtifactError(f"{folder}: no OpenPose *_keypoints.json files")
    per_frame: dict[int, list[np.ndarray]] = {}
    for f in files:
        t = _frame_of(f.stem.removesuffix("_keypoints"), str(folder))
        try:
            people = json.loads(f.read_text()).get("people", [])
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ArtifactError(f"{f}: not an OpenPose keypoints file ({exc})") from None
        if not 0 <= t < frames:
            continue
        for person in people:
            flat = np.asarray(person.get("pose_keypoints_2d", []), np.float32)
            if flat.size % 3:
                raise ArtifactError(f"{f}: pose_keypoints_2d length {flat.size} is not a multiple of 3")
            kp = flat.reshape(-1, 3)
            src = _openpose_skeleton(len(kp), str(f))
            kp = kp.copy()
            kp[(kp == 0).all(-1), :2] = np.nan  # OpenPose writes 0, 0, 0 for a missing joint
            per_frame.setdefault(t, []).append(remap_joints(kp, src, skeleton).astype(np.float32))
    return _place(per_frame, frames, skeleton.num_joints)


def write_openpose(folder: str | Path, keypoints: np.ndarray, skeleton: Skeleton, out_skeleton: str = "body25",
                   prefix: str = "frame") -> None:
    """Write (T, P, J, 3) keypoints as an OpenPose JSON folder in ``out_skeleton`` (body25 or coco17)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dst = get_skeleton(out_skeleton)
    for t, frame in enumerate(np.asarray(keypoints)):
        people = []
        for person in frame:
            if not np.isfinite(person[:, :2]).any():
                continue
            kp = np.nan_to_num(remap_joints(person, skeleton, dst), nan=0.0)
            people.append({"person_id": [-1], "pose_keypoints_2d": [float(v) for v in kp.reshape(-1)]})
        doc = {"version": 1.3, "people": people}
        write_bytes(folder / f"{prefix}_{t:012d}_keypoints.json", json.dumps(doc).encode())


# ----------------------------------------------------------------------------- COCO


def read_coco(path: str | Path, frames: int, skeleton: Skeleton) -> np.ndarray:
    """(frames, P, J, 3) from a COCO keypoint results file (see the module docstring)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not JSON ({exc})") from None
    dataset = isinstance(doc, dict)
    records = doc.get("annotations") if dataset else doc
    if not isinstance(records, list):
        raise ArtifactError(f"{path}: expected a list of keypoint results or a dict with 'annotations'")
    per_frame: dict[int, list[np.ndarray]] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or "keypoints" not in rec or "image_id" not in rec:
            raise ArtifactError(f"{path}: record {i} lacks 'image_id' or 'keypoints'")
        if rec.get("category_id", 1) != 1:
            continue
        kp = np.asarray(rec["keypoints"], np.float32).reshape(-1, 3).copy()
        if len(kp) != COCO17.num_joints:
            raise ArtifactError(f"{path}: record {i} holds {len(kp)} keypoints; COCO person keypoints are 17")
        if dataset:
            kp[:, 2] = (kp[:, 2] > 0).astype(np.float32)
        kp[kp[:, 2] <= 0, :2] = np.nan
        t = int(rec["image_id"])
        if 0 <= t < frames:
            per_frame.setdefault(t, []).append(remap_joints(kp, COCO17, skeleton).astype(np.float32))
    return _place(per_frame, frames, skeleton.num_joints)


def write_coco(path: str | Path, keypoints: np.ndarray, skeleton: Skeleton) -> None:
    """Write (T, P, J, 3) keypoints as a COCO results list (image_id = frame index)."""
    records = []
    for t, frame in enumerate(np.asarray(keypoints)):
        for person in frame:
            if not np.isfinite(person[:, :2]).any():
                continue
            kp = np.nan_to_num(remap_joints(person, skeleton, COCO17), nan=0.0)
            scores = kp[:, 2][kp[:, 2] > 0]
            records.append({"image_id": t, "category_id": 1, "keypoints": [float(v) for v in kp.reshape(-1)],
                            "score": float(scores.mean()) if len(scores) else 0.0})
    write_bytes(path, json.dumps(records).encode())


# ----------------------------------------------------------------------------- DeepLabCut


def read_dlc(path: str | Path, frames: int, skeleton: Skeleton) -> np.ndarray:
    """(frames, P, J, 3) from a DeepLabCut CSV (single- or multi-animal; see the module docstring)."""
    path = Path(path)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    head = [r for r in rows[:5] if r and r[0].strip().lower() in ("scorer", "individuals", "bodyparts", "coords")]
    if not head or head[-1][0].strip().lower() != "coords":
        raise ArtifactError(f"{path}: not a DeepLabCut CSV (expected header rows scorer / bodyparts / coords)")
    by_name = {r[0].strip().lower(): r for r in head}
    parts, coords = by_name.get("bodyparts"), by_name["coords"]
    if parts is None:
        raise ArtifactError(f"{path}: DeepLabCut CSV lacks the 'bodyparts' header row")
    individuals = by_name.get("individuals", ["individuals"] + ["single"] * (len(coords) - 1))
    ids = list(dict.fromkeys(individuals[1:]))
    names = {_canon(n): j for j, n in enumerate(skeleton.joint_names)}
    columns: list[tuple[int, int, int, int]] = []  # (column, person, joint, coord 0/1/2)
    coord_of = {"x": 0, "y": 1, "likelihood": 2}
    for c in range(1, len(coords)):
        joint = names.get(_canon(parts[c]))
        which = coord_of.get(coords[c].strip().lower())
        if joint is not None and which is not None:
            columns.append((c, ids.index(individuals[c]), joint, which))
    if not columns:
        raise ArtifactError(f"{path}: no DeepLabCut body part matches a joint of {skeleton.name} "
                            f"({', '.join(skeleton.joint_names[:4])}, ...); rename the body parts")
    per_frame: dict[int, list[np.ndarray]] = {}
    for r in rows[len(head):]:
        if not r or not r[0].strip():
            continue
        t = _frame_of(r[0].strip(), str(path))
        if not 0 <= t < frames:
            continue
        kp = np.zeros((len(ids), skeleton.num_joints, 3), np.float32)
        kp[..., :2] = np.nan
        for c, p, j, k in columns:
            value = r[c].strip() if c < len(r) else ""
            kp[p, j, k] = float(value) if value else np.nan
        kp[..., 2] = np.nan_to_num(kp[..., 2], nan=0.0)
        per_frame[t] = [person for person in kp if np.isfinite(person[:, :2]).any()]
    return _place(per_frame, frames, skeleton.num_joints)


def write_dlc(path: str | Path, keypoints: np.ndarray, skeleton: Skeleton, scorer: str = "posecap") -> None:
    """Write (T, P, J, 3) keypoints as a multi-animal DeepLabCut CSV (individuals person0, person1, ...)."""
    kp = np.asarray(keypoints)
    people = kp.shape[1]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    cols = [(p, j, c) for p in range(people) for j in range(skeleton.num_joints) for c in ("x", "y", "likelihood")]
    w.writerow(["scorer"] + [scorer] * len(cols))
    w.writerow(["individuals"] + [f"person{p}" for p, _, _ in cols])
    w.writerow(["bodyparts"] + [skeleton.joint_names[j] for _, j, _ in cols])
    w.writerow(["coords"] + [c for _, _, c in cols])
    for t in range(kp.shape[0]):
        values = []
        for p, j, c in cols:
            x, y, s = kp[t, p, j]
            if not (np.isfinite(x) and np.isfinite(y)):
                values.append("")
            else:
                values.append(repr(float({"x": x, "y": y, "likelihood": s}[c])))
        w.writerow([str(t)] + values)
    write_bytes(path, out.getvalue().encode())


# ----------------------------------------------------------------------------- dispatch


def find_camera_source(root: str | Path, camera: str, fmt: str) -> Path:
    """The file or folder of ``camera`` under ``root`` for format ``fmt`` (see the module docstring)."""
    root = Path(root)
    if fmt == "openpose":
        candidates = [root / camera] if (root / camera).is_dir() else []
    elif fmt == "coco":
        candidates = [root / f"{camera}.json"] if (root / f"{camera}.json").is_file() else []
    else:
        exact = root / f"{camera}.csv"
        candidates = [exact] if exact.is_file() else sorted(root.glob(f"{camera}*.csv"))
    if not candidates:
        what = {"openpose": f"folder {camera}/", "coco": f"{camera}.json", "dlc": f"{camera}.csv or {camera}*.csv"}
        raise ArtifactError(f"{root}: no {fmt} keypoints for camera {camera!r} (expected {what[fmt]})")
    if len(candidates) > 1:
        raise ArtifactError(f"{root}: several {fmt} files match camera {camera!r}: "
                            f"{', '.join(c.name for c in candidates)}; keep one")
    return candidates[0]


def read_source(root: str | Path, camera: str, fmt: str, frames: int, skeleton: Skeleton) -> np.ndarray:
    """One camera's (frames, P, J, 3) keypoints from format ``fmt`` under ``root``."""
    if fmt not in FORMATS:
        raise ArtifactError(f"unknown import format {fmt!r}; use one of {', '.join(FORMATS)}")
    src = find_camera_source(root, camera, fmt)
    reader = {"openpose": read_openpose, "coco": read_coco, "dlc": read_dlc}[fmt]
    return reader(src, frames, skeleton)
