"""A calibration report a user can open and judge at a glance: one PNG and one self-contained HTML page.

The PNG (``calibration_report.png``) has three panels, drawn with OpenCV:

- **top view**: the floor around the action, shaded by how many cameras see each point at chest
  height (1 m above the floor; red 0-1, amber 2, greens 3+), the cameras as pyramids pointing
  where they look, with their names, and the people's ground tracks when pose3d is given;
- **side view**: the cameras' heights and tilts against the floor;
- **per-camera error**: a bar per camera of its calibration RMS reprojection error (from
  ``calib/report.yaml`` when present, else ``reprojection_rms_px`` in rig.yaml), with the
  0.5 px (good) and 1 px (poor) marks.

The HTML page (``calibration_report.html``) embeds that PNG (base64, so it travels as one file),
an optional open3d render of the rig, a verdict line, and a table per camera: image size, focal
length, principal point, distortion, position, height, distance to the action, RMS / p95 error,
views used, the share of the floor area it covers, and a status.
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.artifacts import atomic_path, load_yaml_file, read_yaml
from pipeline.errors import ArtifactError
from pipeline.geometry.rig import Rig
from pipeline.visualization.draw import person_bgr, put_label, write_png
from pipeline.visualization.scene3d import SceneLayout

log = logging.getLogger("posecap")

CHEST_HEIGHT_M = 1.0
GRID_CELLS = 90
GOOD_RMS_PX = 0.5
POOR_RMS_PX = 1.0
PANEL = 560
VIEW_MARGIN = 1.12


@dataclass(frozen=True)
class CameraFigures:
    """What the report says about one camera."""

    name: str
    rms_px: float | None
    p95_px: float | None
    views_used: int | None
    coverage: float  # share of floor cells (chest height) this camera sees
    height_m: float
    distance_m: float
    tilt_deg: float  # how far the optical axis points below the horizon


def _errors(rig_path: Path, report_path: Path | None, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per-camera error figures: calib/report.yaml first, then rig.yaml's reprojection_rms_px."""
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    raw = load_yaml_file(rig_path)
    for n in names:
        rms = ((raw.get("cameras") or {}).get(n) or {}).get("reprojection_rms_px")
        if isinstance(rms, (int, float)):
            out[n]["rms_px"] = float(rms)
    if report_path is not None and report_path.is_file():
        try:
            rep = read_yaml(report_path, "rig_report@1")
        except ArtifactError as exc:
            log.warning("visualize: ignoring %s", exc)
            return out
        for n, entry in (rep.get("cameras") or {}).items():
            if n in out and isinstance(entry, dict):
                for key in ("rms_px", "p95_px", "views_used"):
                    if isinstance(entry.get(key), (int, float)):
                        out[n][key] = entry[key]
    return out


def coverage_counts(rig: Rig, layout: SceneLayout, cells: int = GRID_CELLS,
                    height_m: float = CHEST_HEIGHT_M) -> tuple[np.ndarray, np.ndarray]:
    """How many cameras see each cell centre of a floor grid, ``height_m`` above the floor.

    Returns:
        counts (cells, cells) int over (row = e2 from +r down to -r, col = e1 from -r to +r), and
        seen (C, cells, cells) bool per camera.
    """
    r = layout.radius * VIEW_MARGIN
    ticks = (np.arange(cells) + 0.5) / cells * 2 * r - r
    e1, e2 = layout.horizontal
    g1, g2 = np.meshgrid(ticks, ticks[::-1])
    pts = (layout.center + layout.up * height_m)[None, None] + g1[..., None] * e1 + g2[..., None] * e2
    seen = np.stack([cam.in_image(cam.project(pts)) for cam in rig.cameras])
    return seen.sum(axis=0), seen


def _coverage_colors(counts: np.ndarray) -> np.ndarray:
    lut = np.array([[70, 70, 200], [110, 140, 235], [60, 190, 240], [120, 200, 120], [60, 170, 60], [30, 130, 30]],
                   dtype=np.uint8)  # BGR: 0, 1, 2, 3, 4, 5+
    return lut[np.clip(counts, 0, len(lut) - 1)]


