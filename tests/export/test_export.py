"""Export formats: files read back (with the library and with independent readers) equal the data."""

from __future__ import annotations

import csv
import json
import struct

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline.artifacts import read_yaml
from pipeline.config import from_mapping
from pipeline.errors import ConfigError
from pipeline.export.bvh import BVH_JOINT_OF, kabsch, rotation_between
from pipeline.export.c3d import read_c3d
from pipeline.export.csv_anipose import anipose_columns, read_anipose_csv
from pipeline.export.pose3d import estimate_up, load_pose3d, opensim_marker_name, rotation_to_up
from pipeline.export.trc import read_trc
from pipeline.skeleton import COCO17
from stages.export import STAGE, ExportParams
from tests.visualization.synthetic import articulated_people, run_stage, write_session

Z_TO_Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # world Z up -> file Y up


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A session with 2 people, person 1 missing in the first 3 frames and one joint dropped, exported."""
    root = tmp_path_factory.mktemp("export_session")
    write_session(root, T=15, P=2, pose2d=False)
    pose_path = root / "pose3d" / "skeletons.npz"
    with np.load(pose_path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["joints"][:3, 1] = np.nan
    arrays["joints"][7, 0, 9] = np.nan  # left wrist of person 0 in frame 7
    from pipeline.artifacts import write_npz

    write_npz(pose_path, **arrays)
    report = run_stage(STAGE, root)
    assert report.ok
    return root, arrays["joints"].astype(np.float64), arrays["frame_index"]


def test_manifest(exported):
    root, joints, _ = exported
    man = read_yaml(root / "export" / "export.yaml", "export@1")
    assert man["units"] == "mm" and man["fps"] == 30.0 and man["people"] == [0, 1]
    assert man["world_up"] == [0.0, 0.0, 1.0]
    np.testing.assert_allclose(man["frames"]["trc"]["R_file_from_world"], Z_TO_Y, atol=1e-9)
    assert sorted(man["files"]) == ["bvh", "c3d", "csv", "json", "trc"]


def test_trc_round_trip_mm(exported):
    root, joints, fi = exported
    expected = joints @ Z_TO_Y.T * 1000.0
    for p, first in ((0, 0), (1, 3)):
        trc = read_trc(root / "export" / "trc" / f"person{p}.trc")
        assert trc.units == "mm" and trc.fps == 30.0
        assert trc.marker_names == tuple(opensim_marker_name(n) for n in COCO17.joint_names)
        assert trc.marker_names[:3] == ("Nose", "LEye", "REye")
        np.testing.assert_array_equal(trc.frame_numbers, fi[first:] + 1)
        np.testing.assert_allclose(trc.times, fi[first:] / 30.0, atol=1e-6)
        err = np.nanmax(np.abs(trc.positions - expected[first:, p]))
        assert err < 1e-3  # well under a millimetre
        assert np.array_equal(np.isnan(trc.positions), np.isnan(expected[first:, p]))
    # independent reader: the data block is a plain tab-separated table after 6 header lines
    table = np.genfromtxt(root / "export" / "trc" / "person0.trc", delimiter="\t", skip_header=6)
    assert table.shape == (15, 2 + 17 * 3)
    np.testing.assert_allclose(table[:, 2:].reshape(15, 17, 3), expected[:, 0], atol=1e-3)


def _independent_c3d_points(path):
    """Parse a float C3D file from its header alone: (frames, points, 4) float32 and the rate."""
    raw = path.read_bytes()
    words = struct.unpack("<12H", raw[:24])
    n_points, first, last, data_block = words[1], words[3], words[4], words[8]
    scale = struct.unpack("<f", raw[12:16])[0]
    rate = struct.unpack("<f", raw[20:24])[0]
    assert scale < 0  # float storage
    n = last - first + 1
    start = (data_block - 1) * 512
    data = np.frombuffer(raw, dtype="<f4", count=n * n_points * 4, offset=start).reshape(n, n_points, 4)
    return data, rate, first


def test_c3d_round_trip_mm(exported):
    root, joints, fi = exported
    expected = (joints * 1000.0)[:, [0, 1]].reshape(15, -1, 3)  # world is already Z up
    data = read_c3d(root / "export" / "pose3d.c3d")
    assert data.fps == 30.0 and data.units == "mm" and data.first_frame == fi[0] + 1
    assert data.labels[:2] == ("P0:Nose", "P0:LEye") and data.labels[17] == "P1:Nose"
    assert np.array_equal(np.isnan(data.positions), np.isnan(expected))
    assert np.nanmax(np.abs(data.positions - expected)) < 0.01
    assert np.all(data.views[np.isfinite(data.positions[..., 0])] == 3)
    pts, rate, first = _independent_c3d_points(root / "export" / "pose3d.c3d")
    assert rate == 30.0 and first == fi[0] + 1
    valid = pts[..., 3] >= 0
    assert np.array_equal(valid, np.isfinite(expected).all(-1))
    assert np.max(np.abs(pts[..., :3][valid] - expected[valid])) < 0.01


def test_csv_anipose_layout(exported):
    root, joints, fi = exported
    path = root / "export" / "anipose" / "person0.csv"
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert header[:6] == ["nose_x", "nose_y", "nose_z", "nose_error", "nose_ncams", "nose_score"]
    assert header[-13:] == ["M_00", "M_01", "M_02", "M_10", "M_11", "M_12", "M_20", "M_21", "M_22",
                            "center_0", "center_1", "center_2", "fnum"]
    assert header == anipose_columns(COCO17.joint_names) and len(header) == 17 * 6 + 13
    body = np.array([[float(v) if v else np.nan for v in r] for r in rows[1:]])
    assert body.shape == (15, len(header))
    xyz = body[:, :17 * 6].reshape(15, 17, 6)[..., :3]
    np.testing.assert_allclose(xyz, joints[:, 0] * 1000.0, atol=1e-6)
    assert rows[8][header.index("left_wrist_x")] == "" and rows[8][header.index("left_wrist_ncams")] == ""
    np.testing.assert_array_equal(body[:, -1], fi)
    np.testing.assert_array_equal(body[0, -13:-4].reshape(3, 3), np.eye(3))
    back = read_anipose_csv(path)
    assert back.joint_names == COCO17.joint_names
    np.testing.assert_allclose(back.points, joints[:, 0] * 1000.0, atol=1e-6)
    assert np.nanmax(back.error) == pytest.approx(1.25) and np.nanmax(back.ncams) == 3
    assert read_anipose_csv(root / "export" / "anipose" / "person1.csv").fnum[0] == fi[3]


def test_json_per_frame_and_person(exported):
    root, joints, fi = exported
    frames = json.loads((root / "export" / "json" / "frames.json").read_text())
    assert frames["units"] == "mm" and len(frames["frames"]) == 15
    assert [p["id"] for p in frames["frames"][0]["people"]] == [0]
    f7 = frames["frames"][7]
    assert f7["frame"] == int(fi[7]) and f7["people"][0]["joints"][9] is None
    np.testing.assert_allclose(f7["people"][1]["joints"][0], joints[7, 1, 0] * 1000.0, atol=1e-3)
    person = json.loads((root / "export" / "json" / "person1.json").read_text())
    assert person["frames"] == [int(f) for f in fi[3:]]
    np.testing.assert_allclose(person["joints"]["right_ankle"], joints[3:, 1, 16] * 1000.0, atol=1e-3)


def _parse_bvh(text):
    """An independent BVH reader: joints with parent, offset, channels; the motion table."""
    tokens = text.split()
    i, stack, joints, order = 0, [], {}, []
    while tokens[i] != "MOTION":
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            name = tokens[i + 1]
            joints[name] = {"parent": stack[-1] if stack else None}
            order.append(name)
            stack.append(name)
            i += 2
        elif tok == "End":
            stack.append("__end__")
            i += 2
        elif tok == "OFFSET":
            if stack[-1] != "__end__":
                joints[stack[-1]]["offset"] = np.array([float(x) for x in tokens[i + 1:i + 4]])
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            joints[stack[-1]]["channels"] = tokens[i + 2:i + 2 + n]
            i += 2 + n
        elif tok == "}":
            stack.pop()
            i += 1
        else:
            i += 1
    n_frames = int(tokens[i + 2])
    values = np.array([float(x) for x in tokens[i + 6:]]).reshape(n_frames, -1)
    return joints, order, values


def _bvh_fk(joints, order, values):
    """Positions (F, 3) of every joint: p = p_parent + G_parent @ offset, G = G_parent @ R(channels)."""
    col, G, P = 0, {}, {}
    for name in order:
        j = joints[name]
        rot_axes = "".join(c[0] for c in j["channels"] if c.endswith("rotation"))
        n = len(j["channels"])
        chan = values[:, col:col + n]
        col += n
        angles = chan[:, [k for k, c in enumerate(j["channels"]) if c.endswith("rotation")]]
        R = Rotation.from_euler(rot_axes.upper(), angles, degrees=True).as_matrix()
        if j["parent"] is None:
            P[name] = chan[:, :3] + j["offset"]
            G[name] = R
        else:
            par = j["parent"]
            P[name] = P[par] + np.einsum("fij,j->fi", G[par], j["offset"])
            G[name] = G[par] @ R
    return P


def test_bvh_forward_kinematics_reproduces_rigid_joints(exported):
    root, joints, _ = exported
    for p, first in ((0, 0), (1, 3)):
        text = (root / "export" / "bvh" / f"person{p}.bvh").read_text()
        tree, order, values = _parse_bvh(text)
        assert order[0] == "Hips" and values.shape[0] == 15 - first
        pos = _bvh_fk(tree, order, values)
        expected = joints[first:, p] @ Z_TO_Y.T * 1000.0
        for j, name in enumerate(COCO17.joint_names):
            ok = np.isfinite(expected[:, j]).all(axis=1)
            err = np.abs(pos[BVH_JOINT_OF[name]][ok] - expected[ok, j]).max()
            assert err < 1.0, f"person {p} {name}: FK off by {err:.4f} mm"


def test_bvh_fk_rigid_bones_other_rotation_order(tmp_path):
    from pipeline.export.bvh import write_bvh

    pts = articulated_people(20, 1, seed=5, amplitude=1.2)[:, 0] * 1000.0
    write_bvh(tmp_path / "p.bvh", pts, COCO17.joint_names, 1 / 30, rotation_order="XYZ")
    tree, order, values = _parse_bvh((tmp_path / "p.bvh").read_text())
    pos = _bvh_fk(tree, order, values)
    worst = max(np.abs(pos[BVH_JOINT_OF[n]] - pts[:, j]).max() for j, n in enumerate(COCO17.joint_names))
    assert worst < 1.0


def test_rotation_helpers():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    R = rotation_between(a, b)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", R, a / np.linalg.norm(a, axis=1, keepdims=True)),
                               b / np.linalg.norm(b, axis=1, keepdims=True), atol=1e-9)
    R2 = rotation_between(np.array([[0.0, 1.0, 0.0]]), np.array([[0.0, -1.0, 0.0]]))
    np.testing.assert_allclose(R2[0] @ [0, 1, 0], [0, -1, 0], atol=1e-12)
    assert np.linalg.det(R2[0]) == pytest.approx(1.0)
    true = Rotation.random(4, random_state=1).as_matrix()
    rest = rng.normal(size=(3, 3))
    np.testing.assert_allclose(kabsch(rest, np.einsum("tij,nj->tni", true, rest)), true, atol=1e-9)


def test_up_axis_estimation_and_rotation():
    joints = articulated_people(10, 2, seed=1)
    assert np.array_equal(estimate_up(joints, COCO17), [0.0, 0.0, 1.0])
    tilt = Rotation.from_euler("x", 135, degrees=True).as_matrix()  # like a camera-0 world: no axis up
    up = estimate_up(joints @ tilt.T, COCO17)
    assert np.dot(up, tilt @ [0.0, 0.0, 1.0]) > np.cos(np.deg2rad(15))  # the synthetic people lean
    for target in ("y", "z"):
        for u in (up, np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])):
            R = rotation_to_up(u, target)
            np.testing.assert_allclose(R @ u, np.eye(3)["xyz".index(target)], atol=1e-12)
            assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation_to_up(np.array([0.0, 0.0, 1.0]), "y"), Z_TO_Y, atol=1e-12)
    assert np.array_equal(estimate_up(joints, COCO17, "-y"), [0.0, -1.0, 0.0])


def test_params_validation():
    with pytest.raises(ConfigError, match="formats"):
        from_mapping(ExportParams, {"formats": ["trc", "fbx"]}, "cfg.yaml")
    with pytest.raises(ConfigError, match="units"):
        from_mapping(ExportParams, {"units": "inch"}, "cfg.yaml")
    p = from_mapping(ExportParams, {"formats": ["csv"], "units": "m", "fps": 50}, "cfg.yaml")
    assert p.fps == 50.0


def test_only_chosen_formats_and_units(tmp_path):
    write_session(tmp_path, T=6, P=1, pose2d=False)
    report = run_stage(STAGE, tmp_path, {"formats": ["csv", "trc"], "units": "m", "fps": 50.0})
    assert report.ok
    files = sorted(p.relative_to(tmp_path / "export").as_posix() for p in (tmp_path / "export").rglob("*")
                   if p.is_file())
    assert files == ["anipose/person0.csv", "export.yaml", "trc/person0.trc"]
    trc = read_trc(tmp_path / "export" / "trc" / "person0.trc")
    pose = load_pose3d(tmp_path / "pose3d")
    assert trc.units == "m" and trc.fps == 50.0
    np.testing.assert_allclose(trc.positions, pose.joints[:, 0] @ Z_TO_Y.T, atol=1e-6)
