"""Fused bias + activation (GELU, SiLU, SwiGLU), forward and backward.

The MLP of a transformer block computes ``act(x @ W^T + b)``; on the Triton path the matmul runs
without bias and this kernel adds the bias and applies the activation in one pass over memory.

Shapes: x (..., N) viewed as R rows; bias (N,) or None.

- ``"gelu"`` (exact, erf form, as ``torch.nn.GELU()``): y = a * Phi(a), a = x + b, (..., N).
- ``"silu"``: y = a * sigmoid(a), (..., N).
- ``"swiglu"``: a, g = (x + b).chunk(2, -1); y = silu(a) * g, (..., N / 2).

Backward recomputes a (and g) from x and b, and stores only dx; db = dx summed over rows.
Derivatives: GELU' = Phi(a) + a * phi(a); SiLU' = s * (1 + a * (1 - s)) with s = sigmoid(a).
"""

import torch
import torch.nn.functional as F

from pipeline.kernels._launch import elementwise_settings, tl, triton
from pipeline.kernels.dispatch import use_triton

__all__ = [
    "ACTIVATIONS",
    "BiasActivationFunction",
    "bias_activation",
    "bias_activation_reference",
    "linear_activation",
]

ACTIVATIONS = {"gelu": 0, "silu": 1, "swiglu": 2}
"""Activation name -> the kernel's ACT code."""


