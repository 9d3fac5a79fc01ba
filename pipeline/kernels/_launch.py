"""Triton import shim and the one place where launch settings (blocks, warps, grids) are chosen.

Every launcher in :mod:`pipeline.kernels` asks this module for its block sizes and warp counts,
so tuning for a new GPU touches one file. Under ``TRITON_INTERPRET=1`` (kernels run by the
Triton interpreter on CPU tensors) the blocks are small on purpose: tests at small odd shapes
then cross several tiles and exercise every mask.

When Triton is not importable (macOS, Windows, CPU-only installs) ``HAS_TRITON`` is False and
``triton.jit`` is a stand-in that leaves the kernel function undecorated; the kernels are then
never launched, because :func:`pipeline.kernels.dispatch.use_triton` picks the reference path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is missing
    import types

    HAS_TRITON = False
    triton = types.SimpleNamespace(jit=lambda fn=None, **_: fn, cdiv=lambda a, b: -(-a // b))
    tl = types.SimpleNamespace(constexpr=int)

__all__ = [
    "HAS_TRITON",
    "AttentionSettings",
    "attention_settings",
    "elementwise_settings",
    "interpreting",
    "next_power_of_2",
    "reduction_programs",
    "row_settings",
    "rows_per_block",
    "tl",
    "triton",
]

MAX_FUSED_SIZE = 65536  # largest row (elements) a row-wise kernel keeps in one block


def interpreting() -> bool:
    """True when Triton kernels run in the interpreter (``TRITON_INTERPRET=1``, CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def row_settings(n_cols: int) -> tuple[int, int]:
    """Block size and warps for a kernel that holds one whole row (LayerNorm) in registers.

    Returns:
        (BLOCK_SIZE, num_warps); BLOCK_SIZE is a power of two >= n_cols.

    Raises:
        ValueError: the row is longer than ``MAX_FUSED_SIZE``.
    """
    block = next_power_of_2(n_cols)
    if block > MAX_FUSED_SIZE:
        raise ValueError(f"row of {n_cols} elements exceeds the fused kernel limit {MAX_FUSED_SIZE}")
    if block >= 32768:
        warps = 32
    elif block >= 8192:
        warps = 16
    elif block >= 2048:
        warps = 8
    else:
        warps = 4
    return block, warps


def rows_per_block(block_cols: int) -> int:
    """Rows per program for row-wise kernels on short rows: about 4096 elements per tile on
    GPUs (so narrow rows, e.g. C = 160, still fill a program), 16 rows under the interpreter
    (which pays per program, not per element)."""
    if interpreting():
        return 16
    return max(1, min(64, 4096 // block_cols))


def elementwise_settings(n_cols: int) -> tuple[int, int, int]:
    """(BLOCK_ROWS, BLOCK_SIZE, num_warps) of an elementwise kernel tiled over (rows, cols).

    A tile holds about 4096 elements on GPUs; under the interpreter, tiles are 16 rows x at
    most 128 columns, so small test shapes still cross several column tiles.
    """
    if interpreting():
        return 16, min(128, next_power_of_2(n_cols)), 1
    block = min(1024, next_power_of_2(n_cols))
    return max(1, 4096 // block), block, 4 if block <= 512 else 8


def reduction_programs(n_rows: int, device: object) -> int:
    """How many programs share the rows of a backward pass that also reduces over rows (dW, dB).

    One per streaming multiprocessor on CUDA (each keeps an fp32 partial sum); 3 under the
    interpreter, so that several programs and a partial last one are exercised by tests.
    """
    if interpreting() or getattr(device, "type", "cpu") != "cuda":
        return max(1, min(n_rows, 3))
    import torch

    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(n_rows, sms))


@dataclass(frozen=True)
class AttentionSettings:
    """Tile sizes of the FlashAttention kernels (rows of Q per program, rows of K per step)."""

    block_m: int
    block_n: int
    block_d: int
    num_warps: int
    num_stages: int


def attention_settings(head_dim: int, element_size: int, backward: bool = False) -> AttentionSettings:
    """Tiles for the FlashAttention forward or backward kernels.

    Args:
        head_dim: D, the per-head channel count (padded to a power of two >= 16 in the tile).
        element_size: bytes per element of Q/K/V (4 for fp32 halves the tiles to fit shared memory).
        backward: the backward kernels keep more tiles live, so they use smaller blocks.
    """
    block_d = max(16, next_power_of_2(head_dim))
    if interpreting():
        return AttentionSettings(16, 16, block_d, 1, 1)
    if block_d > 256:
        raise ValueError(f"head_dim {head_dim} exceeds the FlashAttention kernel limit 256")
    big = block_d > 64 or element_size >= 4
    if backward:
        return AttentionSettings(32 if big else 64, 32 if big else 64, block_d, 4, 2 if big else 3)
    return AttentionSettings(64 if big else 128, 32 if big else 64, block_d, 4 if block_d <= 64 else 8,
                             2 if big else 3)
