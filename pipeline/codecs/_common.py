"""Option checks, array coercion and the error type shared by the pose codecs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from pipeline.errors import ConfigError


class CodecError(ConfigError, ValueError):
    """An invalid codec option or an input array of the wrong shape.

    A :class:`~pipeline.errors.ConfigError` (one-line user-facing message) and a ``ValueError``.
    The message names the codec class, the option and the allowed values.
    """


def as_array(value: Any, owner: str, name: str, dtype: Any = None) -> np.ndarray:
    """``value`` as a numpy array; a torch tensor is detached and moved to the CPU first."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{owner}: {name} must be an array-like of numbers ({exc})") from None


def check_size(value: Any, owner: str, name: str) -> tuple[int, int]:
    """A [width, height] pair of positive ints, e.g. input_size=(192, 256)."""
    try:
        w, h = (int(v) for v in value)
        ok = w >= 1 and h >= 1 and all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CodecError(f"{owner}: {name} must be [width, height], two positive integers; got {value!r}")
    return w, h


def check_positive(value: Any, owner: str, name: str, pair: bool = False) -> Any:
    """A positive finite float, or with ``pair`` a float or an (x, y) pair of them."""
    values = list(value) if pair and isinstance(value, Iterable) else [value]
    try:
        floats = [float(v) for v in values]
        ok = len(floats) in ((1, 2) if pair else (1,)) and all(np.isfinite(f) and f > 0 for f in floats)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        allowed = "a positive number or an (x, y) pair of them" if pair else "a positive number"
        raise CodecError(f"{owner}: {name} must be {allowed}; got {value!r}")
    if pair:
        return (floats[0], floats[-1])
    return floats[0]


def check_fraction(value: Any, owner: str, name: str) -> float:
    """A float in [0, 1)."""
    try:
        ok = 0.0 <= float(value) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CodecError(f"{owner}: {name} must be a number in [0, 1); got {value!r}")
    return float(value)


def check_choice(value: Any, owner: str, name: str, allowed: Iterable[str]) -> str:
    """One of ``allowed`` strings."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise CodecError(f"{owner}: {name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_odd_kernel(value: Any, owner: str, name: str) -> int:
    """An odd int >= 1 (1 means no blur)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 or value % 2 == 0:
        raise CodecError(f"{owner}: {name} must be an odd integer >= 1 (1 = no blur); got {value!r}")
    return int(value)


def check_int(value: Any, owner: str, name: str, minimum: int) -> int:
    """An int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CodecError(f"{owner}: {name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def resolution_scale(
    input_size: tuple[int, int], heatmap_size: tuple[int, int], unbiased: bool
) -> np.ndarray:
    """(2,) heatmap pixels per input pixel: (W - 1) / (w - 1) with UDP's ``unbiased``, else W / w."""
    (w, h), (hw, hh) = input_size, heatmap_size
    if unbiased:
        return np.array([(hw - 1) / max(w - 1, 1), (hh - 1) / max(h - 1, 1)])
    return np.array([hw / w, hh / h])


def check_keypoints(keypoints: Any, visible: Any, owner: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate keypoints (N, K, 2) or (K, 2) and visibility (N, K) / (K,) or None.

    Returns:
        keypoints float64 (N, K, 2), visibility float64 (N, K) in [0, 1] (1 where None),
        and whether the input was a single instance (K, 2).
    """
    kp = as_array(keypoints, owner, "keypoints", np.float64)
    single = kp.ndim == 2
    if single:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[-1] != 2:
        raise CodecError(f"{owner}: keypoints must be (N, K, 2) or (K, 2) pixels; got shape {kp.shape}")
    if visible is None:
        vis = np.ones(kp.shape[:2])
    else:
        vis = as_array(visible, owner, "keypoints_visible", np.float64)
        if single and vis.ndim == 1:
            vis = vis[None]
        if vis.shape != kp.shape[:2]:
            raise CodecError(
                f"{owner}: keypoints_visible must be {kp.shape[:2]} (N, K); got shape {vis.shape}"
            )
    return kp, vis, single
