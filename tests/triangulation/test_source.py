"""Streamed pose2d input: Pose2DReader / open_pose2d equal read_pose2d_arrays / load_pose2d, block by block."""

from __future__ import annotations

import logging
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import pipeline.pose2d.reader as reader_mod
from pipeline.artifacts import write_npz
from pipeline.errors import PosecapError
from pipeline.pose2d.io import read_pose2d_arrays, write_pose2d_blocks
from pipeline.pose2d.reader import Pose2DReader
from pipeline.sync.io import CameraTiming, SyncTable
from pipeline.triangulation.source import open_pose2d
from pipeline.triangulation.timeline import resample_keypoints, resampled_coverage, source_window
from tests.triangulation.synthetic import crossing_people, make_rig, observe
from tests.triangulation.whole_take_reference import load_pose2d

RIG = make_rig(4, seed=11)
J = 17
SYNC_REF = SyncTable("quad", 30.0, {
    "cam0": CameraTiming("quad", 30.0),
    "cam1": CameraTiming("stereo", 25.0, 0.2467, 1.0003),
    "cam2": CameraTiming("stereo", 25.0, 0.2467, 1.0003),
})  # cam3 is missing: taken to be on the reference clock, with a warning
SYNC_NO_REF = SyncTable("master", 24.0, {
    "cam0": CameraTiming("quad", 30.0, -0.1, 0.9998),
    "cam1": CameraTiming("stereo", 25.0, 0.31, 1.0004),
    "cam2": CameraTiming("stereo", 25.0, 0.31, 1.0004),
    "cam3": CameraTiming("other", 60.0, 0.05, 1.0),
})


def _observed(T: int, seed: int = 4) -> np.ndarray:
    """(C, T, 3, J, 3) float32 keypoints of three walking people: shuffled slots, misses."""
    kp, _ = observe(RIG, crossing_people(T, 3), noise_px=2.0, miss_rate=0.1, person_miss_rate=0.15,
                    shuffle=True, seed=seed)
    return kp


def _write(pose2d: Path, cam: str, kp: np.ndarray, frame_index: np.ndarray | None = None) -> None:
    fi = np.arange(len(kp), dtype=np.int64) if frame_index is None else frame_index
    write_npz(pose2d / f"{cam}.npz", keypoints=kp, frame_index=fi)


def _session(root: Path, T: int = 60, seed: int = 4) -> Path:
    """Four cameras: different slot counts, float32 and float64 (and big-endian) files, NaNs, one all missing."""
    kp = _observed(T, seed)
    pose2d = root / "pose2d"
    _write(pose2d, "cam0", kp[0])
    _write(pose2d, "cam1", kp[1, :, :2].astype(np.float64))
    dead = np.full_like(kp[2], np.nan)
    dead[..., 2] = 0
    _write(pose2d, "cam2", dead)
    _write(pose2d, "cam3", kp[3, :, :1].astype(">f4"))
    return pose2d


def _sync_session(root: Path, T: int = 60, seed: int = 5) -> Path:
    """Cameras with their own frame counts, first frames, gaps and slot counts (for a SyncTable)."""
    kp = _observed(T + 10, seed)
    pose2d = root / "pose2d"
    _write(pose2d, "cam0", kp[0, :T])
    _write(pose2d, "cam1", kp[1, 3:T - 2, :2], np.arange(3, T - 2))
    gaps = np.cumsum(np.r_[7, np.where(np.arange(1, T + 4) % 9 == 0, 2, 1)])  # a dropped frame every 9
    _write(pose2d, "cam2", kp[2, :T + 4].astype(np.float64), gaps)
    _write(pose2d, "cam3", kp[3, 2:T + 8, :1])
    return pose2d


def _logger(name: str) -> tuple[logging.Logger, list[tuple[str, str]]]:
    """A fresh logger recording (level, message) pairs."""
    records: list[tuple[str, str]] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append((record.levelname, record.getMessage()))

    log = logging.getLogger(f"test_source.{name}")
    log.handlers[:] = [_Keep()]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log, records


def _both(pose2d: Path, sync: SyncTable | None = None, joints: int = J):
    """Run load_pose2d and open_pose2d on the same input: (result or error, log lines) of each."""
    out = []
    for i, fn in enumerate((load_pose2d, open_pose2d)):
        log, records = _logger(f"{fn.__name__}{i}")
        try:
            result = fn(pose2d, RIG, Path("calib/rig.yaml"), joints, log=log, sync=sync)
        except PosecapError as exc:
            result = exc
        out.append((result, records))
    return out


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True) and a.tobytes() == b.tobytes()


