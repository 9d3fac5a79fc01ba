"""The real `posecap` CLI in a subprocess: one-line errors with exit code 2, instant help."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml


def posecap(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("posecap: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_version_and_fast_help():
    assert posecap("--version").stdout.startswith("posecap ")
    t0 = time.perf_counter()
    proc = posecap("--help")
    assert proc.returncode == 0 and "run" in proc.stdout
    assert time.perf_counter() - t0 < 3.0
    proc = subprocess.run([sys.executable, "-c", "import sys, pipeline.cli; pipeline.cli.build_parser();"
                           "print(' '.join(m for m in ('torch', 'cv2', 'open3d', 'scipy') if m in sys.modules))"],
                          capture_output=True, text=True)
    assert proc.stdout.strip() == ""


def test_missing_config_file(tmp_path):
    assert_one_line_error(posecap("run", str(tmp_path / "nope.yaml")), "nope.yaml", "config file not found")


def test_config_without_session_dir(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}\n")
    assert_one_line_error(posecap("status", str(cfg)), "key 'session_dir' missing")


def test_unknown_top_level_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"session_dri": "s"}))
    assert_one_line_error(posecap("run", str(cfg)), "unknown key 'session_dri'", "did you mean 'session_dir'")


def test_config_that_is_not_a_mapping(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("just a string\n")
    assert_one_line_error(posecap("dag", str(cfg)), "expected a YAML mapping")


def _crop_config(tmp_path: Path, crop: dict) -> Path:
    cfg = tmp_path / "posecap.yaml"
    cfg.write_text(yaml.safe_dump({"session_dir": "session", "crop": crop}))
    return cfg


def test_unknown_stage_key_suggests_closest(tmp_path):
    cfg = _crop_config(tmp_path, {"codc": "png"})
    assert_one_line_error(posecap("run", str(cfg)), str(cfg), "unknown key 'crop.codc'", "did you mean 'crop.codec'")


def test_wrong_type_names_key_type_and_value(tmp_path):
    cfg = _crop_config(tmp_path, {"jpeg_quality": "high"})
    assert_one_line_error(posecap("run", str(cfg)), "key 'crop.jpeg_quality' expects int, got 'high' (str)")


def test_missing_input_file_named_in_config(tmp_path):
    cfg = _crop_config(tmp_path, {"recordings": {"capture": {"kind": "capture", "sources": [
        {"path": "raw/quad.avi", "grid": [2, 2], "cameras": ["a", "b", "c", "d"]}]}}})
    assert_one_line_error(posecap("run", str(cfg)), "stage 'crop' needs", "raw/quad.avi", "which does not exist")


def test_stage_command_on_missing_session_folder(tmp_path):
    assert_one_line_error(posecap("triangulate", str(tmp_path / "nope")), "session folder not found")


def test_stage_command_with_missing_input(tmp_path):
    (tmp_path / "s").mkdir()
    assert_one_line_error(posecap("triangulate", str(tmp_path / "s")), "stage 'triangulate' needs calib/rig.yaml")
