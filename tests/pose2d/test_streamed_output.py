"""Bounded memory of the pose2d stage: ``pose2d/<cam>.npz`` streamed from the chunk files, no whole-take array kept.

The streamed file must equal, byte for byte, what ``write_npz`` writes for the merged array
(the kill / resume tests compare artifact hashes), and ``run_camera`` must hold chunk summaries,
not keypoints, so its memory does not grow with the take.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import npy_header, write_npz, write_npz_streamed
from pipeline.pose2d import runner
from pipeline.pose2d.io import (
    ChunkStore,
    CountedBlocks,
    DetectionCounts,
    chunk_blocks,
    empty_keypoints,
    frame_blocks,
    pad_people,
    write_pose2d,
    write_pose2d_blocks,
)
from pipeline.pose2d.runner import CameraJob, RunOptions, run_camera

REPO = Path(__file__).resolve().parents[2]
J = 17


def _chunk(rng: np.random.Generator, frames: int, people: int) -> np.ndarray:
    """(frames, people, J, 3) keypoints with missing joints, empty slots and scores needing cleaning."""
    kp = empty_keypoints(frames, people, J)
    kp[..., :2] = rng.uniform(0, 640, (frames, people, J, 2))
    kp[..., 2] = rng.uniform(-0.2, 1.3, (frames, people, J))  # clean_keypoints clips / drops these
    kp[rng.random((frames, people, J)) < 0.2, :2] = np.nan
    kp[:, people // 2:][rng.random((frames, people - people // 2)) < 0.5] = [np.nan, np.nan, 0.0]
    return kp.astype(np.float32)


def merge_chunks(chunks: list[np.ndarray], joints: int) -> np.ndarray:
    """The merge the stage did before streaming: chunks of different person counts -> (T, max P, J, 3)."""
    if not chunks:
        return empty_keypoints(0, 0, joints)
    people = max(c.shape[1] for c in chunks)
    return np.concatenate([pad_people(c, people) for c in chunks])


def _merged_file(path: Path, chunks: list[np.ndarray], frames: int, people: int) -> bytes:
    """What the stage wrote before streaming: merge, pad / cut to ``frames``, pad people, write_pose2d."""
    kp = merge_chunks(chunks, J)
    if len(kp) < frames:
        kp = np.concatenate([kp, empty_keypoints(frames - len(kp), kp.shape[1], J)])
    write_pose2d(path, pad_people(kp[:frames], people), np.arange(frames, dtype=np.int64))
    return path.read_bytes()


@pytest.mark.parametrize("frames", [40, 33, 61, 0])  # all frames, cut inside a chunk, a broken-off stream, none
def test_streamed_pose2d_equals_write_npz_of_the_merged_array(tmp_path, frames):
    rng = np.random.default_rng(frames)
    store = ChunkStore(tmp_path, "cam0", "key")
    arrays = [_chunk(rng, n, p) for n, p in [(8, 2), (8, 0), (8, 5), (8, 3), (8, 1)]]  # person slots differ
    infos = [store.save(8 * i, kp) for i, kp in enumerate(arrays)]
    people = 6  # another camera had more
    counted = CountedBlocks(frame_blocks(chunk_blocks(infos), frames, people, J))
    write_pose2d_blocks(tmp_path / "streamed.npz", counted, frames, people, J)

    expected = _merged_file(tmp_path / "merged.npz", arrays, frames, people)
    assert (tmp_path / "streamed.npz").read_bytes() == expected
    whole = pad_people(merge_chunks(arrays, J), people)[:frames]
    assert counted.counts == DetectionCounts.of(whole)
    if frames == 40:
        assert sum((i.counts for i in infos), DetectionCounts()) == DetectionCounts.of(whole)


def test_write_npz_streamed_matches_write_npz_for_any_blocking(tmp_path):
    a = np.random.default_rng(0).normal(size=(50, 3, 4)).astype(np.float64)
    b = np.arange(7, dtype=np.int32)
    write_npz(tmp_path / "whole.npz", a=a, b=b, empty=np.zeros((0, 2), np.float32))
    write_npz_streamed(tmp_path / "blocks.npz", {"a": (a.shape, a.dtype, [a[:1], a[1:1], a[1:49], a[49:]]),
                                                 "b": (b.shape, b.dtype, iter([b[:3], b[3:]])),
                                                 "empty": ((0, 2), np.float32, [])})
    assert (tmp_path / "blocks.npz").read_bytes() == (tmp_path / "whole.npz").read_bytes()
    assert npy_header((50, 3, 4), "<f8").startswith(b"\x93NUMPY\x01\x00")


def test_write_npz_streamed_rejects_blocks_that_do_not_fit_and_leaves_nothing(tmp_path):
    a = np.zeros((4, 3), np.float32)
    for blocks, match in [([a, a], "does not fit"), ([a[:3]], "hold 3 rows"), ([a.astype(np.float64)], "float64"),
                          ([a[:, :2]], "does not fit")]:
        with pytest.raises(ValueError, match=match):
            write_npz_streamed(tmp_path / "x.npz", {"a": ((4, 3), np.float32, blocks)})
    assert list(tmp_path.iterdir()) == []


_FULL_DISK = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    import numpy as np
    from pipeline.artifacts import write_npz, write_npz_streamed
    from pipeline.errors import ArtifactError

    path = Path(sys.argv[1])
    write_npz(path, keypoints=np.zeros(3, np.float32))
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))  # the kernel fails larger writes with EFBIG
    block = np.ones((64, 4, 17, 3), np.float32)  # 52 KiB
    try:
        write_npz_streamed(path, {"keypoints": ((640, 4, 17, 3), np.float32, (block for _ in range(10)))})
    except ArtifactError as exc:
        print(exc)
""")


