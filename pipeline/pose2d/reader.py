"""One camera's ``pose2d/<cam>.npz`` read frame range by frame range, never whole.

:class:`Pose2DReader` validates the file exactly as :func:`pipeline.pose2d.io.read_pose2d_arrays`
does (same checks, same :class:`~pipeline.errors.ArtifactError` messages) but keeps only the
(T,) ``frame_index`` and a (T,) per-frame "observed" flag in memory; ``keypoints`` (T, P, J, 3)
is read on demand with :meth:`Pose2DReader.read`.

Streaming needs the layout posecap writes (:func:`pipeline.artifacts.write_npz` /
``write_npz_streamed``): an uncompressed zip member ``keypoints.npy`` holding a C-order float
array of shape (T >= 1, P, J, 3). Its bytes are found from the member's local zip header and
read with an ordinary file handle; the validating pass reads them once, block by block (at most
:data:`SCAN_BLOCK_BYTES` at a time), checking the member's CRC-32 as ``np.load`` would. Any other
file (compressed with ``np.savez_compressed``, Fortran order, missing members, a damaged member,
no frames, unreadable) is loaded whole with ``read_pose2d_arrays``: correct, with its very errors,
just not streamed (``Pose2DReader.streamed`` is False).
"""

from __future__ import annotations

import dataclasses
import math
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.artifacts import ArraySpec, check_array
from pipeline.errors import ArtifactError
from pipeline.pose2d.io import check_pose2d_values, first_bad_score, pose2d_specs, read_pose2d_arrays

__all__ = ["SCAN_BLOCK_BYTES", "Pose2DReader", "frame_stats"]

SCAN_BLOCK_BYTES = 16 << 20  # bytes of keypoints held at a time by the validating pass
_MEMBER = "keypoints.npy"
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length
_LOCAL_SIGNATURE = b"PK\x03\x04"
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def frame_stats(keypoints: np.ndarray) -> tuple[np.ndarray, bool]:
    """Observation flags of keypoints (n, P, J, 3).

    Returns:
        (n,) bool: the frame has a joint with finite x and y; and whether any x or y is finite.
    """
    finite = np.isfinite(keypoints[..., :2])
    return finite.all(-1).any(axis=(1, 2)), bool(finite.any())


@dataclass(frozen=True)
class _Layout:
    """Where a stored ``keypoints.npy`` lies in the archive file (absolute byte offsets)."""

    member_start: int  # first byte of the member (its .npy header)
    member_size: int  # bytes of the member
    data_start: int  # first byte of keypoints[0]
    crc: int  # CRC-32 of the member, from the zip directory
    shape: tuple[int, int, int, int]  # (T, P, J, 3)
    dtype: np.dtype
    others: dict[str, np.ndarray]  # every other array of the file (frame_index, ...)

    @property
    def row_bytes(self) -> int:
        """Bytes of one frame (P, J, 3)."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize


@dataclass
class _Scan:
    """What one pass over the keypoints bytes found."""

    crc: int
    observed: np.ndarray  # (T,) bool, see frame_stats
    any_observed: bool = False
    has_inf: bool = False
    bad_score: Any = None  # the first score outside [0, 1] (a numpy scalar of the file's dtype)


def _stored_layout(path: Path) -> _Layout | None:
    """The layout of a streamable ``keypoints.npy`` in ``path``; None when it must be loaded whole.

    Every other array is loaded here, as ``read_npz`` loads them, and the member is opened and its
    ``.npy`` header parsed through ``zipfile`` and ``np.lib.format`` (their checks apply). Any
    failure gives None: the full load then raises ``read_pose2d_arrays``'s error for it.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = npz.zip.namelist()
            if names.count(_MEMBER) != 1 or "keypoints" in names:
                return None
            others = {k: npz[k] for k in npz.files if k != "keypoints"}
            info = npz.zip.getinfo(_MEMBER)
            if not isinstance(others.get("frame_index"), np.ndarray) or not _stored(info):
                return None
            with npz.zip.open(info) as member:
                read_header = _HEADER_READERS.get(np.lib.format.read_magic(member))
                if read_header is None:
                    return None
                shape, fortran_order, dtype = read_header(member)
                header_len = member.tell()
                member.seek(0)
                header = member.read(header_len)
        if not all(isinstance(v, np.ndarray) for v in others.values()):
            return None
        streamable = (not fortran_order and not dtype.hasobject and dtype.kind == "f" and len(shape) == 4
                      and shape[-1] == 3 and shape[0] > 0)
        if not streamable or header_len + math.prod(shape) * dtype.itemsize > info.file_size:
            return None
        start = _member_start(path, info, header)
        if start is None:
            return None
        return _Layout(start, info.file_size, start + header_len, info.CRC, tuple(shape), dtype, others)
    except Exception:  # noqa: BLE001 - the full load reports it
        return None


