"""Fused LayerNorm and RMSNorm over the last dimension, forward and backward.

Shapes: x (..., C) is viewed as R rows of C; weight and bias (C,). One forward program
normalizes a tile of rows (several short rows per program) in fp32 and stores each row's mean
and 1 / std ((R,) fp32) besides y; nothing else is kept for backward: x_hat is recomputed.

LayerNorm: y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps).
RMSNorm:   y = x * rstd * w (+ b),      rstd = 1 / sqrt(mean(x^2) + eps).

Backward with g = w * dy and c1 = mean(x_hat * g), c2 = mean(g) (0 for RMSNorm):
dx = rstd * (g - x_hat * c1 - c2); dw = sum over rows of dy * x_hat; db = sum of dy. The row
sums are accumulated per program in fp32 (each program walks a contiguous run of rows) and the
few partial sums are added at the end, as Liger-Kernel does.
"""

import torch
import torch.nn.functional as F

from pipeline.kernels._launch import reduction_programs, row_settings, rows_per_block, tl, triton
from pipeline.kernels.dispatch import use_triton

__all__ = ["LayerNormFunction", "layer_norm", "layer_norm_reference", "rms_norm", "rms_norm_reference"]


@triton.jit
def _layer_norm_fwd_kernel(
    X, W, B, Y, MEAN, RSTD, stride_x, stride_y, n_rows, n_cols, eps,
    RMS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.arange(0, BLOCK_SIZE)
    row_mask = rows < n_rows
    col_mask = cols < n_cols
    mask = row_mask[:, None] & col_mask[None, :]
    x = tl.load(X + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if RMS:
        xc = x
    else:
        mean = tl.sum(x, 1) / n_cols
        xc = tl.where(mask, x - mean[:, None], 0.0)
        tl.store(MEAN + rows, mean, mask=row_mask)
    var = tl.sum(xc * xc, 1) / n_cols
    rstd = tl.rsqrt(var + eps)
    tl.store(RSTD + rows, rstd, mask=row_mask)
    w = tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)
    y = xc * rstd[:, None] * w[None, :]
    if HAS_BIAS:
        y += tl.load(B + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + rows[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _layer_norm_bwd_kernel(
    X, W, MEAN, RSTD, DY, DX, DW, DB, stride_x, stride_dy, stride_dx, stride_dw,
    n_rows, n_cols, rows_per_program,
    RMS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK_SIZE], tl.float32)
    db_acc = tl.zeros([BLOCK_SIZE], tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    for row in range(row_start, row_end):
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        if RMS:
            x_hat = x * rstd
        else:
            mean = tl.load(MEAN + row)
            x_hat = tl.where(mask, (x - mean) * rstd, 0.0)
        g = w * dy
        c1 = tl.sum(x_hat * g, 0) / n_cols
        if RMS:
            dx = (g - x_hat * c1) * rstd
        else:
            c2 = tl.sum(g, 0) / n_cols
            dx = (g - x_hat * c1 - c2) * rstd
        tl.store(DX + row * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw_acc += dy * x_hat
        if HAS_BIAS:
            db_acc += dy
    tl.store(DW + pid * stride_dw + cols, dw_acc, mask=mask)
    if HAS_BIAS:
        tl.store(DB + pid * stride_dw + cols, db_acc, mask=mask)


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def layer_norm_fwd(x, weight, bias, eps, rms):
    """Launch the forward kernel. Returns (y like x, mean (R,) fp32, rstd (R,) fp32)."""
    x2 = _as_rows(x)
    n_rows, n_cols = x2.shape
    block, warps = row_settings(n_cols)
    block_rows = rows_per_block(block)
    y = torch.empty((n_rows, n_cols), device=x.device, dtype=x.dtype)
    mean = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    rstd = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    _layer_norm_fwd_kernel[(triton.cdiv(n_rows, block_rows),)](
        x2, weight, bias if bias is not None else weight, y, mean, rstd, x2.stride(0), y.stride(0), n_rows, n_cols,
        eps, RMS=rms, HAS_BIAS=bias is not None, BLOCK_ROWS=block_rows, BLOCK_SIZE=block, num_warps=warps,
    )
    return y.view(x.shape), mean, rstd


def layer_norm_bwd(dy, x, weight, bias, mean, rstd, rms):
    """Launch the backward kernel. Returns (dx like x, dw, db or None)."""
    x2, dy2 = _as_rows(x), _as_rows(dy)
    n_rows, n_cols = x2.shape
    block, warps = row_settings(n_cols)
    programs = reduction_programs(n_rows, x.device)
    rows_per_program = triton.cdiv(n_rows, programs)
    dx = torch.empty((n_rows, n_cols), device=x.device, dtype=x.dtype)
    dw = torch.empty((programs, n_cols), device=x.device, dtype=torch.float32)
    db = torch.empty((programs, n_cols), device=x.device, dtype=torch.float32) if bias is not None else dw
    _layer_norm_bwd_kernel[(programs,)](
        x2, weight, mean, rstd, dy2, dx, dw, db, x2.stride(0), dy2.stride(0), dx.stride(0), dw.stride(0),
        n_rows, n_cols, rows_per_program,
        RMS=rms, HAS_BIAS=bias is not None, BLOCK_SIZE=block, num_warps=warps,
    )
    dbias = db.sum(0).to(bias.dtype) if bias is not None else None
    return dx.view(x.shape), dw.sum(0).to(weight.dtype), dbias


class LayerNormFunction(torch.autograd.Function):
    """Autograd wrapper: ``apply(x, weight, bias_or_None, eps, rms)``; saves x, mean, rstd."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, weight, bias, eps, rms):
        y, mean, rstd = layer_norm_fwd(x, weight, bias, eps, rms)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.rms = rms
        return y

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dy):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        dx, dw, db = layer_norm_bwd(dy, x, weight, bias, mean, rstd, ctx.rms)
        return dx, dw, db, None, None


def layer_norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         eps: float = 1e-6) -> torch.Tensor:
    """``torch.nn.functional.layer_norm`` over the last dim. (..., C) -> (..., C)."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                       eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * w (+ b) in fp32, returned in x's dtype. (..., C) -> (..., C)."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, what: str) -> None:
    c = x.shape[-1] if x.ndim else -1
    if weight.shape != (c,) or (bias is not None and bias.shape != (c,)):
        raise ValueError(
            f"{what}: weight and bias must be (C,) with C = x.shape[-1] = {c}; got weight "
            f"{tuple(weight.shape)}, bias {None if bias is None else tuple(bias.shape)}"
        )


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm over the last dim, Triton or reference per the dispatch mode. (..., C) -> (..., C)."""
    _check(x, weight, bias, "layer_norm")
    if use_triton(x):
        return LayerNormFunction.apply(x, weight, bias, float(eps), False)
    return layer_norm_reference(x, weight, bias, eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
             eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dim, Triton or reference per the dispatch mode. (..., C) -> (..., C)."""
    _check(x, weight, bias, "rms_norm")
    if use_triton(x):
        return LayerNormFunction.apply(x, weight, bias, float(eps), True)
    return rms_norm_reference(x, weight, bias, eps)