def _blocks(T: int, seed: int, n: int = 12) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, T, n)
    random = [(int(t0), int(rng.integers(t0 + 1, T + 1))) for t0 in starts]
    return [(0, T), (0, 1), (T - 1, T), (T - 2, T), (5, 5), *random]


def _assert_source_matches(pose2d: Path, sync: SyncTable | None, seed: int) -> None:
    (full, log_full), (source, log_source) = _both(pose2d, sync)
    assert log_full == log_source
    with source:
        assert source.rig.names == full.rig.names
        assert source.frames == full.keypoints.shape[1] and source.joints == J
        assert source.people == full.keypoints.shape[2] and source.dtype == full.keypoints.dtype
        _assert_same(source.frame_index, full.frame_index)
        if full.timestamp_s is None:
            assert source.timestamp_s is None
        else:
            _assert_same(source.timestamp_s, full.timestamp_s)
        for t0, t1 in _blocks(source.frames, seed):
            _assert_same(source.read(t0, t1), full.keypoints[:, t0:t1])
        tiled = np.concatenate([source.read(t0, min(t0 + 7, source.frames)) for t0 in range(0, source.frames, 7)],
                               axis=1)
        _assert_same(tiled, full.keypoints)
        with pytest.raises(ValueError, match="outside"):
            source.read(0, source.frames + 1)


def test_unsynchronized_blocks_equal_load_pose2d(tmp_path):
    pose2d = _session(tmp_path)
    (tmp_path / "pose2d" / "cam3.npz").rename(tmp_path / "pose2d" / "cam3.tmp")
    _assert_source_matches(pose2d, None, seed=1)  # cam3 missing (warned), cam2 all missing (warned)
    (tmp_path / "pose2d" / "cam3.tmp").rename(tmp_path / "pose2d" / "cam3.npz")
    _assert_source_matches(pose2d, None, seed=2)


@pytest.mark.parametrize("sync", [SYNC_REF, SYNC_NO_REF], ids=["reference-camera", "no-reference-camera"])
def test_synchronized_blocks_equal_load_pose2d(tmp_path, sync):
    _assert_source_matches(_sync_session(tmp_path), sync, seed=3)


def test_synchronized_single_frame_camera(tmp_path):
    pose2d = _sync_session(tmp_path, T=40)
    kp = _observed(40, seed=9)
    _write(pose2d, "cam3", kp[3, 12:13], np.array([12]))  # one frame: resampled where it lands exactly
    _assert_source_matches(pose2d, SYNC_NO_REF, seed=4)
    _assert_source_matches(pose2d, SYNC_REF, seed=5)


def _random_keypoints(rng: np.random.Generator, T: int, P: int) -> np.ndarray:
    """(T, P, 4, 3) people drifting slowly, slots shuffled, some joints and people missing."""
    base = rng.uniform(0, 600, (P, 4, 2)) + rng.normal(0, 3, (T, P, 4, 2)).cumsum(0)
    kp = np.concatenate([base, rng.uniform(0.1, 1, (T, P, 4, 1))], -1)
    kp = np.take_along_axis(kp, np.argsort(rng.random((T, P)), 1)[..., None, None], 1)
    kp[rng.random((T, P, 4)) < 0.2] = [np.nan, np.nan, 0.0]
    kp[rng.random((T, P)) < 0.2] = [np.nan, np.nan, 0.0]
    return kp


@pytest.mark.parametrize("T", [1, 2, 3, 9, 30])
def test_source_window_and_coverage_match_resample_keypoints(T):
    rng = np.random.default_rng(T)
    for P in (0, 1, 3):
        kp = _random_keypoints(rng, T, P)
        for _ in range(8):
            pos = np.sort(rng.uniform(-1.5, T + 0.5, rng.integers(0, 12)))
            pos = np.r_[pos, rng.choice([0.0, T - 1.0, np.nan, T - 1.5, 0.5], 2)]
            pos[rng.random(pos.size) < 0.1] = np.nan
            full = resample_keypoints(kp, pos)
            lo, hi = source_window(pos, T)
            assert 0 <= lo <= hi <= T
            _assert_same(resample_keypoints(kp[lo:hi], pos - lo), full)
            observed = np.isfinite(kp[..., :2]).all(-1).any(axis=(1, 2))
            assert np.array_equal(resampled_coverage(observed, pos), np.isfinite(full[..., :2]).any(axis=(1, 2, 3)))


