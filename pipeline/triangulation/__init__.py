"""Multi-person 3D reconstruction for the ``triangulate`` stage.

:mod:`.association` (cross-view matching per frame), :mod:`.tracking` (identities over time),
:mod:`.refine` (least-squares refinement), :mod:`.filters` (gap filling, Butterworth, one-euro),
:mod:`.reconstruct` (the whole chain) and :mod:`.io` (pose2d in, pose3d out).
"""