@triton.jit
def _bias_activation_fwd_kernel(
    X, BIAS, Y, stride_x, stride_y, n_rows, n_out,
    ACT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):
    pid_r = tl.program_id(0).to(tl.int64)
    pid_c = tl.program_id(1).to(tl.int64)
    rows = (pid_r * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS))[:, None]
    cols = (pid_c * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE))[None, :]
    mask = (rows < n_rows) & (cols < n_out)
    a = tl.load(X + rows * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        a += tl.load(BIAS + cols, mask=cols < n_out, other=0.0).to(tl.float32)
    if ACT == 0:
        y = 0.5 * a * (1.0 + tl.erf(a * 0.7071067811865476))
    elif ACT == 1:
        y = a * tl.sigmoid(a)
    else:
        g = tl.load(X + rows * stride_x + n_out + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            g += tl.load(BIAS + n_out + cols, mask=cols < n_out, other=0.0).to(tl.float32)
        y = a * tl.sigmoid(a) * g
    tl.store(Y + rows * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _bias_activation_bwd_kernel(
    X, BIAS, DY, DX, stride_x, stride_dy, stride_dx, n_rows, n_out,
    ACT: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):
    pid_r = tl.program_id(0).to(tl.int64)
    pid_c = tl.program_id(1).to(tl.int64)
    rows = (pid_r * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS))[:, None]
    cols = (pid_c * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE))[None, :]
    mask = (rows < n_rows) & (cols < n_out)
    a = tl.load(X + rows * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        a += tl.load(BIAS + cols, mask=cols < n_out, other=0.0).to(tl.float32)
    dy = tl.load(DY + rows * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
    if ACT == 0:
        cdf = 0.5 * (1.0 + tl.erf(a * 0.7071067811865476))
        pdf = tl.exp(-0.5 * a * a) * 0.3989422804014327
        da = dy * (cdf + a * pdf)
    elif ACT == 1:
        s = tl.sigmoid(a)
        da = dy * s * (1.0 + a * (1.0 - s))
    else:
        g = tl.load(X + rows * stride_x + n_out + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            g += tl.load(BIAS + n_out + cols, mask=cols < n_out, other=0.0).to(tl.float32)
        s = tl.sigmoid(a)
        da = dy * g * s * (1.0 + a * (1.0 - s))
        tl.store(DX + rows * stride_dx + n_out + cols, (dy * a * s).to(DX.dtype.element_ty), mask=mask)
    tl.store(DX + rows * stride_dx + cols, da.to(DX.dtype.element_ty), mask=mask)


def _launch_shape(x: torch.Tensor, act: int) -> tuple[torch.Tensor, int, tuple[int, int], dict[str, int]]:
    """(x as rows, output width, grid, launch keywords)."""
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    n_out = x2.shape[1] // 2 if act == ACTIVATIONS["swiglu"] else x2.shape[1]
    block_rows, block, warps = elementwise_settings(n_out)
    grid = (triton.cdiv(x2.shape[0], block_rows), triton.cdiv(n_out, block))
    return x2, n_out, grid, dict(BLOCK_ROWS=block_rows, BLOCK_SIZE=block, num_warps=warps)


def bias_activation_fwd(x, bias, act):
    """Launch the forward kernel. Returns y (..., N) or (..., N / 2) for SwiGLU."""
    x2, n_out, grid, launch = _launch_shape(x, act)
    y = torch.empty((x2.shape[0], n_out), device=x.device, dtype=x.dtype)
    _bias_activation_fwd_kernel[grid](
        x2, bias if bias is not None else x2, y, x2.stride(0), y.stride(0), x2.shape[0], n_out,
        ACT=act, HAS_BIAS=bias is not None, **launch,
    )
    return y.view(*x.shape[:-1], n_out)


def bias_activation_bwd(dy, x, bias, act):
    """Launch the backward kernel. Returns (dx like x, dbias or None)."""
    x2, n_out, grid, launch = _launch_shape(x, act)
    dy2 = dy.reshape(-1, n_out)
    if dy2.stride(-1) != 1:
        dy2 = dy2.contiguous()
    dx = torch.empty(x2.shape, device=x.device, dtype=x.dtype)
    _bias_activation_bwd_kernel[grid](
        x2, bias if bias is not None else x2, dy2, dx, x2.stride(0), dy2.stride(0), dx.stride(0), x2.shape[0], n_out,
        ACT=act, HAS_BIAS=bias is not None, **launch,
    )
    dbias = dx.sum(0, dtype=torch.float32).to(bias.dtype) if bias is not None else None
    return dx.view(x.shape), dbias


class BiasActivationFunction(torch.autograd.Function):
    """Autograd wrapper: ``apply(x, bias_or_None, act_code)``; saves x and bias only."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, bias, act):
        ctx.save_for_backward(x, bias)
        ctx.act = act
        return bias_activation_fwd(x, bias, act)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dy):
        x, bias = ctx.saved_tensors
        dx, db = bias_activation_bwd(dy, x, bias, ctx.act)
        return dx, db, None


def bias_activation_reference(x: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    """act(x + bias) in PyTorch; see the module docstring for shapes."""
    a = x if bias is None else x + bias
    if activation == "gelu":
        return F.gelu(a)
    if activation == "silu":
        return F.silu(a)
    a, g = a.chunk(2, dim=-1)
    return F.silu(a) * g


def _code(x: torch.Tensor, bias: torch.Tensor | None, activation: str) -> int:
    if activation not in ACTIVATIONS:
        raise ValueError(f"bias_activation: activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    if bias is not None and bias.shape != (x.shape[-1],):
        raise ValueError(f"bias_activation: bias must be ({x.shape[-1]},); got {tuple(bias.shape)}")
    if activation == "swiglu" and x.shape[-1] % 2:
        raise ValueError(f"bias_activation: swiglu needs an even last dim; got {x.shape[-1]}")
    return ACTIVATIONS[activation]


def bias_activation(x: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    """act(x + bias), Triton or reference per the dispatch mode.

    Args:
        x: (..., N); bias: (N,) or None; activation: "gelu", "silu" or "swiglu".

    Returns:
        (..., N), or (..., N / 2) for "swiglu".
    """
    act = _code(x, bias, activation)
    if use_triton(x):
        return BiasActivationFunction.apply(x, bias, act)
    return bias_activation_reference(x, bias, activation)


def linear_activation(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      activation: str) -> torch.Tensor:
    """act(x @ weight^T + bias): on the Triton path the bias is fused into the activation kernel.

    Args:
        x: (..., C_in); weight: (N, C_in); bias: (N,) or None.
    """
    if use_triton(x):
        return bias_activation(F.linear(x, weight), bias, activation)
    return bias_activation_reference(F.linear(x, weight, bias), None, activation)