def _top_view(rig: Rig, layout: SceneLayout, counts: np.ndarray, tracks: list[np.ndarray] | None) -> np.ndarray:
    size = PANEL
    img = cv2.resize(_coverage_colors(counts), (size, size), interpolation=cv2.INTER_NEAREST)
    r = layout.radius * VIEW_MARGIN
    e1, e2 = layout.horizontal

    def px(p: np.ndarray) -> np.ndarray:
        d = p - layout.center
        return np.stack([(d @ e1 + r) / (2 * r) * size, (r - d @ e2) / (2 * r) * size], axis=-1)

    step = 0.5 if r <= 6 else 1.0
    for k in np.arange(-np.floor(r / step), np.floor(r / step) + 1) * step:
        a = int(round((k + r) / (2 * r) * size))
        cv2.line(img, (a, 0), (a, size), (235, 235, 235), 1)
        cv2.line(img, (0, a), (size, a), (235, 235, 235), 1)
    for p, tr in enumerate(tracks or []):
        uv = px(tr)
        ok = np.isfinite(uv).all(axis=1)
        pts = np.round(uv[ok]).astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, person_bgr(p), 2, cv2.LINE_AA)
    for cam in rig.cameras:
        c = px(cam.center_world)
        fwd = cam.R[2] - (cam.R[2] @ layout.up) * layout.up
        right = cam.R[0] - (cam.R[0] @ layout.up) * layout.up
        L = 0.08 * size
        tip = c + L * np.array([fwd @ e1, -(fwd @ e2)]) / max(np.linalg.norm(fwd), 1e-9)
        side = 0.5 * L * np.array([right @ e1, -(right @ e2)]) / max(np.linalg.norm(right), 1e-9)
        tri = np.round(np.stack([c, tip + side, tip - side])).astype(np.int32)
        cv2.fillConvexPoly(img, tri, (40, 40, 40), cv2.LINE_AA)
        put_label(img, cam.name, (c[0] + 6, c[1] - 6), (255, 255, 255), 0.45)
    put_label(img, f"top view: cameras seeing each point {CHEST_HEIGHT_M:.0f} m above the floor "
                   f"(grid {step:g} m)", (6, 18), (255, 255, 255), 0.42)
    legend = [("0", 0), ("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5+", 5)]
    for i, (txt, n) in enumerate(legend):
        x = 8 + i * 44
        cv2.rectangle(img, (x, size - 24), (x + 18, size - 8), tuple(int(v) for v in _coverage_colors(np.array(n))),
                      -1)
        cv2.rectangle(img, (x, size - 24), (x + 18, size - 8), (0, 0, 0), 1)
        put_label(img, txt, (x + 21, size - 9), (0, 0, 0), 0.4, bg=(255, 255, 255))
    return img


def _side_view(rig: Rig, layout: SceneLayout) -> np.ndarray:
    w, h = PANEL, PANEL // 2
    img = np.full((h, w, 3), 250, dtype=np.uint8)
    e1 = layout.horizontal[0]
    heights = np.array([c.center_world @ layout.up - layout.floor_height for c in rig.cameras])
    top = max(2.2, float(heights.max()) * 1.15)
    r = layout.radius * VIEW_MARGIN

    def px(x: float, z: float) -> tuple[int, int]:
        return int(round((x + r) / (2 * r) * w)), int(round(h - 20 - z / top * (h - 40)))

    cv2.line(img, px(-r, 0), px(r, 0), (90, 90, 90), 2)
    for z in np.arange(0.5, top, 0.5):
        a, b = px(-r, z), px(r, z)
        cv2.line(img, a, b, (225, 225, 225), 1)
        put_label(img, f"{z:g} m", (2, b[1] - 2), (120, 120, 120), 0.35, bg=None)
    person = px(0, 1.75)
    cv2.line(img, px(0, 0), person, (150, 150, 150), 3)
    for cam, hgt in zip(rig.cameras, heights):
        x = float((cam.center_world - layout.center) @ e1)
        c = np.array(px(x, float(hgt)), dtype=np.float64)
        axis = cam.R[2]
        d = np.array([axis @ e1, -(axis @ layout.up)])
        d = d / max(np.linalg.norm(d), 1e-9)
        cv2.arrowedLine(img, tuple(np.round(c).astype(int)), tuple(np.round(c + 40 * d).astype(int)), (40, 40, 40),
                        2, cv2.LINE_AA, tipLength=0.3)
        cv2.circle(img, tuple(np.round(c).astype(int)), 5, (40, 40, 40), -1, cv2.LINE_AA)
        put_label(img, cam.name, (c[0] + 6, c[1] - 8), (40, 40, 40), 0.4, bg=None)
    put_label(img, "side view: camera heights and tilt (grey bar: a 1.75 m person)", (6, 16), (0, 0, 0), 0.42,
              bg=None)
    return img


