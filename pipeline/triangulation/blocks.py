"""Per-block intermediate arrays of a take, held in memory or spilled to a folder.

The triangulate stage works on a long take in blocks of ``FRAME_BLOCK`` frames and passes over
them several times (per-frame work, tracking, refinement, output). A :class:`BlockStore` holds
each block's arrays under a kind (``"frame"``, ``"refined"``): in memory for short takes and the
library functions, or as one uncompressed ``.npy`` set per block in a scratch folder, so the
stage's memory holds a few blocks, not the take. Tasks in other processes write their blocks to
the folder themselves (:func:`save_block`) and hand back only small summaries.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.artifacts import WRITE_ERRNOS, os_reason
from pipeline.errors import ArtifactError

Arrays = dict[str, np.ndarray]


def block_path(folder: Path, kind: str, index: int) -> Path:
    """The file of block ``index`` of ``kind`` under ``folder``."""
    return Path(folder) / f"{kind}_{index:06d}.npz"


def _scratch_error(path: Path, exc: OSError) -> ArtifactError:
    return ArtifactError(f"{path}: cannot write the scratch file ({os_reason(exc)}); no artifact was changed; "
                         "free disk space or fix the folder's permissions, then rerun")


def save_block(folder: Path, kind: str, index: int, arrays: Mapping[str, np.ndarray]) -> None:
    """Write one block's arrays (uncompressed ``.npz``; written to a temporary name, then renamed).

    Raises:
        ArtifactError: the folder cannot take the file (disk full, read-only, ...), naming it.
    """
    path = block_path(folder, kind, index)
    tmp = path.with_suffix(".tmp.npz")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(path)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        tmp.unlink(missing_ok=True)
        raise _scratch_error(path, exc) from None


class BlockStore:
    """Blocks of arrays by (kind, index), in memory (``folder=None``) or in ``folder`` on disk.

    A folder store creates ``folder`` (emptied first: blocks of an interrupted run are stale) and
    :meth:`close` removes it; use it as a context manager.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._memory: dict[tuple[str, int], Arrays] = {}
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            try:
                self.folder.mkdir(parents=True)
            except OSError as exc:
                if exc.errno not in WRITE_ERRNOS:
                    raise
                raise _scratch_error(self.folder, exc) from None

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop every block (and the folder)."""
        self._memory.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def put(self, kind: str, index: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Keep a block (a folder store writes it to disk)."""
        if self.folder is None:
            self._memory[(kind, index)] = dict(arrays)
        else:
            save_block(self.folder, kind, index, arrays)

    def get(self, kind: str, index: int, names: tuple[str, ...] | None = None) -> Arrays:
        """A block's arrays (only ``names`` when given; a folder store reads just those members)."""
        if self.folder is None:
            arrays = self._memory[(kind, index)]
            return dict(arrays) if names is None else {n: arrays[n] for n in names}
        with np.load(block_path(self.folder, kind, index), allow_pickle=False) as npz:
            return {n: npz[n] for n in (npz.files if names is None else names)}