def test_streamed_write_on_a_full_disk_keeps_the_previous_file(tmp_path):
    path = tmp_path / "cam0.npz"
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(path)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.strip().splitlines() == [
        f"{path}: cannot write (File too large); the previous file is kept; free disk space or fix the folder's "
        "permissions, then rerun"]
    assert [p.name for p in tmp_path.iterdir()] == ["cam0.npz"]
    with np.load(path) as npz:
        assert npz["keypoints"].shape == (3,)


class _Reader:
    """A stream of ``n`` tiny frames (stands in for a video reader)."""

    def __init__(self, n: int) -> None:
        self.n, self.frames_read, self.broke_off = n, 0, False

    def __iter__(self):
        for _ in range(self.n):
            self.frames_read += 1
            yield np.zeros((2, 2, 3), np.uint8)

    def close(self) -> None:
        pass


class _Backend:
    """``people`` detections per frame, x = frame number; records what ``reset`` was given."""

    joints = J

    def __init__(self, people: int) -> None:
        self.people, self.resets = people, []

    def reset(self, previous):
        self.resets.append(None if previous is None else np.array(previous))

    def __call__(self, frames, first_index):
        return [np.full((self.people, J, 3), first_index + i, np.float32) for i in range(len(frames))]


def _run(tmp_path: Path, monkeypatch, frames: int, backend: _Backend, chunk: int = 64):
    monkeypatch.setattr(runner, "open_frames", lambda stream, fps: _Reader(frames))
    store = ChunkStore(tmp_path, "cam0", "key")
    job = CameraJob("cam0", tmp_path / "stream", frames)
    return run_camera(backend, job, store, RunOptions(batch_frames=8, chunk_frames=chunk, show_progress=False))


def test_run_camera_memory_does_not_grow_with_the_take(tmp_path, monkeypatch):
    """3000 frames x 20 people: 12 MiB of keypoints if kept (twice that merged); the peak stays far below."""
    tracemalloc.start()
    try:
        result = _run(tmp_path, monkeypatch, 3000, _Backend(20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = 3000 * 20 * J * 3 * 4
    assert peak < kept / 4, f"peak {peak / 2**20:.1f} MiB; the keypoints alone are {kept / 2**20:.1f} MiB"
    assert not any(isinstance(v, np.ndarray) for v in vars(result).values())
    assert result.frames == 3000 and result.people == 20 and result.detections == 60000
    assert [c.start for c in result.chunks] == list(range(0, 3000, 64))


def test_resume_reads_the_last_chunk_and_lists_every_chunk(tmp_path, monkeypatch):
    whole = _run(tmp_path, monkeypatch, 100, _Backend(2), chunk=16)
    for c in whole.chunks[4:]:  # a run killed after four chunks
        c.path.unlink()
    backend = _Backend(2)
    resumed = _run(tmp_path, monkeypatch, 100, backend, chunk=16)
    assert resumed.resumed_at == 64 and resumed.frames_computed == 36
    np.testing.assert_array_equal(backend.resets[0], np.full((2, J, 3), 63, np.float32))  # frame 63's people
    assert resumed.chunks == whole.chunks  # same files, frames, person slots and counts
    kp = np.concatenate(list(chunk_blocks(resumed.chunks)))
    np.testing.assert_array_equal(kp[:, 0, 0, 0], np.arange(100))
