"""With the shipped checkpoints: 2D accuracy on the calib_data capture at native camera resolution.

Targets (issue 11): median error of visible joints < 4 px and person recall >= 95 %. The shipped
models measure 3.14 px and 0.968 (the top-down model's truncation training found the people half
out of the frame in the quad cameras; recall 0.81 before). Skipped until ``pipeline/weights/``
holds ``bottomup_ae`` and ``topdown_heatmap``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.pose2d.build import default_weights
from pipeline.pose2d.evaluate import crop_capture, pose2d_figures
from pipeline.stage import StageContext
from stages.pose2d import STAGE, Pose2dParams

CALIB = Path(__file__).resolve().parents[2] / "calib_data"

needs_weights = pytest.mark.skipif(
    not (default_weights("bottomup_ae").is_file() and default_weights("topdown_heatmap").is_file()),
    reason="default checkpoints not trained yet (pipeline/weights/)")


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    return crop_capture(CALIB, tmp_path_factory.mktemp("calib") / "session")


@pytest.mark.slow
@needs_weights
def test_topdown_accuracy_on_calib_data(capture, capsys):
    import torch

    torch.set_num_threads(1)
    STAGE.run(StageContext(capture, Pose2dParams(backend="topdown", device="cpu"), None, CALIB, show_progress=False))
    fig = pose2d_figures(capture / "pose2d", CALIB / "ground_truth")
    assert fig is not None
    with capsys.disabled():
        print(f"\npose2d topdown on calib_data: median {fig.median_px:.2f} px, mean {fig.mean_px:.2f} px, "
              f"recall {fig.recall:.3f}, precision {fig.precision:.3f}, {fig.persons} persons, "
              f"{fig.joints_missed} visible joints missed; per camera {fig.per_camera}")
    assert fig.recall >= 0.95  # measured 0.968
    assert fig.precision >= 0.85  # measured 0.939
    assert fig.median_px < 4.0
