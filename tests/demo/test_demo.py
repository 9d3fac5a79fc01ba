"""`posecap demo` end to end through the real CLI on the committed sample."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from pipeline.demo import deep_merge


def test_deep_merge_overrides_nested_keys():
    base = {"a": {"x": 1, "y": 2}, "b": 1}
    assert deep_merge(base, {"a": {"y": 3}, "c": 4}) == {"a": {"x": 1, "y": 3}, "b": 1, "c": 4}
    assert base == {"a": {"x": 1, "y": 2}, "b": 1}


@pytest.mark.slow
def test_demo_runs_and_reports_against_ground_truth(tmp_path):
    work = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "-q", "demo", str(work)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"crop\s+18 tiles, max crop-rectangle error 0 px", out), out
    focal = [float(x) for x in re.findall(r"focal error ([\d.]+) %", out)]
    assert len(focal) == 6 and max(focal) < 0.5, out
    centres = [float(x) for x in re.findall(r"centre error ([\d.]+) mm", out)]
    rotations = [float(x) for x in re.findall(r"rotation error ([\d.]+) deg", out)]
    assert len(centres) == 6 and max(centres) < 10.0 and max(rotations) < 0.2, out
    # raw mosaic -> 3D with the shipped models: measured 26.7 mm (issue 11's target is 40 mm), and
    # exactly the two people of the ground truth, each one track over the whole take
    found = re.search(r"triangulate\s+MPJPE ([\d.]+) mm over \d+ joints, (\d+) people found \((\d+) in", out)
    assert float(found.group(1)) < 40.0, out
    assert found.group(2) == found.group(3) == "2", out
    pose3d = yaml.safe_load((work / "session" / "pose3d" / "pose3d.yaml").read_text())
    frames = pose3d["frames"]
    assert [(p["first_frame"], p["last_frame"], p["frames_visible"]) for p in pose3d["people"]] == \
        [(0, frames - 1, frames)] * 2, pose3d["people"]
    # a second run finds everything up to date and reruns nothing
    again = subprocess.run([sys.executable, "-m", "pipeline.cli", "-q", "demo", str(work)],
                           capture_output=True, text=True, timeout=600)
    assert "stages run: -;" in again.stdout, again.stdout