def _error_bars(figs: list[CameraFigures]) -> np.ndarray:
    w, h = PANEL, PANEL // 2
    img = np.full((h, w, 3), 250, dtype=np.uint8)
    values = [f.rms_px for f in figs]
    known = [v for v in values if v is not None]
    top = max(1.5, max(known) * 1.2) if known else 1.5
    left, bottom = 50, h - 40

    def y(v: float) -> int:
        return int(round(bottom - v / top * (bottom - 30)))

    for mark, color in ((GOOD_RMS_PX, (60, 170, 60)), (POOR_RMS_PX, (60, 60, 220))):
        cv2.line(img, (left, y(mark)), (w - 10, y(mark)), color, 1, cv2.LINE_AA)
        put_label(img, f"{mark:g} px", (4, y(mark) + 4), color, 0.38, bg=None)
    n = max(1, len(figs))
    bw = (w - left - 10) / n
    for i, f in enumerate(figs):
        x0 = int(left + i * bw + bw * 0.15)
        x1 = int(left + (i + 1) * bw - bw * 0.15)
        if f.rms_px is None:
            put_label(img, "n/a", (x0, bottom - 4), (120, 120, 120), 0.38, bg=None)
        else:
            color = (60, 170, 60) if f.rms_px <= GOOD_RMS_PX else (40, 170, 230) if f.rms_px <= POOR_RMS_PX \
                else (60, 60, 220)
            cv2.rectangle(img, (x0, y(f.rms_px)), (x1, bottom), color, -1)
            put_label(img, f"{f.rms_px:.2f}", (x0, y(f.rms_px) - 4), (0, 0, 0), 0.38, bg=None)
        put_label(img, f.name, (x0, bottom + 16), (0, 0, 0), 0.38, bg=None)
    cv2.line(img, (left, bottom), (w - 10, bottom), (0, 0, 0), 1)
    put_label(img, "calibration RMS reprojection error per camera, px", (6, 16), (0, 0, 0), 0.42, bg=None)
    return img


def _status(f: CameraFigures) -> str:
    if f.coverage < 0.05:
        return "poor: sees little of the capture area"
    if f.rms_px is None:
        return "unknown error"
    if f.rms_px <= GOOD_RMS_PX:
        return "good"
    if f.rms_px <= POOR_RMS_PX:
        return "fair"
    return "poor: recalibrate"


