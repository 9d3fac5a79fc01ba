"""The crop stage end to end on small OpenCV-drawn mosaics: streams, session.yaml, bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.artifacts import read_yaml
from pipeline.errors import ConfigError, PosecapError
from tests.crop.crop_fixtures import Mosaic, all_files, read_all, render, run_crop, write_mosaic

QUAD_CAMS = ["cam0", "cam1", "cam2", "cam3"]


def _capture(*sources: dict, **extra: object) -> dict:
    return {"recordings": {"capture": {"kind": "capture", "sources": list(sources)}}, **extra}


def _src(m: Mosaic, cams: list[str], **kw: object) -> dict:
    return {"path": m.path.name, "grid": list(m.grid), "cameras": cams, **kw}


def test_quad_and_stereo_streams_equal_the_renders(tmp_path: Path, quad: Mosaic, stereo: Mosaic) -> None:
    crop = _capture(_src(quad, QUAD_CAMS), _src(stereo, ["left", "right"]), stereo_pairs=[["left", "right"]])
    session = run_crop(tmp_path, crop)
    doc = read_yaml(session / "session.yaml", "session@1")
    assert doc["cameras"] == [*QUAD_CAMS, "left", "right"]
    assert doc["stereo_pairs"] == [["left", "right"]]
    cams = doc["recordings"]["capture"]["cameras"]
    assert doc["recordings"]["capture"]["kind"] == "capture"
    for m, names in ((quad, QUAD_CAMS), (stereo, ["left", "right"])):
        for i, cam in enumerate(names):
            entry = cams[cam]
            x, y, w, h = m.rects[i]
            assert entry == {"stream": f"streams/{cam}.mkv", "source": m.path.name, "crop_rect": [x, y, w, h],
                             "image_size": [w, h], "fps": 25.0, "frame_count": 24, "time_offset_s": 0.0,
                             "truncated_at_frame": None}
            frames = read_all(session / entry["stream"])
            assert len(frames) == 24
            for n, f in enumerate(frames):  # frame-accurate and lossless (FFV1 in, png out): bound 0
                expected = m.tile(i, n)
                skip = max(0, 12 - y)  # the burned-in timestamp covers the mosaic's top 12 rows
                f, expected = f[skip:], expected[skip:]
                assert np.array_equal(f, expected), (cam, n)
    assert all_files(session) == sorted(["session.yaml", *(f"streams/{c}.mkv" for c in doc["cameras"])])


def test_lossy_source_stays_within_the_codec_bound(tmp_path: Path) -> None:
    m = write_mosaic(tmp_path / "quad_mjpg.avi", [96, 98], [64, 62], 12, codec="MJPG", timestamp=False)
    session = run_crop(tmp_path, _capture(_src(m, QUAD_CAMS)))
    decoded = read_all(m.path)
    for i, cam in enumerate(QUAD_CAMS):
        x, y, w, h = m.rects[i]
        frames = read_all(session / f"streams/{cam}.mkv")
        assert len(frames) == 12
        for n, f in enumerate(frames):
            assert np.array_equal(f, decoded[n][y:y + h, x:x + w])  # crop adds no loss of its own
            err = np.abs(f.astype(int) - m.tile(i, n))
            assert err.mean() < 6.0  # the stated bound: MJPEG source (default quality), mean abs error < 6


def test_calibration_recordings_go_under_calib(tmp_path: Path, quad: Mosaic, stereo: Mosaic) -> None:
    crop = {"recordings": {
        "intrinsics": {"kind": "intrinsics", "sources": [_src(quad, QUAD_CAMS)]},
        "capture": {"kind": "capture", "sources": [_src(stereo, ["cam0", "cam1"])]},
    }}
    session = run_crop(tmp_path, crop)
    doc = read_yaml(session / "session.yaml", "session@1")
    assert doc["cameras"] == QUAD_CAMS
    assert doc["recordings"]["intrinsics"]["cameras"]["cam2"]["stream"] == "calib/streams/intrinsics/cam2.mkv"
    assert doc["recordings"]["capture"]["cameras"]["cam1"]["stream"] == "streams/cam1.mkv"
    assert len(read_all(session / "calib/streams/intrinsics/cam3.mkv")) == 24


def test_single_camera_file_is_passed_through(tmp_path: Path, stereo: Mosaic) -> None:
    src = {"path": stereo.path.name, "cameras": ["wide"], "time_offset_s": 0.25}
    session = run_crop(tmp_path, _capture(src))
    out = session / "streams/wide.avi"
    assert out.read_bytes() == stereo.path.read_bytes()  # no re-encode
    entry = read_yaml(session / "session.yaml", "session@1")["recordings"]["capture"]["cameras"]["wide"]
    assert entry["crop_rect"] == [0, 0, 162, 60] and entry["frame_count"] == 24
    assert entry["time_offset_s"] == 0.25


def test_explicit_rects_margins_and_mask(tmp_path: Path, quad: Mosaic) -> None:
    rects = [list(r) for r in quad.rects]
    crop = _capture(_src(quad, QUAD_CAMS, rects=rects, margins=[5, 0, 2, 3], mask=[[0, 0, 60, 14]]))
    session = run_crop(tmp_path, crop)
    cams = read_yaml(session / "session.yaml", "session@1")["recordings"]["capture"]["cameras"]
    x, y, w, h = quad.rects[0]
    assert cams["cam0"]["crop_rect"] == [x + 3, y + 5, w - 3, h - 7]
    f = read_all(session / "streams/cam0.mkv")[3]
    assert f.shape == (h - 7, w - 3, 3)
    assert f[: 14 - y - 5, : 60 - x - 3].max() == 0  # masked
    assert f[: 14 - y - 5, 60 - x - 3:].min() > 0
    assert np.array_equal(f[10:], quad.tile(0, 3)[15:h - 2, 3:])


def test_image_folder_source(tmp_path: Path) -> None:
    folder = tmp_path / "seq"
    folder.mkdir()
    for n in range(5):
        cv2.imwrite(str(folder / f"{n:03d}.png"), render(0, n, 50, 40))
    session = run_crop(tmp_path, _capture({"path": "seq", "cameras": ["c"], "fps": 10}))
    entry = read_yaml(session / "session.yaml", "session@1")["recordings"]["capture"]["cameras"]["c"]
    assert entry["fps"] == 10.0 and entry["image_size"] == [50, 40] and entry["stream"] == "streams/c.mkv"
    got = read_all(session / "streams/c.mkv")
    assert all(np.array_equal(g, render(0, n, 50, 40)) for n, g in enumerate(got)) and len(got) == 5


def test_truncated_mosaic_keeps_good_frames_and_warns(tmp_path: Path, quad: Mosaic,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    data = quad.path.read_bytes()
    quad.path.write_bytes(data[: len(data) * 2 // 3])  # the test cuts the bytes
    with caplog.at_level(logging.WARNING, logger="posecap"):
        session = run_crop(tmp_path, _capture(_src(quad, QUAD_CAMS)))
    assert any("broke off" in r.getMessage() for r in caplog.records)
    cams = read_yaml(session / "session.yaml", "session@1")["recordings"]["capture"]["cameras"]
    kept = cams["cam3"]["frame_count"]
    assert 8 <= kept < 24
    for i, cam in enumerate(QUAD_CAMS):
        assert cams[cam]["truncated_at_frame"] == kept and cams[cam]["frame_count"] == kept
        frames = read_all(session / f"streams/{cam}.mkv")
        assert len(frames) == kept
        if i >= 2:
            assert all(np.array_equal(f, quad.tile(i, n)) for n, f in enumerate(frames))


def test_rerun_replaces_streams_and_drops_stale_ones(tmp_path: Path, stereo: Mosaic) -> None:
    run_crop(tmp_path, _capture(_src(stereo, ["a", "b"])))
    session = run_crop(tmp_path, _capture(_src(stereo, ["left", "right"])))
    assert all_files(session) == ["session.yaml", "streams/left.mkv", "streams/right.mkv"]


def _bad_run(tmp_path: Path, crop: dict) -> str:
    session = tmp_path / "session"
    with pytest.raises(PosecapError) as err:
        run_crop(tmp_path, crop)
    text = str(err.value)
    assert "\n" not in text
    assert not session.exists() or all_files(session) == []  # nothing half-written, no temporaries
    return text


def test_missing_source_is_one_error_and_nothing_written(tmp_path: Path, quad: Mosaic) -> None:
    crop = _capture(_src(quad, QUAD_CAMS), {"path": "missing.avi", "grid": [1, 2], "cameras": ["l", "r"]})
    assert "missing.avi: source not found" in _bad_run(tmp_path, crop)


def test_zero_byte_source(tmp_path: Path, quad: Mosaic) -> None:
    (tmp_path / "empty.avi").write_bytes(b"")
    crop = _capture(_src(quad, QUAD_CAMS), {"path": "empty.avi", "grid": [1, 2], "cameras": ["l", "r"]})
    assert "file is empty (0 bytes)" in _bad_run(tmp_path, crop)


def test_grid_not_fitting_the_frame(tmp_path: Path, stereo: Mosaic) -> None:
    crop = _capture({"path": stereo.path.name, "grid": [1, 30], "cameras": [f"c{i}" for i in range(30)]})
    assert "1x30 grid does not fit the 162x60 frame" in _bad_run(tmp_path, crop)


def test_wrong_grid_or_rects_are_one_error(tmp_path: Path, stereo: Mosaic) -> None:
    assert "rects" in _bad_run(tmp_path, _capture(_src(stereo, ["a", "b", "c"], grid=[1, 3])))
    bad_rects = _capture(_src(stereo, ["a", "b"], rects=[[0, 0, 80, 60], [100, 0, 80, 60]]))
    assert "does not fit the 162x60 frame" in _bad_run(tmp_path, bad_rects)


def test_odd_tiles_with_ffmpeg_codec_are_refused_before_writing(tmp_path: Path, quad: Mosaic) -> None:
    assert "use codec png" in _bad_run(tmp_path, _capture(_src(quad, QUAD_CAMS), codec="FFV1"))


def test_failure_keeps_the_previous_outputs(tmp_path: Path, stereo: Mosaic) -> None:
    session = run_crop(tmp_path, _capture(_src(stereo, ["a", "b"])))
    before = {f: (session / f).read_bytes() for f in all_files(session)}
    shutil.copy(stereo.path, tmp_path / "copy.avi")
    with pytest.raises(PosecapError):
        run_crop(tmp_path, _capture(_src(stereo, ["a", "b"]), {"path": "nope.avi", "cameras": ["c"]}))
    assert {f: (session / f).read_bytes() for f in all_files(session)} == before


@pytest.mark.parametrize(("crop", "message"), [
    (_capture({"path": "x.avi", "grid": [2, 2], "cameras": ["a", "b"]}), "'cameras' lists 2 names for a 2x2"),
    (_capture({"path": "x.avi", "cameras": ["a"]}, stereo_pairs=[["a", "z"]]), "names ['z']"),
    ({"recordings": {"t1": {"kind": "capture", "sources": []}, "t2": {"kind": "capture", "sources": []}}},
     "one take"),
    (_capture({"path": "x.avi", "cameras": ["a/b"]}), "camera name 'a/b'"),
    ({"recordings": {"r": {"kind": "calib"}}}, "expects one of 'intrinsics'"),
    ({}, "crop.recordings is empty"),
])
def test_config_errors(tmp_path: Path, crop: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        run_crop(tmp_path, crop)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_auto_codec_is_ffv1_for_even_tiles_and_png_for_odd(tmp_path: Path, quad: Mosaic) -> None:
    session = run_crop(tmp_path, _capture(_src(quad, QUAD_CAMS)))

    def fourcc(cam: str) -> str:
        cap = cv2.VideoCapture(str(session / f"streams/{cam}.mkv"), cv2.CAP_FFMPEG)
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
        cap.release()
        return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip().upper()

    assert [quad.rects[i][2:] for i in range(4)] == [(96, 64), (97, 64), (96, 63), (97, 63)]
    assert [fourcc(c) for c in QUAD_CAMS] == ["FFV1", "MPNG", "MPNG", "MPNG"]  # png in Matroska
