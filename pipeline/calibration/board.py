"""The calibration board: the shared ``board`` config section, object points, OpenCV board objects.

Conventions (every part that looks at a board uses these, through :func:`object_points`):

- ``inner_corners: [cols, rows]`` counts inner corners, the points where four squares meet. A
  board of ``cols + 1`` by ``rows + 1`` squares has ``cols`` by ``rows`` inner corners, for both
  board types.
- Corner ids are row-major: id ``i * cols + j`` is the corner in row ``i``, column ``j``. The
  board's x axis runs along a row (increasing ``j``), y along a column (increasing ``i``), z is
  ``x × y`` and points into the board, away from a camera that sees its printed face.
- Corner 0 is the board origin for both types: corner ``(i, j)`` sits at ``(j * s, i * s, 0)``
  metres (for ChArUco this is OpenCV's ``getChessboardCorners()`` shifted by one square, so both
  board types share one geometry).
- Checkerboard orientation is fixed by colour: the square diagonally outward from corner 0 is
  dark. When ``cols + rows`` is even the printed pattern is symmetric under a half turn, so the
  orientation is fixed by image geometry instead (see :mod:`pipeline.calibration.detect`).
- ChArUco: OpenCV's own layout (``cv2.aruco.CharucoBoard``, OpenCV >= 4.6 pattern) of
  ``cols + 1`` by ``rows + 1`` squares; the marker ids fix the orientation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from pipeline.config import param

BoardType = Literal["checkerboard", "charuco"]


def aruco_dictionary_names() -> list[str]:
    """Names of OpenCV's predefined ArUco dictionaries (``DICT_4X4_50``, ...)."""
    return sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_"))


@dataclass(frozen=True)
class BoardConfig:
    """The calibration board (shared by calibrate_intrinsics and calibrate_extrinsics)."""

    type: BoardType = param("checkerboard", "board kind: checkerboard | charuco")
    inner_corners: tuple[int, int] = param(
        (9, 6), "[columns, rows] of INNER corners (squares minus one in each direction)"
    )
    square_size_m: float = param(0.04, "side of one square, metres")
    marker_size_m: float = param(0.03, "ChArUco only: side of one ArUco marker, metres")
    aruco_dict: str = param("DICT_4X4_50", "ChArUco only: OpenCV predefined ArUco dictionary name")

    def __post_init__(self) -> None:
        cols, rows = self.inner_corners
        if cols < 2 or rows < 2:
            raise ValueError(f"inner_corners must be at least [2, 2], got [{cols}, {rows}]")
        if not self.square_size_m > 0:
            raise ValueError(f"square_size_m must be > 0, got {self.square_size_m}")
        if self.type == "charuco":
            if not 0 < self.marker_size_m < self.square_size_m:
                raise ValueError(
                    f"marker_size_m must be between 0 and square_size_m ({self.square_size_m}), "
                    f"got {self.marker_size_m}"
                )
            if self.aruco_dict not in aruco_dictionary_names():
                raise ValueError(
                    f"aruco_dict {self.aruco_dict!r} is not an OpenCV dictionary, e.g. DICT_4X4_50"
                )

    @property
    def cols(self) -> int:
        """Inner corners along a row."""
        return int(self.inner_corners[0])

    @property
    def rows(self) -> int:
        """Inner corners along a column."""
        return int(self.inner_corners[1])

    @property
    def n_corners(self) -> int:
        """Number of inner corners N = cols * rows."""
        return self.cols * self.rows

    def describe(self) -> str:
        """Short human description, e.g. ``checkerboard 9x6 inner corners``."""
        text = f"{self.type} {self.cols}x{self.rows} inner corners"
        if self.type == "charuco":
            text += f" ({self.cols + 1}x{self.rows + 1} squares, {self.aruco_dict})"
        return text

    def as_yaml(self) -> dict:
        """The section as plain YAML values (for artifacts and messages)."""
        out = {
            "type": self.type,
            "inner_corners": [self.cols, self.rows],
            "square_size_m": self.square_size_m,
        }
        if self.type == "charuco":
            out.update(marker_size_m=self.marker_size_m, aruco_dict=self.aruco_dict)
        return out


def charuco_board(board: BoardConfig) -> cv2.aruco.CharucoBoard:
    """The OpenCV ChArUco board of ``cols + 1`` by ``rows + 1`` squares."""
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, board.aruco_dict))
    return cv2.aruco.CharucoBoard(
        (board.cols + 1, board.rows + 1), board.square_size_m, board.marker_size_m, dictionary
    )


def object_points(board: BoardConfig) -> np.ndarray:
    """Board-frame 3-D positions of the inner corners (the same for both board types).

    Returns:
        float32 ``(N, 3)`` metres, N = cols * rows, row-major ids, z = 0, corner 0 at the origin.
    """
    jj, ii = np.meshgrid(np.arange(board.cols), np.arange(board.rows))
    pts = np.stack([jj.ravel(), ii.ravel(), np.zeros(board.n_corners)], axis=1) * board.square_size_m
    return pts.astype(np.float32)