def test_reader_streams_and_equals_read_pose2d_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_mod, "SCAN_BLOCK_BYTES", 4096)  # many scan blocks
    kp = _observed(50)[1]
    for dtype in (np.float32, np.float64, ">f4"):
        path = tmp_path / f"cam_{np.dtype(dtype).str[1:]}.npz"
        write_npz(path, keypoints=kp.astype(dtype), frame_index=np.arange(50) + 100, extra=np.ones(3))
        want = read_pose2d_arrays(path, J)
        with Pose2DReader(path, J) as r:
            assert r.streamed and (r.frames, r.people, r.joints) == want["keypoints"].shape[:3]
            assert r.dtype == want["keypoints"].dtype and r.any_observed
            _assert_same(r.frame_index, want["frame_index"])
            assert np.array_equal(r.observed, np.isfinite(kp[..., :2]).all(-1).any(axis=(1, 2)))
            for t0, t1 in _blocks(50, seed=6):
                _assert_same(r.read(t0, t1), want["keypoints"][t0:t1])


def test_reader_streams_files_written_block_by_block(tmp_path):
    kp = _observed(40)[2]
    path = tmp_path / "cam2.npz"
    write_pose2d_blocks(path, (kp[t:t + 16] for t in range(0, 40, 16)), 40, 3, J)
    want = read_pose2d_arrays(path, J)
    with Pose2DReader(path, J) as r:
        assert r.streamed
        _assert_same(r.read(7, 33), want["keypoints"][7:33])


@pytest.mark.parametrize("how", ["compressed", "fortran"])
def test_reader_falls_back_to_a_full_load(tmp_path, how):
    kp = _observed(30)[0]
    path = tmp_path / "cam0.npz"
    if how == "compressed":
        np.savez_compressed(path, keypoints=kp, frame_index=np.arange(30))
    else:
        write_npz(path, keypoints=np.asfortranarray(kp), frame_index=np.arange(30))
    want = read_pose2d_arrays(path, J)
    with Pose2DReader(path, J) as r:
        assert not r.streamed
        for t0, t1 in _blocks(30, seed=7):
            _assert_same(r.read(t0, t1), want["keypoints"][t0:t1])


def test_compressed_session_equals_load_pose2d(tmp_path):
    pose2d = _session(tmp_path, T=30)
    with np.load(pose2d / "cam1.npz") as npz:
        arrays = dict(npz)
    np.savez_compressed(pose2d / "cam1.npz", **arrays)
    _assert_source_matches(pose2d, None, seed=8)


# --- the same errors and warnings as load_pose2d ---------------------------------------------------------------

