"""Projected ground-truth joints fall on the rendered body parts."""

from __future__ import annotations

import numpy as np

from pipeline.synth.mosaic import split
from pipeline.synth.session import renderers_for
from tests.synth.conftest import read_video


def test_visible_joints_fall_on_rendered_people(calib_dir, calib_gt, calib_scene):
    renderers = renderers_for(calib_scene.options)
    hits = total = 0
    misses_outside = 0
    for path, layout in calib_gt.mosaics.items():
        if calib_gt.recordings[path]["recording"] != "capture":
            continue
        video = read_video(calib_dir / path)
        for cam in layout.cameras:
            cr = renderers.camera(cam)
            # The empty room as the camera records it (same optics, no noise).
            empty = (cr.clean_plate() * cr.gain[..., None] * 255.0)[..., ::-1]
            uv_all = calib_gt.people[f"uv_{cam}"]
            vis_all = calib_gt.people[f"visible_{cam}"]
            for t in range(0, len(video), 3):
                tile = split(video[t], layout)[cam].astype(np.float32)
                diff = np.abs(tile - empty).max(axis=-1)
                uv = uv_all[t][vis_all[t]]
                if uv.size == 0:
                    continue
                x = np.rint(uv[:, 0]).astype(int)
                y = np.rint(uv[:, 1]).astype(int)
                h, w = diff.shape
                ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
                misses_outside += int((~ok).sum())
                hits += int((diff[y[ok], x[ok]] > 12).sum())
                total += int(ok.sum())
    assert misses_outside == 0, "visible joints must lie inside the image"
    assert total > 500, f"too few visible joints checked ({total})"
    assert hits / total > 0.95, f"only {hits}/{total} visible joints land on a rendered body"


def test_visibility_flags_occlusion_and_out_of_view(calib_gt):
    """The sample must exercise the cases: some joints hidden, some out of view, most visible."""
    in_view = hidden = out = 0
    for cam, camera in calib_gt.cameras.items():
        uv = calib_gt.people[f"uv_{cam}"]
        vis = calib_gt.people[f"visible_{cam}"]
        inside = camera.in_image(uv)
        in_view += int(vis.sum())
        hidden += int((inside & ~vis).sum())
        out += int((~inside).sum())
    assert in_view > 0.6 * (in_view + hidden + out)
    assert hidden > 0 and out > 0


def test_joints_have_realistic_proportions(calib_gt):
    joints = calib_gt.people["joints"]
    assert joints.shape[2:] == (17, 3)
    femur = np.linalg.norm(joints[:, :, 11] - joints[:, :, 13], axis=-1)
    tibia = np.linalg.norm(joints[:, :, 13] - joints[:, :, 15], axis=-1)
    upper_arm = np.linalg.norm(joints[:, :, 5] - joints[:, :, 7], axis=-1)
    assert np.all((femur > 0.35) & (femur < 0.5))
    assert np.all((tibia > 0.35) & (tibia < 0.5))
    assert np.all((upper_arm > 0.25) & (upper_arm < 0.38))
    assert np.nanmin(joints[..., 2]) > 0.0, "feet stay above the floor"
    speed = np.linalg.norm(np.diff(joints[:, :, 11:13].mean(axis=2), axis=0), axis=-1) * 30.0
    assert np.all((speed > 0.5) & (speed < 2.0)), "people walk"
