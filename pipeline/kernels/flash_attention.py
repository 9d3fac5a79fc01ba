"""FlashAttention (tiled, online softmax, fp32 accumulation) for fixed-length and packed batches.

Shapes: B sequences of length L in a fixed batch, H heads, D channels per head. A packed
(varlen) batch stores S sequences of different lengths back to back as T = sum(L_s) rows, with
``cu_seqlens`` (S + 1,) int32 the cumulative offsets [0, L_0, L_0 + L_1, ...]; attention stays
inside each sequence and no padding is computed: every program reads its own sequence's bounds
from ``cu_seqlens`` and loops only over that sequence's key tiles.

- fixed:  q (B, Lq, H, D), k and v (B, Lk, H, D)   -> out (B, Lq, H, D)
- varlen: q (Tq, H, D), k and v (Tk, H, D), cu_seqlens_q / cu_seqlens_k (S + 1,) -> out (Tq, H, D)

Lq may differ from Lk (cross-attention, e.g. keypoint queries over image tokens).

Forward (one program = BLOCK_M query rows of one sequence and head): for each BLOCK_N tile of
keys, s = q k^T * scale * log2(e); the running row maximum m and sum l are rescaled by
exp2(m_old - m_new), and acc = acc * rescale + p v, all in fp32. It writes out = acc / l and
the row's log-sum-exp lse = m + log2(l) (base 2, (H, Tq) fp32), nothing of size L x L.

Backward (FlashAttention-2): delta = rowsum(dO * O); then one kernel per key tile recomputes
p = exp2(s - lse) over all query tiles and accumulates dV = p^T dO and dK = dS^T q, and one
kernel per query tile accumulates dQ = dS k, with dS = p * (dO v^T - delta). Separate dQ and
dK/dV kernels keep the gradients deterministic (no atomics).
"""

import math

import torch
import torch.nn.functional as F

from pipeline.kernels._launch import attention_settings, tl, triton
from pipeline.kernels.dispatch import use_triton

__all__ = [
    "FlashAttentionFunction",
    "flash_attention",
    "flash_attention_reference",
    "flash_attention_varlen",
    "flash_attention_varlen_reference",
]

_LOG2E = 1.4426950408889634


