"""Triton kernels of the pose network's hot ops, each beside a pure-PyTorch reference.

One module per op, Liger-Kernel style: ``_op_fwd_kernel`` / ``_op_bwd_kernel`` (``@triton.jit``),
plain launchers, an ``OpFunction(torch.autograd.Function)``, an ``op_reference`` and a
dispatching entry point that picks the path per :mod:`pipeline.kernels.dispatch`
(``POSECAP_KERNELS=auto|triton|reference``; auto = Triton on CUDA tensors when importable).

- :mod:`~pipeline.kernels.flash_attention`: FlashAttention forward/backward, fixed-length and
  packed variable-length (``cu_seqlens``) batches.
- :mod:`~pipeline.kernels.layer_norm`: fused LayerNorm and RMSNorm.
- :mod:`~pipeline.kernels.bias_activation`: fused bias + GELU / SiLU / SwiGLU.
"""

from pipeline.kernels.bias_activation import bias_activation, bias_activation_reference, linear_activation
from pipeline.kernels.dispatch import (
    configure_kernels,
    kernel_mode,
    kernel_mode_override,
    set_kernel_mode,
    triton_available,
    use_triton,
)
from pipeline.kernels.flash_attention import (
    flash_attention,
    flash_attention_reference,
    flash_attention_varlen,
    flash_attention_varlen_reference,
)
from pipeline.kernels.layer_norm import layer_norm, layer_norm_reference, rms_norm, rms_norm_reference

__all__ = [
    "bias_activation",
    "bias_activation_reference",
    "configure_kernels",
    "flash_attention",
    "flash_attention_reference",
    "flash_attention_varlen",
    "flash_attention_varlen_reference",
    "kernel_mode",
    "kernel_mode_override",
    "layer_norm",
    "layer_norm_reference",
    "linear_activation",
    "rms_norm",
    "rms_norm_reference",
    "set_kernel_mode",
    "triton_available",
    "use_triton",
]
