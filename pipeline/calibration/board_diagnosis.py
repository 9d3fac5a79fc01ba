"""When the configured board is (almost) never found: which board definition does match?

The usual causes of "0 boards detected" are a wrong board definition, not a bad video: rows and
columns swapped, squares counted instead of inner corners, an off-by-one, the wrong board type or
ArUco dictionary. :func:`diagnose` reads a few frames spread over the video and tries each likely
mistake on them, and :meth:`Diagnosis.hint` says in one sentence which definition matches and
what to write in the config.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.calibration.board import BoardConfig
from pipeline.calibration.detect import FrameDetector, open_video, to_gray

# dictionaries tried when looking for ArUco markers (the common printed ones)
COMMON_DICTS = (
    "DICT_4X4_50",
    "DICT_5X5_100",
    "DICT_6X6_250",
    "DICT_7X7_250",
    "DICT_ARUCO_ORIGINAL",
    "DICT_APRILTAG_36h11",
)
SEEK_GAP = 48


@dataclass(frozen=True)
class Candidate:
    """A board definition tried on the sample frames.

    Attributes:
        board: the definition.
        label: the mistake it stands for ("rows and columns swapped", ...).
        hits: sample frames in which it was found.
        corners: corners found over all sample frames.
    """

    board: BoardConfig
    label: str
    hits: int
    corners: int


@dataclass(frozen=True)
class Diagnosis:
    """Result of trying likely board definitions on sample frames of one video."""

    board: BoardConfig
    samples: int
    configured: Candidate
    candidates: list[Candidate]
    blank: int
    markers: dict[str, int]

    @property
    def best(self) -> Candidate | None:
        """The alternative found in most sample frames (if any beats the configured board)."""
        better = [
            c
            for c in self.candidates
            if c.hits > self.configured.hits and c.hits >= max(1, self.samples // 4)
        ]
        return max(better, key=lambda c: (c.hits, c.corners)) if better else None

    def hint(self) -> str:
        """One or two sentences for the error message."""
        if self.samples == 0:
            return "No frame could be read from the video."
        best = self.best
        if best is not None:
            flow = ", ".join(
                f"{k}: {list(v) if isinstance(v, (list, tuple)) else v}"
                for k, v in best.board.as_yaml().items()
            )
            return (
                f"On {self.samples} sample frames the configured board matches {self.configured.hits}, but "
                f"{best.board.describe()} matches {best.hits} ({best.label}?); set board: {{{flow}}}."
            )
        if self.blank >= max(1, self.samples // 2):
            return (
                f"{self.blank} of {self.samples} sample frames are nearly uniform: is the stream black, "
                "over-exposed or cropped from the wrong place?"
            )
        if self.markers:
            name = max(self.markers, key=self.markers.get)
            return (
                f"ArUco markers of {name} are visible in {self.markers[name]} of {self.samples} sample "
                f"frames, but no ChArUco board definition near {self.board.cols}x{self.board.rows} inner "
                "corners matched; check board.type, board.inner_corners and board.aruco_dict (a ChArUco "
                "board printed with OpenCV < 4.6 and an even number of rows uses the legacy layout: "
                "print a new one)."
            )
        return (
            f"No likely alternative definition matched on {self.samples} sample frames either: check "
            "that the whole board is in view, in focus and evenly lit, and that board.type is right."
        )


def read_frames_at(path: str | os.PathLike, indices: list[int]) -> list[tuple[int, np.ndarray]]:
    """Grayscale frames at ``indices``, sorted (frames that cannot be read are skipped).

    Gaps up to ``SEEK_GAP`` frames are read through; longer ones are seeked over.
    """
    cap, _, _ = open_video(path)
    out = []
    try:
        position = 0
        for index in sorted(indices):
            if not 0 <= index - position <= SEEK_GAP:
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                position = index
            while position < index and cap.grab():
                position += 1
            ok, frame = cap.read()
            position += 1
            if ok:
                out.append((index, to_gray(frame)))
    finally:
        cap.release()
    return out


def _resized(board: BoardConfig, cols: int, rows: int) -> BoardConfig | None:
    if cols < 2 or rows < 2:
        return None
    return dataclasses.replace(board, inner_corners=(cols, rows))


def candidate_boards(board: BoardConfig, marker_dicts: list[str]) -> list[tuple[BoardConfig, str]]:
    """Likely mistaken definitions of ``board`` with what each mistake is, most likely first.

    ``marker_dicts`` lists ArUco dictionaries whose markers were seen in the frames: with a
    checkerboard configured they suggest a ChArUco board, with a ChArUco board configured they
    suggest another dictionary; those candidates come first.
    """
    c, r = board.cols, board.rows
    sizes = [
        ((r, c), "rows and columns swapped"),
        ((c - 1, r - 1), "squares counted instead of inner corners"),
        ((r - 1, c - 1), "squares counted instead of inner corners, rows and columns swapped"),
        ((c + 1, r + 1), "one inner corner too few in each direction"),
    ]
    sizes += [
        ((c + dc, r + dr), "off by one")
        for dc in (-1, 0, 1)
        for dr in (-1, 0, 1)
        if (dc, dr) not in ((0, 0), (-1, -1), (1, 1))
    ]
    resized_only: list[tuple[BoardConfig, str]] = []
    for (cols, rows), label in sizes:
        resized = _resized(board, cols, rows)
        if resized is not None:
            resized_only.append((resized, label))
    by_markers: list[tuple[BoardConfig, str]] = []
    dicts = [d for d in marker_dicts if board.type == "checkerboard" or d != board.aruco_dict]
    for name in dicts:
        for cols, rows in ((c, r), (c - 1, r - 1), (r, c)):
            resized = _resized(board, cols, rows)
            if resized is None:
                continue
            swapped = dataclasses.replace(
                resized,
                type="charuco",
                aruco_dict=name,
                marker_size_m=min(board.marker_size_m, 0.75 * board.square_size_m),
            )
            why = (
                "a ChArUco board, not a plain checkerboard"
                if board.type == "checkerboard"
                else f"another ArUco dictionary ({name})"
            )
            by_markers.append(
                (swapped, why if (cols, rows) == (c, r) else f"{why}, and {cols}x{rows} inner corners")
            )
    out = by_markers + resized_only  # markers of another kind of board in view are the strongest clue
    if board.type == "charuco":
        out.append((dataclasses.replace(board, type="checkerboard"), "a plain checkerboard, not ChArUco"))
    seen: set = set()
    unique = []
    for cand, label in out:
        if cand != board and cand not in seen:
            seen.add(cand)
            unique.append((cand, label))
    return unique


def find_markers(frames: list[np.ndarray], dicts: tuple[str, ...] = COMMON_DICTS) -> dict[str, list[tuple]]:
    """ArUco dictionary name -> per frame ``(corners, ids)`` of its markers (ids None when none).

    Dictionaries are searched in order; the search stops at the first one whose markers show in at
    least half the frames (the common dictionaries do not read each other's markers).
    """
    out = {}
    for name in dicts:
        detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)))
        out[name] = [detector.detectMarkers(gray)[:2] for gray in frames]
        if 2 * marker_counts({name: out[name]}).get(name, 0) >= max(len(frames), 2):
            break
    return out


def marker_counts(markers: dict[str, list[tuple]]) -> dict[str, int]:
    """ArUco dictionary name -> number of frames showing at least 3 of its markers (only names seen)."""
    counts = {
        name: sum(1 for _, ids in found if ids is not None and len(ids) >= 3)
        for name, found in markers.items()
    }
    return {name: n for name, n in counts.items() if n}


def _try(
    board: BoardConfig, label: str, frames: list[np.ndarray], markers: dict[str, list[tuple]] | None = None
) -> Candidate:
    try:
        detector = FrameDetector(board, thorough=False)
    except cv2.error:  # e.g. a ChArUco board with more markers than its dictionary holds
        return Candidate(board, label, 0, 0)
    cached = (markers or {}).get(board.aruco_dict) if board.type == "charuco" else None
    hits = corners = 0
    for k, gray in enumerate(frames):
        found = detector(gray, cached[k] if cached is not None else None)
        if found is not None:
            hits += 1
            corners += int(np.isfinite(found[0]).all(axis=1).sum())
    return Candidate(board, label, hits, corners)


def diagnose(
    path: str | os.PathLike, board: BoardConfig, samples: int = 12, only_if_missing: bool = False
) -> Diagnosis:
    """Try ``board`` and its likely mistakes on ``samples`` frames spread evenly over the video.

    With ``only_if_missing`` the alternatives are tried only when the configured board is found in
    none of the sample frames (a cheap pre-flight check). Alternatives are tried most likely first,
    and the search stops at the first one found in at least half the sample frames.
    """
    _, _, frame_count = open_video(path)
    if frame_count <= 0:
        frame_count = samples
    indices = sorted({int(i) for i in np.linspace(0, frame_count - 1, min(samples, frame_count)).round()})
    frames = [gray for _, gray in read_frames_at(path, indices)]
    blank = sum(1 for gray in frames if float(gray.std()) < 2.0)
    configured = _try(board, "as configured", frames)
    if only_if_missing and configured.hits > 0:
        return Diagnosis(board, len(frames), configured, [], blank, {})
    dicts = (
        COMMON_DICTS
        if board.type == "checkerboard"
        else (board.aruco_dict, *(d for d in COMMON_DICTS if d != board.aruco_dict))
    )
    markers = find_markers(frames, dicts)
    counts = marker_counts(markers)
    candidates = []
    for cand, label in candidate_boards(board, sorted(counts, key=counts.get, reverse=True)):
        candidates.append(_try(cand, label, frames, markers))
        if 2 * candidates[-1].hits >= max(len(frames), 2):
            break
    return Diagnosis(board, len(frames), configured, candidates, blank, counts)
