"""Offscreen open3d renders: skeletons and camera frusta land where the virtual camera projects them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.export.pose3d import load_pose3d
from pipeline.geometry.rig import Rig
from pipeline.visualization.render3d import RenderOptions, SceneRenderer, look_at_camera, render_video
from pipeline.visualization.scene3d import BACKGROUND_RGB, FRUSTUM_RGB, frustum_lines, person_color, scene_layout
from tests.visualization.synthetic import write_session

SIZE = (320, 240)


def _rgb255(c) -> np.ndarray:
    return np.round(np.asarray(c) * 255).astype(int)


def _has_color(img: np.ndarray, uv: np.ndarray, rgb: np.ndarray, radius: int = 1, tol: int = 3) -> bool:
    """Whether any pixel within ``radius`` of ``uv`` has colour ``rgb`` (within ``tol`` per channel)."""
    x, y = int(round(uv[0])), int(round(uv[1]))
    patch = img[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].astype(int)
    return bool((np.abs(patch - rgb).max(axis=-1) <= tol).any())


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("render_session")
    write_session(root, T=6, P=2, pose2d=False)
    rig = Rig.load(root / "calib" / "rig.yaml")
    pose = load_pose3d(root / "pose3d")
    layout = scene_layout(rig, pose.joints, pose.skeleton)
    opts = RenderOptions(size=SIZE, trail_frames=3, line_width=4.0, point_size=6.0, labels=False)
    try:
        renderer = SceneRenderer(rig, pose, layout, opts, fps=30.0)
    except Exception as exc:  # pragma: no cover - only where Vulkan is missing
        pytest.skip(f"no offscreen rendering here: {exc}")
    return root, rig, pose, layout, renderer


def test_layout_floor_and_up(scene):
    _, _, pose, layout, _ = scene
    assert np.array_equal(layout.up, [0.0, 0.0, 1.0])
    assert layout.floor_height == 0.0  # a floor-frame world ("floor") with Z up
    assert layout.radius > 3.9  # holds the cameras on their 4 m circle


def test_skeleton_pixels_have_identity_colour(scene):
    _, _, pose, _, renderer = scene
    index = 4
    img, cam = renderer.render(index)
    assert img.shape == (SIZE[1], SIZE[0], 3) and img.dtype == np.uint8
    checked = 0
    for p in range(pose.num_people):
        want = _rgb255(person_color(p))
        j = pose.joints[index, p]
        # midpoints of the two shins and thighs: on a limb, away from other people's joints
        for a, b in ((13, 15), (14, 16), (11, 13), (12, 14)):
            uv = cam.project((j[a] + j[b]) / 2)
            if not cam.in_image(uv):
                continue
            assert _has_color(img, uv, want), f"person {p} limb {a}-{b} at {uv} is {img[int(uv[1]), int(uv[0])]}"
            checked += 1
        uv_joint = cam.project(j[0])
        assert _has_color(img, uv_joint, want), f"person {p} nose at {uv_joint}"
    assert checked >= 6
    # away from everything, the background
    assert np.array_equal(img[2, 2], _rgb255(BACKGROUND_RGB))
    bg = (np.abs(img.astype(int) - _rgb255(BACKGROUND_RGB)).max(-1) == 0).mean()
    assert bg > 0.5


def test_frusta_appear_at_the_cameras(scene):
    _, rig, _, _, renderer = scene
    img, cam = renderer.render_rig()
    want = _rgb255(FRUSTUM_RGB)
    depth = float(np.clip(0.12 * renderer.layout.radius, 0.15, 0.6))
    pts, idx, _ = frustum_lines(rig, depth)
    for k, c in enumerate(rig.cameras):
        apex = cam.project(c.center_world)
        assert cam.in_image(apex)
        assert _has_color(img, apex, want, radius=2), f"{c.name} apex at {apex}"
        # the middle of one base edge of its pyramid
        base = pts[k * 8 + 1: k * 8 + 5]
        uv = cam.project((base[0] + base[1]) / 2)
        assert _has_color(img, uv, want, radius=2), f"{c.name} frustum edge at {uv}"
    people_rgb = [_rgb255(person_color(p)) for p in range(2)]
    assert not any((np.abs(img.astype(int) - c).max(-1) <= 3).any() for c in people_rgb)  # no people drawn


def test_orbit_moves_the_camera(scene):
    _, rig, _, layout, renderer = scene
    from pipeline.visualization.render3d import virtual_camera

    orbit = RenderOptions(size=SIZE, orbit=True, orbit_deg_per_s=90.0)
    a, b = virtual_camera(layout, rig, orbit, 0.0), virtual_camera(layout, rig, orbit, 1.0)
    assert np.linalg.norm(a.center_world - b.center_world) > 1.0
    # both look at the same point, at the same height
    assert a.center_world @ layout.up == pytest.approx(b.center_world @ layout.up, abs=1e-9)
    for cam in (a, b):  # every camera and the people stay in view
        assert cam.in_image(cam.project(layout.frame_points)).all()


def test_video_frame_count(scene, tmp_path):
    _, _, pose, _, renderer = scene
    n = render_video(renderer, tmp_path / "scene.mp4", [0, 2, 3, 5], fps=15.0, show_progress=False)
    cap = cv2.VideoCapture(str(tmp_path / "scene.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert n == count == 4
    assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == SIZE[0]


def test_look_at_camera_centre_projects_to_image_centre():
    cam = look_at_camera(np.array([3.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0]),
                         (320, 240), 60.0)
    np.testing.assert_allclose(cam.project(np.array([0.0, 0.0, 1.0])), [159.5, 119.5], atol=1e-9)
    above = cam.project(np.array([0.0, 0.0, 1.5]))
    assert above[1] < 119.5  # up in the world is up in the image
