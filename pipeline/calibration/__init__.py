"""Camera calibration: board detection, intrinsics, stereo pairs and whole-rig bundle adjustment."""
