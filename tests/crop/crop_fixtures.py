"""Small mosaic fixtures and helpers for the crop tests, drawn with OpenCV.

Each camera's render is a textured, mostly bright picture that changes every frame (a moving
disc and the frame number), so a wrong frame or a shifted crop shows up as a large difference.
The mosaic packs the renders into an R x C grid with a dark border, dark separators and a
burned-in white timestamp lying across the top border and into the first tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.artifacts import load_yaml_file
from pipeline.config import Config, from_mapping
from pipeline.stage import StageContext
from stages.crop import STAGE, CropParams


def render(cam: int, frame: int, w: int, h: int) -> np.ndarray:
    """``(h, w, 3)`` uint8 picture of camera ``cam`` at ``frame``; never near-black at the edges."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 80 + (xx * 3 + cam * 40) % 150
    img[..., 1] = 80 + (yy * 2 + frame * 5) % 150
    img[..., 2] = 90 + ((xx + yy) // 4 + cam * 30) % 120
    cx = int((frame * 7 + cam * 13) % max(w - 20, 1)) + 10
    cv2.circle(img, (cx, h // 2), max(3, h // 8), (20, 230, 40), -1)
    cv2.putText(img, str(frame), (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return img


@dataclass(frozen=True)
class Mosaic:
    """A written mosaic video and how it was made."""

    path: Path
    grid: tuple[int, int]
    rects: list[tuple[int, int, int, int]]
    frames: int
    fps: float

    def tile(self, index: int, frame: int) -> np.ndarray:
        x, y, w, h = self.rects[index]
        return render(index, frame, w, h)


def layout(col_widths: list[int], row_heights: list[int], border: int, sep: int
           ) -> tuple[tuple[int, int], list[tuple[int, int, int, int]]]:
    """Frame size ``(W, H)`` and row-major tile rects for the given tile sizes."""
    xs, x = [], border
    for w in col_widths:
        xs.append(x)
        x += w + sep
    ys, y = [], border
    for h in row_heights:
        ys.append(y)
        y += h + sep
    size = (x - sep + border, y - sep + border)
    rects = [(xs[c], ys[r], col_widths[c], row_heights[r]) for r in range(len(row_heights))
             for c in range(len(col_widths))]
    return size, rects


def mosaic_frame(size: tuple[int, int], rects: list[tuple[int, int, int, int]], frame: int,
                 timestamp: bool = True) -> np.ndarray:
    img = np.zeros((size[1], size[0], 3), np.uint8)
    for i, (x, y, w, h) in enumerate(rects):
        img[y:y + h, x:x + w] = render(i, frame, w, h)
    if timestamp:
        cv2.putText(img, f"2024-05-01 12:00:{frame % 60:02d}", (2, 9), cv2.FONT_HERSHEY_PLAIN, 0.7,
                    (255, 255, 255), 1)
    return img


def write_mosaic(path: Path, col_widths: list[int], row_heights: list[int], frames: int, *, border: int = 6,
                 sep: int = 4, codec: str = "FFV1", fps: float = 25.0, timestamp: bool = True) -> Mosaic:
    size, rects = layout(col_widths, row_heights, border, sep)
    assert size[0] % 2 == 0 and size[1] % 2 == 0, f"OpenCV's FFmpeg writer truncates odd frame sizes: {size}"
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), fps, size)
    assert writer.isOpened(), f"cannot write {codec} to {path}"
    for n in range(frames):
        writer.write(mosaic_frame(size, rects, n, timestamp))
    writer.release()
    return Mosaic(path=path, grid=(len(row_heights), len(col_widths)), rects=rects, frames=frames, fps=fps)


def read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def run_config(cfg_path: Path, session: Path, show_progress: bool = False) -> None:
    """Run the crop stage on a session config file, reading only its ``crop`` section."""
    raw = load_yaml_file(cfg_path) or {}
    params = from_mapping(CropParams, raw.get("crop"), str(cfg_path), "crop.")
    cfg = Config(sections={"crop": params}, session_dir=session, source=cfg_path.resolve())
    ctx = StageContext(session_dir=session, params=params, config=cfg, config_dir=cfg.config_dir,
                       show_progress=show_progress)
    STAGE.run(ctx)


def run_crop(config_dir: Path, crop: dict, session: Path | None = None) -> Path:
    """Write ``crop`` into ``config_dir/posecap.yaml``, run the stage and return the session folder."""
    session = session or config_dir / "session"
    cfg_path = config_dir / "posecap.yaml"
    cfg_path.write_text(yaml.safe_dump({"session_dir": "session", "crop": crop}))
    run_config(cfg_path, session)
    return session


def all_files(folder: Path) -> list[str]:
    """Every file below ``folder`` (hidden temporaries included), relative, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