@triton.jit
def _flash_attention_fwd_kernel(
    Q, K, V, O, LSE, CU_Q, CU_K,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh, stride_lse_h,
    seqlen_q, seqlen_k, num_heads, head_dim, qk_scale,
    VARLEN: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0).to(tl.int64)
    pid_sh = tl.program_id(1).to(tl.int64)
    seq = pid_sh // num_heads
    head = pid_sh % num_heads
    if VARLEN:
        q_start = tl.load(CU_Q + seq).to(tl.int64)
        q_len = tl.load(CU_Q + seq + 1).to(tl.int64) - q_start
        k_start = tl.load(CU_K + seq).to(tl.int64)
        k_len = tl.load(CU_K + seq + 1).to(tl.int64) - k_start
    else:
        q_start = seq * seqlen_q
        q_len = seqlen_q
        k_start = seq * seqlen_k
        k_len = seqlen_k
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < q_len
    mask_d = offs_d < head_dim
    q_mask = mask_m[:, None] & mask_d[None, :]
    q = tl.load(Q + (q_start + offs_m)[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
                mask=q_mask, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, k_len, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < k_len
        kv_mask = mask_n[:, None] & mask_d[None, :]
        rows = k_start + offs_n
        k = tl.load(K + rows[:, None] * stride_kt + head * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(V + rows[:, None] * stride_vt + head * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        s = tl.where(mask_n[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(O + (q_start + offs_m)[:, None] * stride_ot + head * stride_oh + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=q_mask)
    tl.store(LSE + head * stride_lse_h + q_start + offs_m, m_i + tl.log2(l_safe), mask=mask_m)


@triton.jit
def _flash_attention_bwd_preprocess_kernel(
    O, DO, DELTA, stride_ot, stride_oh, stride_dot, stride_doh, stride_delta_h, n_rows, head_dim,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < n_rows
    mask = mask_m[:, None] & (offs_d < head_dim)[None, :]
    o = tl.load(O + offs_m[:, None] * stride_ot + head * stride_oh + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(DO + offs_m[:, None] * stride_dot + head * stride_doh + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + head * stride_delta_h + offs_m, delta, mask=mask_m)


@triton.jit
def _flash_attention_bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, CU_Q, CU_K,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dkt, stride_dkh, stride_dvt, stride_dvh, stride_lse_h,
    seqlen_q, seqlen_k, num_heads, head_dim, qk_scale, sm_scale,
    VARLEN: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_n = tl.program_id(0).to(tl.int64)
    pid_sh = tl.program_id(1).to(tl.int64)
    seq = pid_sh // num_heads
    head = pid_sh % num_heads
    if VARLEN:
        q_start = tl.load(CU_Q + seq).to(tl.int64)
        q_len = tl.load(CU_Q + seq + 1).to(tl.int64) - q_start
        k_start = tl.load(CU_K + seq).to(tl.int64)
        k_len = tl.load(CU_K + seq + 1).to(tl.int64) - k_start
    else:
        q_start = seq * seqlen_q
        q_len = seqlen_q
        k_start = seq * seqlen_k
        k_len = seqlen_k
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < k_len
    mask_d = offs_d < head_dim
    kv_mask = mask_n[:, None] & mask_d[None, :]
    krows = k_start + offs_n
    k = tl.load(K + krows[:, None] * stride_kt + head * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + krows[:, None] * stride_vt + head * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for start_m in range(0, q_len, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mask_m = offs_m < q_len
        q_mask = mask_m[:, None] & mask_d[None, :]
        qrows = q_start + offs_m
        q = tl.load(Q + qrows[:, None] * stride_qt + head * stride_qh + offs_d[None, :], mask=q_mask, other=0.0)
        do = tl.load(DO + qrows[:, None] * stride_dot + head * stride_doh + offs_d[None, :], mask=q_mask, other=0.0)
        lse = tl.load(LSE + head * stride_lse_h + qrows, mask=mask_m, other=0.0)
        delta = tl.load(DELTA + head * stride_lse_h + qrows, mask=mask_m, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        p = tl.exp2(s - lse[:, None])
        p = tl.where(mask_m[:, None] & mask_n[None, :], p, 0.0)
        dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=PRECISION)
    dk = dk * sm_scale
    tl.store(DK + krows[:, None] * stride_dkt + head * stride_dkh + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + krows[:, None] * stride_dvt + head * stride_dvh + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _flash_attention_bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, CU_Q, CU_K,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dqt, stride_dqh, stride_lse_h,
    seqlen_q, seqlen_k, num_heads, head_dim, qk_scale, sm_scale,
    VARLEN: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0).to(tl.int64)
    pid_sh = tl.program_id(1).to(tl.int64)
    seq = pid_sh // num_heads
    head = pid_sh % num_heads
    if VARLEN:
        q_start = tl.load(CU_Q + seq).to(tl.int64)
        q_len = tl.load(CU_Q + seq + 1).to(tl.int64) - q_start
        k_start = tl.load(CU_K + seq).to(tl.int64)
        k_len = tl.load(CU_K + seq + 1).to(tl.int64) - k_start
    else:
        q_start = seq * seqlen_q
        q_len = seqlen_q
        k_start = seq * seqlen_k
        k_len = seqlen_k
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < q_len
    mask_d = offs_d < head_dim
    q_mask = mask_m[:, None] & mask_d[None, :]
    qrows = q_start + offs_m
    q = tl.load(Q + qrows[:, None] * stride_qt + head * stride_qh + offs_d[None, :], mask=q_mask, other=0.0)
    do = tl.load(DO + qrows[:, None] * stride_dot + head * stride_doh + offs_d[None, :], mask=q_mask, other=0.0)
    lse = tl.load(LSE + head * stride_lse_h + qrows, mask=mask_m, other=0.0)
    delta = tl.load(DELTA + head * stride_lse_h + qrows, mask=mask_m, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, k_len, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < k_len
        kv_mask = mask_n[:, None] & mask_d[None, :]
        krows = k_start + offs_n
        k = tl.load(K + krows[:, None] * stride_kt + head * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(V + krows[:, None] * stride_vt + head * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        p = tl.exp2(s - lse[:, None])
        p = tl.where(mask_m[:, None] & mask_n[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    dq = dq * sm_scale
    tl.store(DQ + qrows[:, None] * stride_dqt + head * stride_dqh + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=q_mask)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(..., H, D) -> a (T, H, D) view (copy only if needed) with unit stride along D."""
    x = x.reshape(-1, x.shape[-2], x.shape[-1])
    return x if x.stride(-1) == 1 else x.contiguous()


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 products (no TF32) so that both paths agree to 1e-4.
    return "ieee" if dtype == torch.float32 else "tf32"


def _geometry(q, k, cu_q, cu_k, max_q, max_k):
    """(num_seqs, max_q, max_k, seqlen_q, seqlen_k, varlen) of a fixed or packed batch."""
    if cu_q is None:
        return q.shape[0], q.shape[1], k.shape[1], q.shape[1], k.shape[1], False
    return cu_q.numel() - 1, max_q, max_k, 0, 0, True


def flash_attention_fwd(q, k, v, cu_q, cu_k, max_q, max_k, sm_scale):
    """Launch the forward kernel. Returns (out shaped like q, lse (H, Tq) fp32 base-2)."""
    num_seqs, max_q, max_k, seqlen_q, seqlen_k, varlen = _geometry(q, k, cu_q, cu_k, max_q, max_k)
    q3, k3, v3 = _rows(q), _rows(k), _rows(v)
    n_heads, head_dim = q3.shape[1], q3.shape[2]
    out = torch.empty(q3.shape, device=q.device, dtype=q.dtype)
    lse = torch.empty((n_heads, q3.shape[0]), device=q.device, dtype=torch.float32)
    cfg = attention_settings(head_dim, q.element_size())
    cu_q_arg = cu_q if varlen else lse
    cu_k_arg = cu_k if varlen else lse
    grid = (triton.cdiv(max(max_q, 1), cfg.block_m), num_seqs * n_heads)
    _flash_attention_fwd_kernel[grid](
        q3, k3, v3, out, lse, cu_q_arg, cu_k_arg,
        q3.stride(0), q3.stride(1), k3.stride(0), k3.stride(1), v3.stride(0), v3.stride(1),
        out.stride(0), out.stride(1), lse.stride(0),
        seqlen_q, seqlen_k, n_heads, head_dim, sm_scale * _LOG2E,
        VARLEN=varlen, PRECISION=_precision(q.dtype),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out.view(q.shape), lse


def flash_attention_bwd(do, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, sm_scale):
    """Launch the backward kernels. Returns (dq, dk, dv) shaped like q, k, v."""
    num_seqs, max_q, max_k, seqlen_q, seqlen_k, varlen = _geometry(q, k, cu_q, cu_k, max_q, max_k)
    q3, k3, v3, o3, do3 = _rows(q), _rows(k), _rows(v), _rows(out), _rows(do)
    n_heads, head_dim = q3.shape[1], q3.shape[2]
    cfg = attention_settings(head_dim, q.element_size(), backward=True)
    delta = torch.empty_like(lse)
    _flash_attention_bwd_preprocess_kernel[(triton.cdiv(q3.shape[0], cfg.block_m), n_heads)](
        o3, do3, delta, o3.stride(0), o3.stride(1), do3.stride(0), do3.stride(1), delta.stride(0),
        q3.shape[0], head_dim, BLOCK_M=cfg.block_m, BLOCK_D=cfg.block_d, num_warps=cfg.num_warps,
    )
    dq = torch.empty(q3.shape, device=q.device, dtype=q.dtype)
    dk = torch.empty(k3.shape, device=k.device, dtype=k.dtype)
    dv = torch.empty(v3.shape, device=v.device, dtype=v.dtype)
    cu_q_arg = cu_q if varlen else lse
    cu_k_arg = cu_k if varlen else lse
    common = dict(VARLEN=varlen, PRECISION=_precision(q.dtype), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                  BLOCK_D=cfg.block_d, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    _flash_attention_bwd_dkdv_kernel[(triton.cdiv(max(max_k, 1), cfg.block_n), num_seqs * n_heads)](
        q3, k3, v3, do3, lse, delta, dk, dv, cu_q_arg, cu_k_arg,
        q3.stride(0), q3.stride(1), k3.stride(0), k3.stride(1), v3.stride(0), v3.stride(1),
        do3.stride(0), do3.stride(1), dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1), lse.stride(0),
        seqlen_q, seqlen_k, n_heads, head_dim, sm_scale * _LOG2E, sm_scale, **common,
    )
    _flash_attention_bwd_dq_kernel[(triton.cdiv(max(max_q, 1), cfg.block_m), num_seqs * n_heads)](
        q3, k3, v3, do3, lse, delta, dq, cu_q_arg, cu_k_arg,
        q3.stride(0), q3.stride(1), k3.stride(0), k3.stride(1), v3.stride(0), v3.stride(1),
        do3.stride(0), do3.stride(1), dq.stride(0), dq.stride(1), lse.stride(0),
        seqlen_q, seqlen_k, n_heads, head_dim, sm_scale * _LOG2E, sm_scale, **common,
    )
    return dq.view(q.shape), dk.view(k.shape), dv.view(v.shape)


class FlashAttentionFunction(torch.autograd.Function):
    """Autograd wrapper of the Triton kernels; saves q, k, v, out and lse, recomputes p in backward.

    ``apply(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, sm_scale)`` with
    q (B, Lq, H, D) and ``cu_seqlens_* = None`` for a fixed batch, or q (Tq, H, D) with int32
    ``cu_seqlens_*`` for a packed one.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, sm_scale):
        out, lse = flash_attention_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, sm_scale)
        ctx.save_for_backward(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k)
        ctx.meta = (max_seqlen_q, max_seqlen_k, sm_scale)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dout):
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        max_q, max_k, sm_scale = ctx.meta
        dq, dk, dv = flash_attention_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, sm_scale)
        return dq, dk, dv, None, None, None, None, None


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ndim: int, what: str) -> None:
    if q.ndim != ndim or k.ndim != ndim or k.shape != v.shape or q.shape[-1] != k.shape[-1] \
            or q.shape[-2] != k.shape[-2] or (ndim == 4 and q.shape[0] != k.shape[0]):
        lead = "B, L, " if ndim == 4 else "T, "
        raise ValueError(
            f"{what}: q, k, v must be ({lead}H, D) with matching B, H, D and k.shape == v.shape; "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )


def flash_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              sm_scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v per sequence and head in PyTorch. (B, Lq, H, D) -> (B, Lq, H, D)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=sm_scale)
    return out.transpose(1, 2)


def flash_attention_varlen_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                     cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                                     sm_scale: float | None = None) -> torch.Tensor:
    """Packed attention in PyTorch: each sequence attends only to itself. (Tq, H, D) -> (Tq, H, D).

    Consecutive sequences of equal lengths go through one batched call; nothing is padded.
    """
    bq, bk = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    outs, s = [], 0
    while s < len(bq) - 1:
        lq, lk = bq[s + 1] - bq[s], bk[s + 1] - bk[s]
        e = s + 1
        while e < len(bq) - 1 and bq[e + 1] - bq[e] == lq and bk[e + 1] - bk[e] == lk:
            e += 1
        n = e - s
        qs = q[bq[s]:bq[e]].reshape(n, lq, *q.shape[1:])
        if lk == 0:
            outs.append(torch.zeros_like(q[bq[s]:bq[e]]))
        else:
            ks = k[bk[s]:bk[e]].reshape(n, lk, *k.shape[1:])
            vs = v[bk[s]:bk[e]].reshape(n, lk, *v.shape[1:])
            outs.append(flash_attention_reference(qs, ks, vs, sm_scale).reshape(n * lq, *q.shape[1:]))
        s = e
    return torch.cat(outs) if outs else q.new_zeros(q.shape)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sm_scale: float | None = None) -> torch.Tensor:
    """Attention over a fixed batch, Triton or reference per :mod:`~pipeline.kernels.dispatch`.

    Args:
        q: (B, Lq, H, D); k, v: (B, Lk, H, D).
        sm_scale: logit scale, default 1 / sqrt(D).

    Returns:
        (B, Lq, H, D) in q's dtype.
    """
    _check_qkv(q, k, v, 4, "flash_attention")
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else float(sm_scale)
    if use_triton(q, k, v):
        return FlashAttentionFunction.apply(q, k, v, None, None, q.shape[1], k.shape[1], scale)
    return flash_attention_reference(q, k, v, scale)


def flash_attention_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                           cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int,
                           sm_scale: float | None = None) -> torch.Tensor:
    """Attention over packed sequences (no padding), Triton or reference per the dispatch mode.

    Args:
        q: (Tq, H, D); k, v: (Tk, H, D).
        cu_seqlens_q, cu_seqlens_k: (S + 1,) int32 cumulative offsets, first 0, last Tq / Tk.
        max_seqlen_q, max_seqlen_k: the longest sequence (sets the grid; no padding is computed).
        sm_scale: logit scale, default 1 / sqrt(D).

    Returns:
        (Tq, H, D): row t attends only to the keys of its own sequence.
    """
    _check_qkv(q, k, v, 3, "flash_attention_varlen")
    if cu_seqlens_q.ndim != 1 or cu_seqlens_q.shape != cu_seqlens_k.shape:
        raise ValueError(
            f"flash_attention_varlen: cu_seqlens_q and cu_seqlens_k must both be (S + 1,); "
            f"got {tuple(cu_seqlens_q.shape)} and {tuple(cu_seqlens_k.shape)}"
        )
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else float(sm_scale)
    if use_triton(q, k, v):
        cu_q = cu_seqlens_q.to(device=q.device, dtype=torch.int32)
        cu_k = cu_seqlens_k.to(device=q.device, dtype=torch.int32)
        return FlashAttentionFunction.apply(q, k, v, cu_q, cu_k, int(max_seqlen_q), int(max_seqlen_k), scale)
    return flash_attention_varlen_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, scale)
