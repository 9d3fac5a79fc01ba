"""Kernel benchmark (CUDA only): the Triton kernels against their PyTorch counterparts.

- FlashAttention forward and forward + backward, fixed-length and packed varlen, against
  ``torch.nn.functional.scaled_dot_product_attention`` (PyTorch's own flash / efficient kernels;
  for varlen, SDPA on the zero-padded batch with a key mask, the usual alternative);
- fused LayerNorm against eager ``F.layer_norm``;
- fused bias + GELU / SiLU / SwiGLU against eager ``act(x + b)``.

Timings are ``triton.testing.do_bench`` medians in milliseconds, in bf16, at the token counts
of the default hybrid (N x 192 tokens, C = 160, 5 heads of 32) and of ViTPose-B (N x 192 tokens,
C = 768, 12 heads of 64).

Run: ``python benchmarks/bench_kernels.py [--batch 64]``. On a machine without CUDA it exits
with status 2 and a message (use ``bench_backbone.py --cpu`` for the CPU figure).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {"hybrid": (192, 160, 5), "vitpose-b": (192, 768, 12)}  # tokens per image, C, heads


def _bench(fn) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=25, rep=100))


def _fwd_bwd(fn, inputs):
    def run():
        out = fn(*inputs)
        out.backward(torch.ones_like(out))
    return run


def bench_attention(batch: int, tokens: int, dim: int, heads: int) -> dict[str, float]:
    from pipeline.kernels import flash_attention, flash_attention_varlen, kernel_mode_override
    from pipeline.model.packing import cu_seqlens_of

    d = dim // heads
    q, k, v = (torch.randn(batch, tokens, heads, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))

    out = {}
    with kernel_mode_override("triton"):
        out["fixed_fwd_triton"] = _bench(lambda: flash_attention(q, k, v))
        out["fixed_fwdbwd_triton"] = _bench(_fwd_bwd(flash_attention, (q, k, v)))
    out["fixed_fwd_sdpa"] = _bench(lambda: sdpa(q, k, v))
    out["fixed_fwdbwd_sdpa"] = _bench(_fwd_bwd(sdpa, (q, k, v)))
    # packed crops of 50-100 % of the token count, against SDPA on the padded batch
    g = torch.Generator().manual_seed(0)
    lengths = (torch.rand(batch, generator=g) * 0.5 + 0.5).mul(tokens).long().clamp_min(1).tolist()
    total = sum(lengths)
    qp, kp, vp = (torch.randn(total, heads, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                  for _ in range(3))
    cu = cu_seqlens_of(lengths, torch.device("cuda"))
    mask = (torch.arange(tokens, device="cuda")[None, :] < torch.tensor(lengths, device="cuda")[:, None])
    mask = mask[:, None, None, :]

    def padded(q, k, v):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              attn_mask=mask)

    def varlen(q, k, v):
        return flash_attention_varlen(q, k, v, cu, cu, max(lengths), max(lengths))

    with kernel_mode_override("triton"):
        out["varlen_fwd_triton"] = _bench(lambda: varlen(qp, kp, vp))
        out["varlen_fwdbwd_triton"] = _bench(_fwd_bwd(varlen, (qp, kp, vp)))
    out["padded_fwd_sdpa"] = _bench(lambda: padded(q, k, v))
    out["padded_fwdbwd_sdpa"] = _bench(_fwd_bwd(padded, (q, k, v)))
    return out


def bench_norm_and_activations(rows: int, dim: int) -> dict[str, float]:
    from pipeline.kernels import bias_activation, kernel_mode_override, layer_norm

    x = torch.randn(rows, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.ones(dim, device="cuda", requires_grad=True)
    b = torch.zeros(dim, device="cuda", requires_grad=True)
    h = torch.randn(rows, 4 * dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    hb = torch.zeros(4 * dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    out = {}
    with kernel_mode_override("triton"):
        out["layernorm_fwdbwd_triton"] = _bench(_fwd_bwd(lambda x: layer_norm(x, w, b), (x,)))
        for act in ("gelu", "silu", "swiglu"):
            out[f"{act}_fwdbwd_triton"] = _bench(_fwd_bwd(lambda h, act=act: bias_activation(h, hb, act), (h,)))
    out["layernorm_fwdbwd_eager"] = _bench(_fwd_bwd(lambda x: F.layer_norm(x, (dim,), w.bfloat16(), b.bfloat16()),
                                                     (x,)))
    eager = {"gelu": lambda h: F.gelu(h + hb), "silu": lambda h: F.silu(h + hb),
             "swiglu": lambda h: (lambda a, g: F.silu(a) * g)(*(h + hb).chunk(2, -1))}
    for act, fn in eager.items():
        out[f"{act}_fwdbwd_eager"] = _bench(_fwd_bwd(fn, (h,)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per batch")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_kernels.py: needs a CUDA GPU (torch.cuda.is_available() is False); nothing was timed. "
              "For the CPU reference throughput run: python benchmarks/bench_backbone.py --cpu", file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401
    except ImportError:
        print("bench_kernels.py: needs triton (pip install triton)", file=sys.stderr)
        return 2
    report = {"device": torch.cuda.get_device_name(), "batch": args.batch, "unit": "ms (do_bench median)"}
    for name, (tokens, dim, heads) in SHAPES.items():
        report[name] = {**bench_attention(args.batch, tokens, dim, heads),
                        **bench_norm_and_activations(args.batch * tokens, dim)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