def _stored(info: zipfile.ZipInfo) -> bool:
    """The member is stored as is (not compressed, not encrypted)."""
    return info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1 and \
        info.compress_size == info.file_size


def _member_start(path: Path, info: zipfile.ZipInfo, header: bytes) -> int | None:
    """Byte offset of a stored member's first byte in ``path``, from its local zip header.

    None unless the member fits in the file and starts with ``header`` (its ``.npy`` header as
    ``zipfile`` read it).
    """
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(_LOCAL_HEADER.size)
        if len(local) != _LOCAL_HEADER.size:
            return None
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(local)
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        fh.seek(start)
        ok = signature == _LOCAL_SIGNATURE and fh.read(len(header)) == header
    return start if ok and start + info.file_size <= path.stat().st_size else None


class Pose2DReader:
    """One camera's ``pose2d/<cam>.npz``, validated once, its frames read on demand.

    Attributes:
        path: the file.
        frames, people, joints: T, P, J of ``keypoints`` (T, P, J, 3).
        dtype: the keypoints' dtype in the file (float32 from posecap's writers).
        frame_index: (T,) the file's frame numbers, integers as stored (int64 from posecap's writers).
        observed: (T,) bool, frame t has a joint with finite x and y (pixels).
        any_observed: any x or y of the file is finite.
        streamed: False when the file could not be streamed and its keypoints are held in memory.

    Raises:
        ArtifactError: whatever ``read_pose2d_arrays(path, joints)`` raises, same message.
    """

    def __init__(self, path: str | Path, joints: int | None = None) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._full: np.ndarray | None = None
        layout = _stored_layout(self.path)
        if layout is not None:
            self._fh = open(self.path, "rb")  # held until close(): pins this version of the file
            try:
                scan = self._scan(layout)
                if scan.crc != layout.crc:
                    layout = None  # damaged member: the full load reports it as np.load does
                else:
                    self._validate(path, joints, layout, scan)
            except BaseException:
                self.close()
                raise
        if layout is None:
            self.close()
            self._load_whole(path, joints)
            return
        self._data_start, self._row_bytes = layout.data_start, layout.row_bytes
        self.frames, self.people, self.joints = layout.shape[:3]
        self.dtype = layout.dtype
        self.frame_index = layout.others["frame_index"]
        self.observed, self.any_observed = scan.observed, scan.any_observed
        self.streamed = True

    def _load_whole(self, path: str | Path, joints: int | None) -> None:
        arrays = read_pose2d_arrays(path, joints)
        self._full = arrays["keypoints"]
        self.frames, self.people, self.joints = self._full.shape[:3]
        self.dtype = self._full.dtype
        self.frame_index = arrays["frame_index"]
        self.observed, self.any_observed = frame_stats(self._full)
        self.streamed = False

    def _read_rows(self, start: int, n: int, dtype: np.dtype, row_shape: tuple[int, ...]) -> np.ndarray:
        """(n, *row_shape) array of ``dtype`` read from byte ``start`` of the file."""
        out = np.empty((n, *row_shape), dtype=dtype)
        with self._lock:
            if self._fh is None:
                raise ValueError(f"{self.path}: reader is closed")
            self._fh.seek(start)
            got = self._fh.readinto(out.reshape(-1).view(np.uint8))
        if got != out.nbytes:
            raise ArtifactError(f"{self.path}: file ended early (was it truncated while being read?); rerun the "
                                "pose2d stage")
        return out

    def _scan(self, layout: _Layout) -> _Scan:
        """Read the whole member once, block by block: CRC-32, +-inf, first bad score, per-frame observed."""
        T = layout.shape[0]
        header = self._read_rows(layout.member_start, layout.data_start - layout.member_start, np.dtype(np.uint8), ())
        scan = _Scan(crc=zlib.crc32(header), observed=np.zeros(T, dtype=bool))
        rows = max(1, SCAN_BLOCK_BYTES // max(layout.row_bytes, 1))
        for t0 in range(0, T, rows):
            block = self._read_rows(layout.data_start + t0 * layout.row_bytes, min(rows, T - t0), layout.dtype,
                                    layout.shape[1:])
            scan.crc = zlib.crc32(block, scan.crc)
            _scan_block(scan, block, t0)
        tail_start = layout.data_start + T * layout.row_bytes
        tail = layout.member_start + layout.member_size - tail_start
        for off in range(0, tail, SCAN_BLOCK_BYTES):
            n = min(SCAN_BLOCK_BYTES, tail - off)
            scan.crc = zlib.crc32(self._read_rows(tail_start + off, n, np.dtype(np.uint8), ()), scan.crc)
        return scan

    def _validate(self, path: str | Path, joints: int | None, layout: _Layout, scan: _Scan) -> None:
        """Raise what ``read_pose2d_arrays`` raises for this file, from its header and the scan's findings."""
        specs, sizes = pose2d_specs(joints), {}
        where = f"{self.path}: array 'keypoints'"
        shape_only = np.broadcast_to(np.zeros((), layout.dtype), layout.shape)  # no memory: header checks only
        check_array(shape_only, dataclasses.replace(specs["keypoints"], finite_or_nan=False), where, sizes)
        if scan.has_inf:
            check_array(np.full(1, np.inf, layout.dtype), ArraySpec((None,)), where)  # raises its +-inf message
        frame_index = layout.others["frame_index"]
        check_array(frame_index, specs["frame_index"], f"{self.path}: array 'frame_index'", sizes)
        check_pose2d_values(path, scan.bad_score, frame_index)

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Keypoints of frames ``t0 .. t1 - 1``: (t1 - t0, P, J, 3) of :attr:`dtype`, x, y in pixels, score.

        Equal to ``read_pose2d_arrays(path)["keypoints"][t0:t1]``; needs ``0 <= t0 <= t1 <= frames``.
        """
        if not 0 <= t0 <= t1 <= self.frames:
            raise ValueError(f"{self.path}: frame range [{t0}, {t1}) outside [0, {self.frames})")
        if self._full is not None:
            return self._full[t0:t1].copy()
        return self._read_rows(self._data_start + t0 * self._row_bytes, t1 - t0, self.dtype,
                               (self.people, self.joints, 3))

    def __getstate__(self) -> dict[str, object]:
        """Pickled for a task in another process: the file is opened again there, by path, on first read."""
        state = self.__dict__.copy()
        state["_reopen"] = state.pop("_fh") is not None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        reopen = state.pop("_reopen")
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._fh = open(self.path, "rb") if reopen else None  # noqa: SIM115 - held until close()

    def close(self) -> None:
        """Close the file (a whole-loaded reader keeps its arrays)."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> Pose2DReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scan_block(scan: _Scan, block: np.ndarray, t0: int) -> None:
    """Fold keypoints (n, P, J, 3) of frames ``t0 ..`` into ``scan``."""
    observed, any_observed = frame_stats(block)
    scan.observed[t0:t0 + len(block)] = observed
    scan.any_observed |= any_observed
    scan.has_inf |= bool(np.isinf(block).any())
    if scan.bad_score is None:
        scan.bad_score = first_bad_score(block)
