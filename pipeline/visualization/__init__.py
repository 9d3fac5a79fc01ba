"""Seeing a capture: 2D overlays, offscreen 3D renders, the interactive viewer, the calibration report.

- :mod:`.overlay`: per-camera overlay videos, the mosaic and the contact sheet (OpenCV);
- :mod:`.scene3d`: the 3D scene as open3d geometry (floor grid, frusta, skeletons, trails);
- :mod:`.render3d`: offscreen renders of that scene to MP4 / PNG;
- :mod:`.viewer`: ``posecap view SESSION_DIR``, an interactive open3d window;
- :mod:`.calib_report`: the calibration report (PNG + self-contained HTML);
- :mod:`.draw`, :mod:`.inputs`: drawing primitives and the optional inputs (session.yaml, pose2d).
"""
