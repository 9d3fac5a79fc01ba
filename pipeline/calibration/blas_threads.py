"""Run a block with OpenBLAS on one thread (what threadpoolctl does, without the dependency).

SciPy's LSMR works on vectors far too small to gain from BLAS threads, and on a busy machine the
threads' spin-waits slow it several-fold (measured: 13 s instead of 2 s for one bundle
adjustment on two shared cores).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

_OPENBLAS_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                     ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                     ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                     ("openblas_set_num_threads", "openblas_get_num_threads"))


def _openblas_controls() -> list[tuple]:
    """(set, get) function pairs of every OpenBLAS loaded in this process (Linux; else none)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = sorted({line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _OPENBLAS_SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                out.append((getattr(lib, set_name), getattr(lib, get_name)))
                break
    return out


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """Run the block with OpenBLAS on one thread, then restore its thread count.

    LSMR's vector operations are far too small to gain from BLAS threads, and on a busy machine
    the threads' spin-waits slow it several-fold. Best effort: a no-op where OpenBLAS is absent.
    """
    controls = _openblas_controls()
    before = [get() for _, get in controls]
    for set_, _ in controls:
        set_(1)
    try:
        yield
    finally:
        for (set_, _), n in zip(controls, before):
            set_(int(n))


@contextlib.contextmanager
def single_thread_opencv() -> Iterator[None]:
    """Run the block with OpenCV on one thread, then restore its thread count.

    OpenCV's threaded solvers (``calibrateCamera``, ``stereoCalibrate``) add partial sums in
    whatever order the threads finish, so two runs on the same detections differ in the last
    digits (measured: fx 498.58581228016 vs 498.58581228039). One thread makes a rerun after an
    interruption give exactly the artifacts an uninterrupted run gives.
    """
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)
