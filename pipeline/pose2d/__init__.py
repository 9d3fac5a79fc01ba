"""2D keypoints per camera: built-in bottom-up / top-down models, ViTPose, ONNX, or imported files.

- :mod:`~pipeline.pose2d.estimators`: the networks on frames (bottom-up) and person crops (top-down).
- :mod:`~pipeline.pose2d.onnx`: ONNX models with RTMPose's contract via onnxruntime; ``export_onnx``.
- :mod:`~pipeline.pose2d.backends`: per-frame logic, the top-down box source (detector / tracker).
- :mod:`~pipeline.pose2d.runner`: streaming over cameras, chunk checkpoints, resume, progress.
- :mod:`~pipeline.pose2d.formats`: OpenPose JSON, COCO results JSON, DeepLabCut CSV (read and write).
- :mod:`~pipeline.pose2d.io`: ``pose2d/<cam>.npz`` and the chunk store.
- :mod:`~pipeline.pose2d.build`: devices, weights loading and fingerprints.

The stage is ``stages/pose2d.py``; the user guide is ``docs/pose2d.md``.
"""
