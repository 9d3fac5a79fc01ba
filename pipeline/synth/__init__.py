"""Synthetic capture sessions: a rendered multi-camera recording with exact ground truth.

Public API::

    from pipeline.synth import SynthOptions, generate_session, load_ground_truth, render_camera_frames

    generate_session("out", SynthOptions(seed=0))      # raw/, ground_truth/, posecap.yaml
    gt = load_ground_truth("out")                       # rig, mosaics, boards, people
    tiles = render_camera_frames("out", "capture", "cam0", frames=[0, 1])

Modules: ``camera`` (lens model), ``rig`` (camera placement), ``board`` (board texture and
ray casting), ``sweeps`` (board trajectories), ``people`` (skeletons and motion),
``render_people`` (capsule ray casting and joint visibility), ``room`` (floor and walls),
``render`` (image formation per camera), ``mosaic`` (DVR quad split and side-by-side),
``scene`` (options and the drawn scene), ``session`` (writing everything), ``ground_truth``
(reading it back), ``cli``.
"""

from pipeline.synth.ground_truth import GroundTruth, load_ground_truth
from pipeline.synth.scene import Scene, SynthOptions, build_scene
from pipeline.synth.session import SynthSummary, generate_session, read_options, render_camera_frames

__all__ = [
    "GroundTruth", "Scene", "SynthOptions", "SynthSummary", "build_scene", "generate_session",
    "load_ground_truth", "read_options", "render_camera_frames",
]
