"""Triangulation of a long take as parallel tasks over frame ranges, equal to the one-process result.

:func:`~pipeline.triangulation.take.reconstruct_take` sends its two parallel passes (per-frame
association and triangulation; per-block refinement) through a mapper as tasks of whole blocks;
tracking runs once over the take in frame order, so identities carry across range boundaries
with nothing to stitch. The result is identical to ``reconstruct``'s for any ``task_frames`` and
any executor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.geometry.rig import Rig
from pipeline.triangulation.blocks import BlockStore
from pipeline.triangulation.reconstruct import Reconstruction, ReconstructOptions
from pipeline.triangulation.take import Mapper, reconstruct_take


def reconstruct_in_tasks(rig: Rig, keypoints: np.ndarray, flip_pairs: Sequence[tuple[int, int]],
                         bones: Sequence[tuple[int, int]], options: ReconstructOptions, task_frames: int,
                         mapper: Mapper) -> Reconstruction:
    """:func:`~pipeline.triangulation.reconstruct.reconstruct` with its parallel parts sent through ``mapper``.

    Args:
        keypoints: (C, T, P, J, 3) as for ``reconstruct``.
        task_frames: frames per task (rounded down to whole blocks; 0 = one task).
        mapper: runs a module-level function over items, in order (``StageContext.map``).
    """
    with BlockStore() as store:
        return reconstruct_take(rig, np.asarray(keypoints), flip_pairs, bones, options, store, task_frames,
                                mapper).to_reconstruction()