def _file(pose2d: Path, cam: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(pose2d / f"{cam}.npz") as npz:  # unchecked: a breaker may have broken it already
        return npz["keypoints"], npz["frame_index"]


def _set(pose2d: Path, cam: str, index: tuple, value: float) -> None:
    kp, fi = _file(pose2d, cam)
    kp[index] = value
    _write(pose2d, cam, kp, fi)


def _corrupt_data(pose2d: Path) -> None:
    path = pose2d / "cam0.npz"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("keypoints.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 400] ^= 0xFF  # a byte of the keypoints (the CRC no longer matches)
    path.write_bytes(bytes(data))


def _all_missing(pose2d: Path, cams: list[str]) -> None:
    for cam in cams:
        kp, fi = _file(pose2d, cam)
        kp[..., :2], kp[..., 2] = np.nan, 0
        _write(pose2d, cam, kp, fi)


BREAKERS = {
    "no_folder": lambda d: [f.unlink() for f in d.glob("*")] and d.rmdir(),
    "no_files": lambda d: [f.unlink() for f in d.glob("*")],
    "unknown_camera": lambda d: (d / "cam3.npz").rename(d / "camX.npz"),
    "frame_count": lambda d: _write(d, "cam1", _file(d, "cam1")[0][:15]),
    "frame_index": lambda d: _write(d, "cam1", _file(d, "cam1")[0], np.arange(20) + 1),
    "joint_count": lambda d: _write(d, "cam1", _file(d, "cam1")[0][:, :, :12]),
    "one_usable": lambda d: _all_missing(d, ["cam0", "cam2", "cam3"]),
    "none_usable": lambda d: _all_missing(d, ["cam0", "cam1", "cam2", "cam3"]),
    "score_above_one": lambda d: _set(d, "cam2", (13, 0, 4, 2), 1.5),
    "score_nan": lambda d: _set(d, "cam2", (3, 0, 0, 2), np.nan),
    "score_negative": lambda d: _set(d, "cam0", (19, 0, 16, 2), -0.25),
    "x_inf": lambda d: _set(d, "cam3", (2, 0, 1, 0), np.inf),
    "inf_after_bad_score": lambda d: (_set(d, "cam3", (1, 0, 1, 2), 7.0), _set(d, "cam3", (18, 0, 1, 1), -np.inf)),
    "repeated_frames": lambda d: _write(d, "cam0", _file(d, "cam0")[0], np.r_[np.arange(19), 3]),
    "no_frames": lambda d: _write(d, "cam2", _file(d, "cam2")[0][:0]),
    "no_frame_index": lambda d: write_npz(d / "cam1.npz", keypoints=_file(d, "cam1")[0]),
    "no_keypoints": lambda d: write_npz(d / "cam1.npz", frame_index=np.arange(20)),
    "float_frame_index": lambda d: _write(d, "cam1", _file(d, "cam1")[0], np.arange(20.0)),
    "frame_index_2d": lambda d: _write(d, "cam1", _file(d, "cam1")[0], np.zeros((20, 1), np.int64)),
    "int_keypoints": lambda d: _write(d, "cam1", np.nan_to_num(_file(d, "cam1")[0]).astype(np.int32)),
    "keypoints_3d": lambda d: _write(d, "cam1", _file(d, "cam1")[0][:, 0]),
    "keypoints_2_channels": lambda d: _write(d, "cam1", _file(d, "cam1")[0][..., :2]),
    "not_a_zip": lambda d: (d / "cam1.npz").write_bytes(b"\x00" * 100),
    "npy_not_npz": lambda d: np.save(d / "cam1.npz.npy", _file(d, "cam1")[0]) or
    (d / "cam1.npz.npy").rename(d / "cam1.npz"),
    "corrupt_data": _corrupt_data,
    "compressed_bad_score": lambda d: np.savez_compressed(d / "cam1.npz", keypoints=_file(d, "cam1")[0] * 2,
                                                          frame_index=np.arange(20)),
    "fortran_bad_score": lambda d: _write(d, "cam1", np.asfortranarray(_file(d, "cam1")[0] + 3)),
    "directory_named_npz": lambda d: (d / "cam3.npz").unlink() or (d / "cam3.npz").mkdir(),
}


def _read_both(path: Path, joints: int | None):
    """(read_pose2d_arrays's keypoints or error, Pose2DReader's whole read or error)."""
    out = []
    for fn in (lambda: read_pose2d_arrays(path, joints)["keypoints"], lambda: _read_all(path, joints)):
        try:
            out.append(fn())
        except PosecapError as exc:
            out.append(exc)
    return out


def _read_all(path: Path, joints: int | None) -> np.ndarray:
    with Pose2DReader(path, joints) as r:
        return r.read(0, r.frames)


def _assert_same_outcome(full, source) -> None:
    if isinstance(full, Exception):
        assert type(source) is type(full) and str(source) == str(full)
    else:
        assert not isinstance(source, Exception), source
        _assert_same(source, full)


# files that cannot be streamed: Pose2DReader loads them with read_pose2d_arrays (which raises its errors itself)
LOADED_WHOLE = {"not_a_zip", "npy_not_npz", "corrupt_data", "compressed_bad_score", "fortran_bad_score",
                "no_frames", "no_frame_index", "no_keypoints", "int_keypoints", "keypoints_3d",
                "keypoints_2_channels", "directory_named_npz"}


def _assert_same_result(whole: tuple, streamed: tuple) -> None:
    """load_pose2d's and open_pose2d's (result or error, log lines) agree; the whole take read back equal."""
    (full, log_full), (source, log_source) = whole, streamed
    assert log_full == log_source
    if isinstance(source, Exception):
        _assert_same_outcome(full, source)
    else:
        with source:
            _assert_same_outcome(full.keypoints, source.read(0, source.frames))


@pytest.mark.parametrize("breaker", sorted(BREAKERS))
def test_same_errors_and_warnings_as_load_pose2d(tmp_path, monkeypatch, breaker):
    monkeypatch.setattr(reader_mod, "SCAN_BLOCK_BYTES", 2048)  # several scan blocks per file
    pose2d = _session(tmp_path, T=20)
    BREAKERS[breaker](pose2d)
    loaded = []
    monkeypatch.setattr(reader_mod, "read_pose2d_arrays", lambda *a: loaded.append(a) or read_pose2d_arrays(*a))
    both = _both(pose2d)
    assert bool(loaded) == (breaker in LOADED_WHOLE)  # the others' errors come from the streamed checks
    _assert_same_result(*both)
    for path in sorted(pose2d.glob("*.npz")) if pose2d.is_dir() else []:
        for joints in (J, None):
            _assert_same_outcome(*_read_both(path, joints))


SYNC_BREAKERS = {
    "decreasing_frames": lambda d: _write(d, "cam2", _file(d, "cam2")[0], np.arange(100, 0, -1)[:64]),
    "unsorted_frames": lambda d: _write(d, "cam1", _file(d, "cam1")[0], np.r_[4, 3, np.arange(5, 58)]),
    "outside_timeline": lambda d: _write(d, "cam3", _file(d, "cam3")[0], np.arange(66) + 10_000),
    "one_covering": lambda d: [_write(d, c, _file(d, c)[0], np.arange(len(_file(d, c)[0])) + 10_000)
                               for c in ("cam1", "cam2", "cam3")],
    "no_frames": lambda d: _write(d, "cam2", _file(d, "cam2")[0][:0]),
    "fine": lambda d: None,
}


@pytest.mark.parametrize("sync", [SYNC_REF, SYNC_NO_REF], ids=["reference-camera", "no-reference-camera"])
@pytest.mark.parametrize("breaker", sorted(SYNC_BREAKERS))
def test_same_errors_and_log_lines_under_sync(tmp_path, breaker, sync):
    pose2d = _sync_session(tmp_path)
    SYNC_BREAKERS[breaker](pose2d)
    _assert_same_result(*_both(pose2d, sync))


# --- memory: a stored file is never loaded whole ----------------------------------------------------------------

def _spy_npz_members(monkeypatch) -> list[str]:
    asked: list[str] = []
    get = np.lib.npyio.NpzFile.__getitem__

    def spy(self, key):
        asked.append(key)
        return get(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    return asked


def _peak_bytes(fn):
    """(fn(), peak bytes traced while it ran)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reader_memory_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_mod, "SCAN_BLOCK_BYTES", 1 << 16)
    T = 3000
    kp = np.repeat(_observed(30)[0], T // 30, axis=0)  # (3000, 3, 17, 3) float32: 1.8 MB
    path = tmp_path / "cam0.npz"
    write_npz(path, keypoints=kp, frame_index=np.arange(T))
    asked = _spy_npz_members(monkeypatch)

    def open_and_read():
        with Pose2DReader(path, J) as r:
            return r.read(1000, 1100)

    block, peak = _peak_bytes(open_and_read)
    assert asked == ["frame_index"]  # keypoints are never loaded through np.load
    _assert_same(block, kp[1000:1100])
    assert peak < kp.nbytes / 5, peak


def test_source_memory_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_mod, "SCAN_BLOCK_BYTES", 1 << 16)
    T = 3000
    kp = np.repeat(_observed(30), T // 30, axis=1)  # (4, 3000, 3, 17, 3) float32: 7.3 MB
    pose2d = tmp_path / "pose2d"
    for c, cam in enumerate(RIG.names):
        _write(pose2d, cam, kp[c])
    asked = _spy_npz_members(monkeypatch)

    def open_and_read():
        log, _ = _logger("memory")
        with open_pose2d(pose2d, RIG, Path("rig.yaml"), J, log=log, sync=SYNC_REF) as source:
            return source.read(1700, 1730)

    block, peak = _peak_bytes(open_and_read)
    assert asked == ["frame_index"] * 4
    assert block.shape == (4, 30, 3, J, 3) and np.isfinite(block).any()
    assert peak < kp.nbytes / 5, peak  # (T,) arrays, one scan block, one resampled block
