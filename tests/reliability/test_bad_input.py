"""Bad input at every entry point: exit code 2, one line naming the file and the problem, and
nothing that was valid is overwritten.

Most cases run the CLI in this process (``pipeline.cli.main``), on a copy of the finished
hand-made session (``conftest.py``); a few run it as a subprocess to see the real exit code and
stderr of ``python -m pipeline.cli``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.cli import main
from tests.reliability.conftest import digests
from tests.reliability.harness import one_line_error, posecap


def _yaml(path: Path, doc) -> None:
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)


def _edit_rig(edit: Callable[[dict], None]) -> Callable[[Path], Path]:
    def mutate(root: Path) -> Path:
        path = root / "session" / "calib" / "rig.yaml"
        doc = yaml.safe_load(path.read_text())
        edit(doc)
        _yaml(path, doc)
        return path
    return mutate


def _edit_pose2d(edit: Callable[[dict], None], cam: str = "cam0") -> Callable[[Path], Path]:
    def mutate(root: Path) -> Path:
        path = root / "session" / "pose2d" / f"{cam}.npz"
        with np.load(path) as npz:
            arrays = dict(npz)
        edit(arrays)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path
    return mutate


def _config(text: str) -> Callable[[Path], Path]:
    def mutate(root: Path) -> Path:
        path = root / "posecap.yaml"
        path.write_text(text)
        return path
    return mutate


def _bytes(rel: str, data: bytes) -> Callable[[Path], Path]:
    def mutate(root: Path) -> Path:
        path = root / "session" / rel
        path.write_bytes(data)
        return path
    return mutate


def _set(key: str, value):
    def edit(doc: dict) -> None:
        doc["cameras"]["cam0"][key] = value
    return edit


def _kp(fn: Callable[[np.ndarray], np.ndarray]):
    def edit(arrays: dict) -> None:
        arrays["keypoints"] = fn(arrays["keypoints"])
    return edit


def _nan_scores(kp: np.ndarray) -> np.ndarray:
    kp = kp.copy()
    kp[...] = np.nan
    return kp


def _inf(kp: np.ndarray) -> np.ndarray:
    kp = kp.copy()
    kp[0, 0, 0, 0] = np.inf
    return kp


def _score(kp: np.ndarray) -> np.ndarray:
    kp = kp.copy()
    kp[..., 2] *= 3.0
    return kp


def _empty(arrays: dict) -> None:
    arrays["keypoints"] = arrays["keypoints"][:0]
    arrays["frame_index"] = arrays["frame_index"][:0]


def _repeat_frames(arrays: dict) -> None:
    arrays["frame_index"] = np.zeros_like(arrays["frame_index"])


def _rename_cameras(doc: dict) -> None:
    doc["cameras"] = {f"other{i}": v for i, v in enumerate(doc["cameras"].values())}


TRIANGULATE = ["triangulate", "{session}", "--config", "{config}", "--force"]
RUN = ["run", "{config}", "--force", "triangulate"]

CASES: dict[str, tuple[Callable[[Path], Path], list[str], str]] = {
    # config: not a mapping, bad syntax, wrong types, unknown keys
    "config is a list": (_config("- triangulate\n- export\n"), RUN, "expected a YAML mapping"),
    "config is not YAML": (_config("triangulate: [1, 2\n"), RUN, "invalid YAML"),
    "config is empty": (_config(""), RUN, "session_dir"),
    "config wrong type": (_config("session_dir: session\ntriangulate: {min_views: two}\n"), RUN, "min_views"),
    "config unknown key": (_config("session_dir: session\ntriangulate: {min_view: 2}\n"), RUN, "min_view"),
    "config unknown section": (_config("session_dir: session\ntriangulation: {}\n"), RUN, "triangulation"),
    "config session_dir not a string": (_config("session_dir: [a]\n"), RUN, "session_dir"),
    # rig.yaml: not a mapping, wrong types, missing/misspelt keys, future schema, singular K, NaN
    "rig is a list": (_bytes("calib/rig.yaml", b"[1, 2]\n"), TRIANGULATE, "mapping"),
    "rig is empty": (_bytes("calib/rig.yaml", b""), TRIANGULATE, "mapping"),
    "rig future schema": (_edit_rig(lambda d: d.update(schema="posecap/rig@9")), TRIANGULATE, "newer"),
    "rig other schema": (_edit_rig(lambda d: d.update(schema="posecap/session@1")), TRIANGULATE, "schema"),
    "rig K wrong type": (_edit_rig(_set("K", "identity")), TRIANGULATE, "'K'"),
    "rig K misspelt": (_edit_rig(lambda d: d["cameras"]["cam0"].update(k=d["cameras"]["cam0"].pop("K"))),
                       TRIANGULATE, "K"),
    "rig K singular": (_edit_rig(_set("K", [[0, 0, 0], [0, 0, 0], [0, 0, 1]])), TRIANGULATE, "singular"),
    "rig R NaN": (_edit_rig(_set("R", [[1, 0, 0], [0, 1, 0], [0, 0, float("nan")]])), TRIANGULATE, "'R'"),
    "rig dist length": (_edit_rig(_set("dist", [0.1, 0.2])), TRIANGULATE, "dist"),
    "rig camera names": (_edit_rig(_rename_cameras), TRIANGULATE, "rig"),
    # pose2d/<cam>.npz: wrong shapes and dtypes, NaN / inf, empty, not an npz
    "pose2d wrong shape": (_edit_pose2d(_kp(lambda k: k[..., :2])), TRIANGULATE, "shape"),
    "pose2d wrong joints": (_edit_pose2d(_kp(lambda k: k[:, :, :5])), TRIANGULATE, "shape"),
    "pose2d int dtype": (_edit_pose2d(_kp(lambda k: np.nan_to_num(k).astype(np.int32))), TRIANGULATE, "dtype"),
    "pose2d strings": (_edit_pose2d(_kp(lambda k: np.array(["a", "b"]))), TRIANGULATE, "keypoints"),
    "pose2d all NaN": (_edit_pose2d(_kp(_nan_scores)), TRIANGULATE, "score"),
    "pose2d inf": (_edit_pose2d(_kp(_inf)), TRIANGULATE, "inf"),
    "pose2d score out of range": (_edit_pose2d(_kp(_score)), TRIANGULATE, "score"),
    "pose2d no frames": (_edit_pose2d(_empty), TRIANGULATE, "no frame"),
    "pose2d repeated frames": (_edit_pose2d(_repeat_frames), TRIANGULATE, "frame_index"),
    "pose2d missing array": (_edit_pose2d(lambda a: a.pop("frame_index")), TRIANGULATE, "frame_index"),
    "pose2d zero bytes": (_bytes("pose2d/cam0.npz", b""), TRIANGULATE, "npz"),
    "pose2d not a zip": (_bytes("pose2d/cam0.npz", b"PK\x03\x04 this is not a zip file"), TRIANGULATE, "npz"),
    "pose2d unknown camera": (lambda root: (root / "session/pose2d/cam0.npz").rename(
        root / "session/pose2d/camX.npz").parent, TRIANGULATE, "camX"),
    # pose3d for export / visualize
    "pose3d inf": (lambda root: _write_pose3d(root, inf=True), ["export", "{session}", "--config", "{config}",
                                                                 "--force"], "inf"),
    "pose3d wrong shape": (lambda root: _write_pose3d(root, inf=False), ["visualize", "{session}", "--config",
                                                                          "{config}", "--force"], "shape"),
}


def _write_pose3d(root: Path, inf: bool) -> Path:
    path = root / "session" / "pose3d" / "skeletons.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    if inf:
        arrays["joints"][0, 0, 0, 0] = np.inf
    else:
        arrays["joints"] = arrays["joints"][..., :2]
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def run_cli(argv: list[str], root: Path, capsys) -> tuple[int, str]:
    args = [a.format(session=root / "session", config=root / "posecap.yaml") for a in argv]
    capsys.readouterr()
    rc = main(["-q", *args])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, handmade, capsys):
    mutate, argv, problem = CASES[case]
    culprit = mutate(handmade)
    before = digests(handmade / "session")
    rc, err = run_cli(argv, handmade, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("posecap: error:")]
    assert rc == 2 and len(lines) == 1, f"exit {rc}; stderr:\n{err}"
    assert "Traceback" not in err
    line = lines[0]
    assert str(culprit.name) in line or str(culprit) in line, line
    assert problem.lower() in line.lower(), line
    assert digests(handmade / "session") == before, "a failed run changed the session"


def test_subprocess_gives_exit_2_and_one_line(handmade):
    """The real command line: a future-schema rig, then a singular K."""
    rig = handmade / "session" / "calib" / "rig.yaml"
    good = rig.read_text()
    _edit_rig(lambda d: d.update(schema="posecap/rig@99"))(handmade)
    before = digests(handmade / "session")
    proc = posecap("run", str(handmade / "posecap.yaml"), "--only", "triangulate")
    assert str(rig) in one_line_error(proc)
    assert digests(handmade / "session") == before
    rig.write_text(good)
    _edit_rig(_set("K", [[0, 0, 0], [0, 0, 0], [0, 0, 1]]))(handmade)
    proc = posecap("triangulate", str(handmade / "session"), "--config", str(handmade / "posecap.yaml"))
    assert "singular" in one_line_error(proc)


# ----------------------------------------------------------------------------- crop's inputs


def _crop_root(root: Path, sources: list[dict]) -> Path:
    config = root / "posecap.yaml"
    _yaml(config, {"session_dir": "session",
                   "crop": {"recordings": {"capture": {"kind": "capture", "sources": sources}}}})
    return config


def _video(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 60 + 20 * i, np.uint8)
        cv2.circle(img, (10 + 4 * i, 20), 6, (255, 255, 255), -1)
        writer.write(img)
    writer.release()
    return path


@pytest.mark.parametrize("damage", ["zero bytes", "header only", "random bytes"])
def test_crop_refuses_damaged_videos(tmp_path, capsys, damage):
    video = _video(tmp_path / "raw" / "cam0.mp4")
    data = video.read_bytes()
    video.write_bytes({"zero bytes": b"", "header only": data[:64],
                       "random bytes": np.random.default_rng(0).bytes(20000)}[damage])
    config = _crop_root(tmp_path, [{"path": "raw/cam0.mp4", "cameras": ["cam0"]}])
    capsys.readouterr()
    rc = main(["-q", "run", str(config)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert "cam0.mp4" in err and len([ln for ln in err.splitlines() if "error" in ln]) == 1, err


def test_crop_refuses_images_of_the_wrong_size(tmp_path, capsys):
    folder = tmp_path / "raw" / "seq"
    folder.mkdir(parents=True)
    for i in range(4):
        size = (64, 48) if i != 2 else (80, 48)
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((size[1], size[0], 3), 100 + i, np.uint8))
    config = _crop_root(tmp_path, [{"path": "raw/seq", "cameras": ["cam0"], "fps": 30.0}])
    capsys.readouterr()
    rc = main(["-q", "run", str(config)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert "f2.png" in err, err


@pytest.mark.parametrize("name", ["../escaped", "a/../../escaped", "/tmp/escaped"])
def test_names_that_escape_the_session_are_refused(tmp_path, capsys, name):
    """A camera or recording name becomes a path under the session: it may not leave it."""
    _video(tmp_path / "raw" / "cam0.mp4")
    for where in ("camera", "recording"):
        config = tmp_path / "posecap.yaml"
        recording = name if where == "recording" else "capture"
        _yaml(config, {"session_dir": "session", "crop": {"recordings": {recording: {
            "kind": "capture", "sources": [{"path": "raw/cam0.mp4",
                                            "cameras": [name if where == "camera" else "cam0"]}]}}}})
        capsys.readouterr()
        rc = main(["-q", "run", str(config)])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, (where, err)
        assert name in err, (where, err)
        assert not any(p.name.startswith("escaped") for p in tmp_path.rglob("*")), (where, list(tmp_path.rglob("*")))
        assert not Path("/tmp/escaped.mkv").exists()


def test_config_paths_that_escape_the_session_are_refused(tmp_path, capsys):
    """A recording named by a stage param is a path below calib/streams/: it may not leave the session."""
    config = tmp_path / "posecap.yaml"
    _yaml(config, {"session_dir": "session", "calibrate_intrinsics": {"recording": "../../../etc"}})
    (tmp_path / "session").mkdir()
    capsys.readouterr()
    rc = main(["-q", "status", str(config)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert "../../../etc" in err and "session" in err, err


def test_unreadable_config_file(tmp_path, capsys):
    config = tmp_path / "posecap.yaml"
    config.write_bytes(b"\xff\xfe\x00 not utf-8")
    capsys.readouterr()
    assert main(["-q", "run", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "Traceback" not in err
    if os.geteuid() != 0:
        config.write_text("session_dir: s\n")
        config.chmod(0o000)
        assert main(["-q", "run", str(config)]) == 2
        config.chmod(0o644)
