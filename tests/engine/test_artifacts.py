"""Artifact I/O: schema checks, atomic writes, array specs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.artifacts import ArraySpec, atomic_path, read_npz, read_yaml, write_npz, write_yaml
from pipeline.errors import ArtifactError


def test_yaml_round_trip_with_numpy_values(tmp_path):
    p = tmp_path / "r.yaml"
    write_yaml(p, {"K": np.eye(3), "rms": np.float32(0.25), "names": ("a", "b")}, "rig@1")
    text = p.read_text()
    assert text.startswith("schema: posecap/rig@1\n") and "!!" not in text
    data = read_yaml(p, "rig@1")
    assert data["K"][1] == [0.0, 1.0, 0.0] and data["rms"] == 0.25 and data["names"] == ["a", "b"]


@pytest.mark.parametrize("text, message", [
    ("K: 1\n", "field 'schema' missing or not a string; expected 'posecap/rig@1'"),
    ("schema: posecap/intrinsics@1\n", "expected a 'rig' artifact"),
    ("schema: posecap/rig@7\n", "newer than this posecap understands"),
    ("- 1\n", "expected a YAML mapping at the top level, got list"),
    ("schema: rig\n", "field 'schema' is 'rig'"),
])
def test_schema_errors_name_file_and_field(tmp_path, text, message):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    with pytest.raises(ArtifactError, match=message) as info:
        read_yaml(p, "rig@1")
    assert str(p) in str(info.value)


def test_python_tags_are_refused(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("schema: posecap/rig@1\nx: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ArtifactError, match="invalid YAML"):
        read_yaml(p, "rig@1")


def test_atomic_path_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(ValueError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise ValueError("boom")
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_npz_specs(tmp_path):
    p = tmp_path / "k.npz"
    write_npz(p, keypoints=np.zeros((5, 2, 17, 3), np.float32), frame_index=np.arange(5))
    spec = {"keypoints": ArraySpec(("T", None, 17, 3)), "frame_index": ArraySpec(("T",), kind="iu")}
    assert read_npz(p, spec)["keypoints"].shape == (5, 2, 17, 3)
    write_npz(p, keypoints=np.zeros((5, 2, 16, 3), np.float32), frame_index=np.arange(4))
    with pytest.raises(ArtifactError, match=r"array 'keypoints' has shape \(5, 2, 16, 3\); expected \(T, \*, 17, 3\)"):
        read_npz(p, spec)
    write_npz(p, keypoints=np.full((4, 2, 17, 3), np.inf, np.float32), frame_index=np.arange(4))
    with pytest.raises(ArtifactError, match="contains \\+-inf"):
        read_npz(p, spec)
    p.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a readable .npz"):
        read_npz(p, spec)


def test_written_files_get_normal_permissions(tmp_path):
    import os

    p = tmp_path / "r.yaml"
    write_yaml(p, {"a": 1}, "x@1")
    mask = os.umask(0)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)
