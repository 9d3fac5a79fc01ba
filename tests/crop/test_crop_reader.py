"""Streaming readers and writers: clear errors, break-off detection, lossless round trip."""

from __future__ import annotations

import contextlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.errors import PosecapError
from pipeline.video.reader import Prefetcher, leading_frames, open_frames
from pipeline.video.writer import StreamWriter, copy_stream, open_stream
from tests.crop.crop_fixtures import Mosaic, read_all, render, write_mosaic


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PosecapError) as err:
        open_frames(tmp_path / "nope.avi")
    assert "source not found" in _one_line(err)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(PosecapError) as err:
        open_frames(tmp_path / "empty.avi")
    assert "file is empty (0 bytes)" in _one_line(err)


def test_not_a_video(tmp_path: Path) -> None:
    (tmp_path / "junk.mkv").write_bytes(b"not a video at all " * 200)
    with pytest.raises(PosecapError) as err:
        open_frames(tmp_path / "junk.mkv")
    assert "not a video OpenCV can open" in _one_line(err)


def test_video_with_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "zero.avi"
    w = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    w.release()
    assert path.stat().st_size > 0
    with pytest.raises(PosecapError) as err:
        open_frames(path)
    assert "zero readable frames" in _one_line(err)


def test_reads_every_frame_in_order(quad: Mosaic) -> None:
    with open_frames(quad.path) as reader:
        assert (reader.info.width, reader.info.height, reader.info.fps) == (210, 144, 25.0)
        assert reader.info.declared_frames == quad.frames
        frames = list(Prefetcher(reader, depth=2))
    assert len(frames) == quad.frames and reader.frames_read == quad.frames and not reader.broke_off
    x, y, w, h = quad.rects[3]
    for n, f in enumerate(frames):
        assert np.array_equal(f[y:y + h, x:x + w], quad.tile(3, n))


@pytest.mark.parametrize(("codec", "suffix", "lossless"), [("FFV1", ".avi", True), ("FFV1", ".mkv", True),
                                                         ("MJPG", ".avi", False)])
def test_truncated_video_keeps_the_good_frames(tmp_path: Path, codec: str, suffix: str,
                                               lossless: bool) -> None:
    full = write_mosaic(tmp_path / f"full{suffix}", [64, 64], [48], 30, codec=codec, timestamp=False)
    reference = read_all(full.path)
    data = full.path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * 0.55)])  # the test cuts the bytes mid-file
    with open_frames(cut) as reader:
        got = list(reader)
    assert reader.broke_off and "decoding stopped" in reader.break_reason
    assert 10 <= len(got) == reader.frames_read < 30
    for n, f in enumerate(got):  # every frame kept is whole and in place
        assert np.array_equal(f, reference[n]), n
        if lossless:
            x, y, w, h = full.rects[1]
            assert np.array_equal(f[y:y + h, x:x + w], full.tile(1, n))


def test_image_folder_in_natural_order_and_break(tmp_path: Path) -> None:
    folder = tmp_path / "seq"
    folder.mkdir()
    for n in range(12):
        cv2.imwrite(str(folder / f"f{n}.png"), render(1, n, 40, 30))
    (folder / "notes.txt").write_text("ignored")
    with pytest.raises(PosecapError, match="needs 'fps'"):
        open_frames(folder)
    with open_frames(folder, fps=12.5) as reader:
        assert reader.info.declared_frames == 12 and reader.info.fps == 12.5
        frames = list(reader)
    assert [np.array_equal(f, render(1, n, 40, 30)) for n, f in enumerate(frames)] == [True] * 12
    assert len(list(leading_frames(folder, 4))) == 4
    (folder / "f7.png").write_bytes(b"broken")
    with open_frames(folder, fps=10) as reader:
        assert len(list(reader)) == 7 and reader.broke_off and "f7.png" in reader.break_reason


def test_empty_image_folder(tmp_path: Path) -> None:
    with pytest.raises(PosecapError, match="holds no frames"):
        open_frames(tmp_path, fps=10)


@pytest.mark.parametrize(("codec", "suffix", "size"), [("png", ".mkv", (53, 37)), ("png", ".avi", (53, 37)),
                                                      ("FFV1", ".mkv", (54, 38))])
@pytest.mark.parametrize("threaded", [False, True])
def test_lossless_round_trip(tmp_path: Path, threaded: bool, codec: str, suffix: str, size: tuple) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(9)]
    dest = tmp_path / f"s{suffix}"
    with contextlib.ExitStack() as stack:
        w = open_stream(stack, dest, codec, 30.0, size, threaded=threaded, depth=2)
        for f in frames:
            w.write(f)
        assert not dest.exists()
    got = read_all(dest)
    assert len(got) == 9 and all(np.array_equal(a, b) for a, b in zip(frames, got))
    cap = cv2.VideoCapture(str(dest), cv2.CAP_FFMPEG)  # seekable: every frame is a key frame
    assert cap.set(cv2.CAP_PROP_POS_FRAMES, 6)
    ok, f = cap.read()
    assert ok and np.array_equal(f, frames[6])


def test_jpeg_stream_is_near_lossless(tmp_path: Path) -> None:
    frames = [render(2, n, 61, 45) for n in range(5)]
    with contextlib.ExitStack() as stack:
        w = open_stream(stack, tmp_path / "j.mkv", "jpeg", 30.0, (61, 45), jpeg_quality=95)
        for f in frames:
            w.write(f)
    got = read_all(tmp_path / "j.mkv")
    assert len(got) == 5 and got[0].shape == (45, 61, 3)
    assert max(np.abs(a.astype(int) - b).mean() for a, b in zip(frames, got)) < 3.0


def test_ffmpeg_codec_refuses_odd_tiles(tmp_path: Path) -> None:
    with pytest.raises(PosecapError) as err:
        StreamWriter(tmp_path / "x.mkv", "FFV1", 30.0, (53, 38))
    assert "odd side" in _one_line(err) and "use codec png" in str(err.value)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), contextlib.ExitStack() as stack:
        w = open_stream(stack, tmp_path / "s.mkv", "FFV1", 30.0, (16, 16), threaded=True)
        w.write(np.zeros((16, 16, 3), np.uint8))
        copy_stream(stack, __file__, tmp_path / "copy.py")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_codec_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PosecapError) as err:
        StreamWriter(tmp_path / "x.mkv", "ZZZZ", 30.0, (16, 16))
    assert "cannot write codec 'ZZZZ'" in _one_line(err)
    with pytest.raises(PosecapError) as err:
        StreamWriter(tmp_path / "x.mkv", "TOOLONG", 30.0, (16, 16))
    assert "FourCC" in _one_line(err)
