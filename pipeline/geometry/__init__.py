"""Camera geometry: the OpenCV camera model, the calibrated rig, and (robust) triangulation.

``Camera`` and ``Rig`` (``calib/rig.yaml``) in :mod:`.camera` / :mod:`.rig`; batched weighted DLT in
:mod:`.triangulate`; left/right swap correction and consensus outlier rejection in :mod:`.robust`.
"""
