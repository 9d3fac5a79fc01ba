"""``posecap demo``: run the pipeline on the built-in sample session and compare with ground truth.

The sample lives in ``calib_data/`` (raw recordings, ground truth and the session config written
by ``posecap synth``). The demo copies it into a work folder, writes the session config merged
with ``configs/demo.yaml``, runs every registered stage, and prints figures against ground
truth for the artifacts that were produced. It reports nothing the pipeline did not compute.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from pipeline.artifacts import dump_yaml_text, load_yaml_file, write_bytes
from pipeline.errors import PosecapError

log = logging.getLogger("posecap")
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "calib_data"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` wins; nested mappings merge key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def prepare(work_dir: Path) -> Path:
    """Copy the sample into ``work_dir`` (once) and write its merged config; return the config path."""
    if not (SAMPLE / "posecap.yaml").is_file():
        raise PosecapError(f"{SAMPLE}: sample session missing; rebuild it with "
                           "`posecap synth calib_data --seed 0` from the repository root")
    work_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("raw", "ground_truth"):
        if not (work_dir / sub).exists():
            shutil.copytree(SAMPLE / sub, work_dir / sub)
    sample_cfg = load_yaml_file(SAMPLE / "posecap.yaml")
    overrides = load_yaml_file(DEMO_CONFIG) or {}
    merged = deep_merge(sample_cfg, overrides)
    cfg_path = work_dir / "posecap.yaml"
    text = "# posecap demo config: calib_data/posecap.yaml merged with configs/demo.yaml\n"
    write_bytes(cfg_path, (text + dump_yaml_text(merged)).encode())
    return cfg_path


def summary_lines(session_dir: Path, truth_dir: Path) -> list[str]:
    """Figures against ground truth for every artifact the run produced."""
    from pipeline import evaluation as ev

    lines: list[str] = []
    crop = ev.crop_figures(session_dir, truth_dir)
    if crop:
        lines.append(f"crop                 {crop.tiles} tiles, "
                     f"max crop-rectangle error {crop.max_rect_error_px:.0f} px")
    intr = ev.intrinsics_figures(session_dir, truth_dir)
    if intr:
        for cam in intr.focal_error_pct:
            lines.append(f"calibrate_intrinsics {cam:<9} focal error {intr.focal_error_pct[cam]:.2f} %, principal "
                         f"point error {intr.principal_point_error_px[cam]:.2f} px, RMS {intr.rms_px[cam]:.2f} px")
    rig = ev.rig_figures(session_dir, truth_dir)
    if rig:
        for cam in rig.centre_error_mm:
            lines.append(f"calibrate_extrinsics {cam:<9} centre error {rig.centre_error_mm[cam]:.1f} mm, "
                         f"rotation error {rig.rotation_error_deg[cam]:.3f} deg")
    pose = ev.pose3d_figures(session_dir, truth_dir)
    if pose:
        lines.append(f"triangulate          MPJPE {pose.mpjpe_mm:.1f} mm over {pose.joints_compared} joints, "
                     f"{pose.people_found} people found ({pose.people_true} in ground truth)")
    return lines


def run_demo(work_dir: Path, show_progress: bool = True) -> int:
    """Prepare the sample in ``work_dir``, run the pipeline, print the summary. Returns an exit code."""
    from pipeline.config import load_config
    from pipeline.runner import Runner
    from stages import config_sections, load_stages

    cfg_path = prepare(work_dir)
    config = load_config(cfg_path, config_sections())
    runner = Runner(load_stages(), config, config.session_dir, show_progress=show_progress)
    report = runner.run(on_error="skip-dependents")
    print(f"\nposecap demo: session {config.session_dir}")
    print(f"stages run: {', '.join(report.ran) or '-'}; up to date: {', '.join(report.skipped_up_to_date) or '-'}")
    for name, why in report.blocked.items():
        print(f"not run  {name}: {why}")
    for name, why in report.skipped_dependents.items():
        print(f"not run  {name}: {why}")
    for name, why in report.failed.items():
        print(f"FAILED   {name}: {why}")
    print("\nagainst ground truth:")
    lines = summary_lines(config.session_dir, work_dir / "ground_truth")
    for line in lines or ["(no stage produced a comparable artifact)"]:
        print("  " + line)
    return 0 if report.ok else 1