def _img_tag(img: np.ndarray, alt: str) -> str:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        return ""
    data = base64.b64encode(buf.tobytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def build_report(rig_path: Path, rig: Rig, layout: SceneLayout, report_path: Path | None = None,
                 tracks: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[CameraFigures], dict[str, Any]]:
    """Compute the figures and draw the report PNG.

    Args:
        rig_path: rig.yaml (read again for ``reprojection_rms_px``).
        rig: the loaded rig.
        layout: where the floor and the action are.
        report_path: ``calib/report.yaml`` (optional).
        tracks: per person, (T, 3) ground positions (mid-hip) to draw in the top view.

    Returns:
        (BGR image, per-camera figures, overall figures).
    """
    counts, seen = coverage_counts(rig, layout)
    errs = _errors(rig_path, report_path, rig.names)
    figs = []
    for k, cam in enumerate(rig.cameras):
        axis = cam.R[2]
        e = errs[cam.name]
        figs.append(CameraFigures(
            name=cam.name, rms_px=e.get("rms_px"), p95_px=e.get("p95_px"),
            views_used=int(e["views_used"]) if "views_used" in e else None,
            coverage=float(seen[k].mean()),
            height_m=float(cam.center_world @ layout.up - layout.floor_height),
            distance_m=float(np.linalg.norm(cam.center_world - (layout.center + layout.up * CHEST_HEIGHT_M))),
            tilt_deg=float(np.degrees(np.arcsin(np.clip(-(axis @ layout.up), -1, 1)))),
        ))
    overall = {
        "area_seen_by_2_or_more": float((counts >= 2).mean()),
        "area_seen_by_3_or_more": float((counts >= 3).mean()),
        "area_side_m": 2 * layout.radius * VIEW_MARGIN,
    }
    top = _top_view(rig, layout, counts, tracks)
    right = np.concatenate([_side_view(rig, layout), _error_bars(figs)], axis=0)
    img = np.concatenate([top, right], axis=1)
    return img, figs, overall


def write_report(out_dir: Path, rig_path: Path, rig: Rig, layout: SceneLayout, report_path: Path | None = None,
                 tracks: list[np.ndarray] | None = None, render_png: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``calibration_report.png`` and ``calibration_report.html`` into ``out_dir``; returns a summary.

    ``render_png`` is an optional BGR 3D render of the rig to embed in the page.
    """
    img, figs, overall = build_report(rig_path, rig, layout, report_path, tracks)
    write_png(out_dir / "calibration_report.png", img)
    rows = []
    for cam, f in zip(rig.cameras, figs):
        k = cam.dist.tolist() + [0.0] * 2
        pos = cam.center_world
        status = _status(f)
        cls = "good" if status == "good" else "fair" if status == "fair" else "poor"
        rows.append(
            f"<tr><td>{html.escape(f.name)}</td><td>{cam.image_size[0]}x{cam.image_size[1]}</td>"
            f"<td>{cam.K[0, 0]:.1f} / {cam.K[1, 1]:.1f}</td><td>{cam.K[0, 2]:.1f}, {cam.K[1, 2]:.1f}</td>"
            f"<td>{k[0]:+.3f}, {k[1]:+.3f}</td><td>{pos[0]:+.2f}, {pos[1]:+.2f}, {pos[2]:+.2f}</td>"
            f"<td>{f.height_m:.2f}</td><td>{f.distance_m:.2f}</td><td>{f.tilt_deg:.0f}&deg;</td>"
            f"<td>{_fmt(f.rms_px, '.3f')}</td><td>{_fmt(f.p95_px, '.3f')}</td>"
            f"<td>{'n/a' if f.views_used is None else f.views_used}</td><td>{100 * f.coverage:.0f}%</td>"
            f"<td class='{cls}'>{html.escape(status)}</td></tr>")
    known = [f.rms_px for f in figs if f.rms_px is not None]
    worst = max(known) if known else None
    verdict = (
        f"{len(figs)} cameras; worst calibration RMS {_fmt(worst, '.3f')} px; "
        f"{100 * overall['area_seen_by_2_or_more']:.0f}% of the {overall['area_side_m']:.1f} m square around the "
        f"action is seen by 2+ cameras at chest height, {100 * overall['area_seen_by_3_or_more']:.0f}% by 3+."
    )
    render_html = f"<h2>3D view</h2>{_img_tag(render_png, '3D view of the rig')}" if render_png is not None else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>posecap calibration report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin-top: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child, td:last-child {{ text-align: left; }}
.good {{ background: #dff3df; }} .fair {{ background: #fff1cc; }} .poor {{ background: #f8d7d7; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
</style></head><body>
<h1>Calibration report</h1>
<p><b>{html.escape(verdict)}</b></p>
<p>Rig: {html.escape(str(rig_path))} (world frame: {html.escape(rig.world)}).
Good: RMS &le; {GOOD_RMS_PX} px; poor: RMS &gt; {POOR_RMS_PX} px or under 5% of the area seen.</p>
{_img_tag(img, 'top view, side view and per-camera error')}
{render_html}
<h2>Cameras</h2>
<table><tr><th>camera</th><th>image</th><th>fx / fy px</th><th>cx, cy px</th><th>k1, k2</th>
<th>position m</th><th>height m</th><th>distance m</th><th>tilt</th><th>RMS px</th><th>p95 px</th>
<th>views</th><th>area seen</th><th>status</th></tr>
{''.join(rows)}
</table>
</body></html>
"""
    with atomic_path(out_dir / "calibration_report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {
        "verdict": verdict,
        "cameras": {f.name: {"rms_px": f.rms_px, "coverage": round(f.coverage, 4), "status": _status(f)}
                    for f in figs},
        **{k: round(v, 4) for k, v in overall.items()},
    }
