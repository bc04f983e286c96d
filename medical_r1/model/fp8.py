"""FP8 for the frozen base of an Unsloth LoRA run (`train.base_precision: fp8`, a CUDA GPU with FP8 units).

`to_fp8` stores each LoRA-wrapped base weight W [out, in] twice in float8_e4m3fn: as W scaled per output row, in
the module's `weight` with its float32 scale in `weight_scale` (where Unsloth's fused LoRA kernels look), and as
W's transpose scaled per input column, for the backward (cuBLAS multiplies FP8 only with both operands' summed
dimension contiguous, and the backward sums over W's other dimension). `keep_fp8_products` then makes both
products of each frozen layer FP8 inside Unsloth's fused LoRA kernels (LoRA_MLP, LoRA_QKV, LoRA_W):

    forward   X @ W.t()   X quantized per row      x  W per row          (Unsloth's compiled fp8_linear replaced)
    backward  G @ W       G quantized per row      x  W.t() per column   (Unsloth dequantizes W to bf16 here)

Activations and gradients are quantized per row in one Triton kernel each (a torch.compile'd quantization took
far more host time per call: reports/bench/NOTES.md). Both FP8 copies together take the memory of the bf16 weight.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
import triton
import triton.language as tl

from medical_r1.model import patches

FP8_MAX = 448.0
"""The largest finite float8_e4m3fn value."""
_BACKWARD_WEIGHTS: dict[int, FP8Weight] = {}
"""data_ptr of each converted weight -> the W.t() Unsloth's backward gets for it (its transposed FP8 copy). Unsloth
hands its kernels the weight tensor (or a view of it), not the module, so the copy is found by address; an entry
goes when its weight does."""


def to_fp8(model, target_modules: list[str]) -> int:
    """Both FP8 copies of the base weights LoRA wraps; how many were converted. Each row of a copy is scaled so its
    largest magnitude maps to FP8_MAX. `compute_dtype` makes PEFT keep the adapters in the 16-bit dtype instead of
    casting them to the weight's."""
    converted = 0
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear and name.rsplit(".", 1)[-1] in target_modules:  # not a quantized one
            weight = module.weight.data
            rows, row_scale = quantize_rows(weight)
            transposed, column_scale = quantize_rows(weight.t())
            module.weight = torch.nn.Parameter(rows, requires_grad=False)
            module.register_buffer("weight_scale", row_scale)
            module.compute_dtype = weight.dtype
            _BACKWARD_WEIGHTS[rows.data_ptr()] = FP8Weight(transposed, column_scale.view(1, -1), weight.dtype,
                                                           is_transpose=True)
            weakref.finalize(module.weight, _BACKWARD_WEIGHTS.pop, rows.data_ptr(), None)
            converted += 1
    torch.cuda.empty_cache()
    return converted


def require_fp8_weights(model, converted: int) -> None:
    """Fail if a later step (get_peft_model) cast FP8 weights back (they would compute with raw FP8 values) or
    moved them (their backward copies would no longer be found)."""
    fp8 = [p for p in model.parameters() if p.dtype == torch.float8_e4m3fn]
    found = sum(backward_weight(p) is not None for p in fp8)
    if len(fp8) != converted or found != converted:
        raise RuntimeError(f"Unsloth's get_peft_model left {len(fp8)} of {converted} FP8 base weights, {found} of "
                           "them where their backward copies are")


def keep_fp8_products() -> Callable[[], None]:
    """Route the frozen layers' products in Unsloth's fused LoRA kernels through `forward_product` and `FP8Weight`
    for weights `to_fp8` converted; every other weight passes through unchanged. Unsloth's forward calls
    `fp8_linear(X, W, weight_scale)`; each backward asks `fast_dequantize(W.t(), weight_scale)` for a bf16 weight
    and multiplies with its `.t()` (patches.UNSLOTH_FP8_PRODUCTS). Idempotent; returns the patch's undo."""
    from unsloth.kernels import fast_lora, utils

    linear, dequantize = utils.fp8_linear, fast_lora.fast_dequantize

    def fp8_linear(X, weight, weight_scale, bias=None):
        if bias is None and backward_weight(weight) is not None and weight.stride(1) == 1:
            return forward_product(X, weight, weight_scale)
        return linear(X, weight, weight_scale, bias)

    def fast_dequantize(weight, quant_state=None, *args, dtype=None, **kwargs):
        found = backward_weight(weight) if weight.dim() == 2 and weight.stride(0) == 1 else None  # a W.t() view
        return found if found is not None else dequantize(weight, quant_state, *args, dtype=dtype, **kwargs)

    return patches.apply(patches.UNSLOTH_FP8_PRODUCTS, fp8_linear, fast_dequantize)


