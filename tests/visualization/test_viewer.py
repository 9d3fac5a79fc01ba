"""``posecap view``: one clear line and exit 2 without a display; the window's scene and playback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.visualization.viewer import build_arg_parser, has_display, main
from tests.visualization.synthetic import write_session

REPO = Path(__file__).resolve().parents[2]


def test_has_display():
    assert not has_display({}, "linux")
    assert has_display({"DISPLAY": ":0"}, "linux")
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({}, "darwin") and has_display({}, "win32")


def test_no_display_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    write_session(tmp_path, T=3, P=1, pose2d=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no display" in err and "posecap visualize" in err


def test_missing_session_files(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "session folder not found" in capsys.readouterr().err
    (tmp_path / "calib").mkdir()
    assert main([str(tmp_path)]) == 2
    assert "rig.yaml" in capsys.readouterr().err


def test_parser():
    args = build_arg_parser().parse_args(["s", "--fps", "25", "--up-axis=-y", "--start-frame", "7"])
    assert (args.session_dir, args.fps, args.up_axis, args.start_frame) == ("s", 25.0, "-y", 7)


SCRIPT = """
import sys
from pipeline.visualization.viewer import build_arg_parser, build_window
args = build_arg_parser().parse_args([sys.argv[1], "--start-frame", "4"])
app, vis, playback = build_window(args, check_display=False)
assert playback.current == 1, playback.current          # stream frame 4 is pose frame 1
playback.on_frame(vis, 3 / 30.0)
assert playback.current == 3 and vis.title.endswith("frame 6"), vis.title
playback.step(+1)(vis)
assert playback.current == 4
playback.step(-10)(vis)
assert playback.current == 0
assert sorted(playback.names)[:2] == ["person0", "person0_joints"], playback.names
print("viewer-ok")
"""


def test_window_scene_and_playback_headless(tmp_path):
    """Build the window (not shown: there is no display here) and drive the playback."""
    write_session(tmp_path, T=6, P=1, pose2d=False)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)
    assert "viewer-ok" in proc.stdout, proc.stderr[-2000:]
