"""Exporters: the triangulated skeletons in the formats other tools read.

TRC (OpenSim) in :mod:`.trc`, C3D in :mod:`.c3d`, anipose's CSV in :mod:`.csv_anipose`, JSON in
:mod:`.json_export`, BVH in :mod:`.bvh`; reading ``pose3d/`` and the up-axis conventions in
:mod:`.pose3d`; the whole export of a session in :mod:`.session`.
"""
