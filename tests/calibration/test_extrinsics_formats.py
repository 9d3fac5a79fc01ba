"""Rig import/export: round trips for each format, files as the other tools write them, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.calibration.rig_cli import main
from pipeline.calibration.rig_formats import FORMATS, dump_toml, export_rig, import_rig, load_toml
from pipeline.errors import ArtifactError, PosecapError
from pipeline.geometry.camera import Camera
from pipeline.geometry.rig import Rig
from tests.calibration.extrinsics_synthetic import ring_rig


def assert_same(a: Rig, b: Rig, atol: float = 1e-12) -> None:
    assert a.names == b.names
    for ca, cb in zip(a.cameras, b.cameras):
        assert ca.image_size == cb.image_size
        np.testing.assert_allclose(ca.K, cb.K, atol=atol)
        np.testing.assert_allclose(ca.R, cb.R, atol=atol)
        np.testing.assert_allclose(ca.t, cb.t, atol=atol)
        np.testing.assert_allclose(ca.dist8, cb.dist8, atol=atol)


def dest(tmp: Path, fmt: str) -> Path:
    return {"posecap": tmp / "rig.yaml", "anipose": tmp / "calibration.toml", "pose2sim": tmp / "Calib.toml",
            "easymocap": tmp / "cams"}[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, fmt):
    rig = ring_rig(3, stereo=True, seed=4)
    files = export_rig(rig, dest(tmp_path, fmt), fmt, error_px=0.25)
    assert all(f.is_file() for f in files)
    assert_same(rig, import_rig(dest(tmp_path, fmt), fmt))


@pytest.mark.parametrize("fmt", ["anipose", "pose2sim", "easymocap"])
def test_round_trip_other_units(tmp_path, fmt):
    rig = ring_rig(2, seed=1)
    export_rig(rig, dest(tmp_path, fmt), fmt, units="cm")
    assert_same(rig, import_rig(dest(tmp_path, fmt), fmt, units="cm"))
    wrong = import_rig(dest(tmp_path, fmt), fmt, units="m")
    np.testing.assert_allclose(wrong.t, rig.t * 100)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=1, max_size=6),
       st.text(st.characters(min_codepoint=1, max_codepoint=0x10FFFF, exclude_categories=('Cs',)), min_size=1,
               max_size=8))
def test_toml_writer_round_trips(values, name):
    tomllib = pytest.importorskip("tomllib")
    text = dump_toml({name: {"name": name, "v": values, "m": [values, values], "ok": True}})
    back = tomllib.loads(text)
    assert back[name] == {"name": name, "v": values, "m": [values, values], "ok": True}


ANIPOSE_SAMPLE = """\
[cam_0]
name = "A"
size = [ 1920, 1080,]
matrix = [ [ 1400.5, 0.0, 959.5,], [ 0.0, 1400.5, 539.5,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.21, 0.0, 0.0, 0.0, 0.0,]
rotation = [ 0.1, -0.2, 0.05,]
translation = [ 120.0, -30.0, 2500.0,]

[cam_1]
name = "B"
size = [ 1920, 1080,]
matrix = [ [ 1390.0, 0.0, 959.5,], [ 0.0, 1390.0, 539.5,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.2, 0.0, 0.0, 0.0, 0.0,]
rotation = [ 0.0, 1.2, 0.0,]
translation = [ -800.0, 10.0, 2400.0,]

[metadata]
adjusted = false
error = 0.42
"""

POSE2SIM_SAMPLE = """\
[cam_01]
name = "cam_01"
size = [ 1088.0, 1920.0]
matrix = [ [ 1677.3, 0.0, 543.6], [ 0.0, 1675.1, 956.2], [ 0.0, 0.0, 1.0]]
distortions = [ -0.05, 0.06, -0.001, 0.0004]
rotation = [ 1.68, 0.79, -0.67]
translation = [ 0.52, 0.79, 4.38]
fisheye = false

[metadata]
adjusted = false
error = 0.0
"""

EASYMOCAP_INTRI = """%YAML:1.0
---
names:
  - "01"
K_01: !!opencv-matrix
  rows: 3
  cols: 3
  dt: d
  data: [1000.0, 0.0, 640.0, 0.0, 1000.0, 360.0, 0.0, 0.0, 1.0]
dist_01: !!opencv-matrix
  rows: 1
  cols: 5
  dt: d
  data: [-0.1, 0.01, 0.0, 0.0, 0.0]
"""

EASYMOCAP_EXTRI = """%YAML:1.0
---
names:
  - "01"
R_01: !!opencv-matrix
  rows: 3
  cols: 1
  dt: d
  data: [0.1, 0.2, 0.3]
Rot_01: !!opencv-matrix
  rows: 3
  cols: 3
  dt: d
  data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
T_01: !!opencv-matrix
  rows: 3
  cols: 1
  dt: d
  data: [0.5, -0.1, 3.0]
"""


def test_reads_files_as_the_other_tools_write_them(tmp_path, caplog):
    (tmp_path / "calibration.toml").write_text(ANIPOSE_SAMPLE)
    rig = import_rig(tmp_path / "calibration.toml", "anipose")
    assert rig.names == ["A", "B"] and rig.cameras[0].image_size == (1920, 1080)
    np.testing.assert_allclose(rig.cameras[0].t, [0.12, -0.03, 2.5])  # millimetres -> metres
    (tmp_path / "Calib.toml").write_text(POSE2SIM_SAMPLE)
    rig = import_rig(tmp_path / "Calib.toml", "pose2sim")
    assert rig.names == ["cam_01"] and rig.cameras[0].image_size == (1088, 1920)
    np.testing.assert_allclose(rig.cameras[0].dist, [-0.05, 0.06, -0.001, 0.0004])
    (tmp_path / "intri.yml").write_text(EASYMOCAP_INTRI)
    (tmp_path / "extri.yml").write_text(EASYMOCAP_EXTRI)
    rig = import_rig(tmp_path, "easymocap")
    cam = rig.cameras[0]
    assert cam.name == "01" and cam.image_size == (1281, 721)  # no H_/W_: twice the principal point
    assert "no H_01" in caplog.text
    np.testing.assert_allclose(cam.t, [0.5, -0.1, 3.0])
    rig = import_rig(tmp_path / "intri.yml", "easymocap", image_sizes={"01": (1280, 720)})
    assert rig.cameras[0].image_size == (1280, 720)


def test_easymocap_header_and_names(tmp_path):
    export_rig(ring_rig(2), tmp_path, "easymocap")
    text = (tmp_path / "intri.yml").read_text()
    assert text.startswith("%YAML:1.0\n") and "names:" in text and "H_cam0: 480" in text
    assert "Rot_cam1" in (tmp_path / "extri.yml").read_text()


def test_bad_input(tmp_path):
    (tmp_path / "fish.toml").write_text(POSE2SIM_SAMPLE.replace("fisheye = false", "fisheye = true"))
    with pytest.raises(PosecapError, match="fisheye"):
        import_rig(tmp_path / "fish.toml", "pose2sim")
    (tmp_path / "broken.toml").write_text("[cam_0\nname=")
    with pytest.raises(ArtifactError, match="not valid TOML"):
        load_toml(tmp_path / "broken.toml")
    (tmp_path / "short.toml").write_text(ANIPOSE_SAMPLE.replace("rotation = [ 0.1, -0.2, 0.05,]\n", ""))
    with pytest.raises(ArtifactError, match=r"section \[cam_0\] lacks rotation"):
        import_rig(tmp_path / "short.toml", "anipose")
    with pytest.raises(PosecapError, match="unknown rig format"):
        import_rig(tmp_path / "x", "opencap")
    with pytest.raises(ArtifactError, match="intri.yml: file not found"):
        import_rig(tmp_path / "nothing", "easymocap")


def test_export_keeps_skew_and_rational_model(tmp_path):
    K = np.array([[500.0, 0.5, 320.0], [0, 505.0, 240.0], [0, 0, 1]])
    cam = Camera("c", (640, 480), K, np.array([-0.2, 0.05, 1e-3, 2e-3, 0.01, 0.1, 0.02, 0.003]), np.eye(3), np.zeros(3))
    rig = Rig((cam,))
    for fmt in FORMATS:
        if fmt == "easymocap":
            continue  # EasyMocap holds five distortion coefficients
        export_rig(rig, dest(tmp_path, fmt), fmt)
        assert_same(rig, import_rig(dest(tmp_path, fmt), fmt))


def test_cli(tmp_path, capsys):
    rig = ring_rig(3, seed=2)
    session = tmp_path / "session"
    (session / "calib").mkdir(parents=True)
    rig.save(session / "calib" / "rig.yaml")
    assert main(["export", str(session), "--format", "anipose", "--out", str(tmp_path / "calibration.toml")]) == 0
    assert "calibration.toml" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "calibration.toml"), "-f", "anipose", "--out", str(tmp_path / "r.yaml")]) == 0
    assert_same(rig, Rig.load(tmp_path / "r.yaml"), atol=1e-9)
    em = str(tmp_path / "em")
    assert main(["export", str(tmp_path / "r.yaml"), "-f", "easymocap", "-o", em, "--units", "mm"]) == 0
    assert (tmp_path / "em" / "extri.yml").is_file()
    assert main(["import", str(tmp_path / "missing.toml"), "-f", "pose2sim", "-o", str(tmp_path / "x.yaml")]) == 2
    assert "missing.toml: file not found" in capsys.readouterr().err