def backward_weight(weight: torch.Tensor) -> FP8Weight | None:
    """W.t() in FP8 for a weight `to_fp8` converted (or a view of it, as Unsloth's backward passes W.t()); None for
    any other tensor."""
    if weight.dtype != torch.float8_e4m3fn or weight.dim() != 2:
        return None
    found = _BACKWARD_WEIGHTS.get(weight.data_ptr())
    return found if found is not None and found.transposed.numel() == weight.numel() else None


def forward_product(x: torch.Tensor, weight: torch.Tensor, row_scale: torch.Tensor) -> torch.Tensor:
    """x [..., in] @ W.t() for W = row_scale * weight (FP8 [out, in]), with the fast accumulation Unsloth's own FP8
    forward uses (the held-out loss of the FP8 runs was measured with it)."""
    quantized, x_scale = quantize_rows(x.reshape(-1, x.shape[-1]))
    product = torch._scaled_mm(quantized, weight.t(), scale_a=x_scale, scale_b=row_scale.view(1, -1),
                               out_dtype=x.dtype, use_fast_accum=True)
    return product.view(*x.shape[:-1], -1)


class FP8Weight:
    """W = column_scale * transposed.t() (transposed: FP8 [in, out], row-major), or W.t() (`is_transpose`), standing
    in for the bf16 weight Unsloth's backward would multiply with. The products it takes there (`torch.matmul(G, W,
    out=...)`, `G @ W`, `out.addmm_(G, W, alpha=, beta=)`) reach `__torch_function__` and run in FP8; any other
    use raises."""

    def __init__(self, transposed: torch.Tensor, column_scale: torch.Tensor, dtype: torch.dtype,
                 is_transpose: bool = False):
        self.transposed, self.column_scale, self.dtype = transposed, column_scale, dtype
        self.is_transpose = is_transpose

    def t(self) -> FP8Weight:
        return FP8Weight(self.transposed, self.column_scale, self.dtype, not self.is_transpose)

    def times(self, grad: torch.Tensor) -> torch.Tensor:
        """grad [..., out] @ W, in FP8 with exact float32 accumulation (as the products benchmark measured it)."""
        if self.is_transpose:
            raise TypeError("FP8Weight multiplies as W (the backward's orientation), not as W.t()")
        quantized, grad_scale = quantize_rows(grad.reshape(-1, grad.shape[-1]))
        product = torch._scaled_mm(quantized, self.transposed.t(), scale_a=grad_scale, scale_b=self.column_scale,
                                   out_dtype=self.dtype)
        return product.view(*grad.shape[:-1], -1)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__) and isinstance(args[1], cls):
            product = args[1].times(args[0])
            return product if kwargs.get("out") is None else kwargs["out"].copy_(product)
        if func is torch.Tensor.addmm_ and isinstance(args[2], cls):
            out, grad, weight = args
            beta, alpha = kwargs.get("beta", 1.0), kwargs.get("alpha", 1.0)
            if beta != 1.0:
                out.mul_(beta)
            return out.add_(weight.times(grad), alpha=alpha)
        return NotImplemented


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [rows, columns] in float8_e4m3fn, each row scaled so its largest magnitude is FP8_MAX, and the rows'
    float32 scales [rows, 1]. One Triton kernel on a GPU."""
    if not x.is_cuda:
        scale = x.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX
        return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale
    if x.stride(1) != 1:
        x = x.contiguous()
    rows, columns = x.shape
    quantized = torch.empty(rows, columns, device=x.device, dtype=torch.float8_e4m3fn)
    scale = torch.empty(rows, 1, device=x.device, dtype=torch.float32)
    _quantize_rows_kernel[(rows,)](x, quantized, scale, columns, x.stride(0), FP8_MAX, BLOCK=1024, num_warps=4)
    return quantized, scale


@triton.jit
def _quantize_rows_kernel(x_ptr, out_ptr, scale_ptr, columns, x_row_stride, fp8_max, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * columns
    largest = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, columns, BLOCK):
        offsets = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + offsets, mask=offsets < columns, other=0.0).to(tl.float32)
        largest = tl.maximum(largest, tl.abs(x))
    scale = tl.maximum(tl.max(largest, axis=0), 1e-12) / fp8_max
    tl.store(scale_ptr + row, scale)
    for start in range(0, columns, BLOCK):
        offsets = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + offsets, mask=offsets < columns, other=0.0).to(tl.float32)
        scaled = tl.minimum(tl.maximum(x / scale, -fp8_max), fp8_max)
        tl.store(out_row + offsets, scaled.to(tl.float8e4nv), mask=offsets < columns)
