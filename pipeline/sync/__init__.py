"""Synchronizing separately recorded clocks for the ``sync`` stage.

:mod:`.io` (clocks from session.yaml, sync.yaml), :mod:`.signals` (keypoint-motion signals),
:mod:`.estimate` (coarse offset by cross-correlation, with confidence), :mod:`.refine` (offset and
rate by multi-view reprojection error) and :mod:`.solve` (the whole decision per clock:
override, estimate or fall back).
"""
