"""The activation-gradient products of a LoRA step's frozen base layers (grad_X = G @ W) on the 8B's shapes, on a
CUDA GPU with FP8 units: bf16 weights; FP8 weights dequantized to bf16 first (what Unsloth's fused LoRA backward does
with FP8 weights); FP8 throughout (G scaled by W's row scales and quantized per row in one compiled kernel, times a
transposed FP8 copy of W). CUDA-event times, median of 20 after warm-up (reports/bench/NOTES.md).

    python scripts/fp8_backward_products.py [TOKENS] > reports/bench/levers/fp8-backward-products.json
"""

import json
import statistics
import sys

import torch

TOKENS = int(sys.argv[1]) if len(sys.argv) > 1 else 6912
"""A batch-8 step of the demo rows' length mix packs about this many tokens."""
SHAPES = {"q_proj/o_proj": (4096, 4096), "k_proj/v_proj": (1024, 4096), "gate_proj/up_proj": (14336, 4096),
          "down_proj": (4096, 14336)}
"""(N out, K in) of each weight W of the 8B; grad_X = G[TOKENS, N] @ W[N, K]."""
PER_LAYER = {"q_proj/o_proj": 2, "k_proj/v_proj": 2, "gate_proj/up_proj": 2, "down_proj": 1}
LAYERS = 32
VARIANTS = ("bf16_ms", "fp8_weights_dequantized_ms", "fp8_ms")


def timed(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@torch.compile
def quantize_scaled_rows(g, w_scale_row):
    scaled = g.float() * w_scale_row  # W's per-row scales folded into G's columns
    scale = scaled.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 448.0
    return (scaled / scale).to(torch.float8_e4m3fn), scale


def measure(n: int, k: int) -> dict:
    g = torch.randn(TOKENS, n, device="cuda", dtype=torch.bfloat16)
    w = (torch.randn(n, k, device="cuda") * 0.02).to(torch.bfloat16)
    w_scale = w.abs().amax(dim=1, keepdim=True).float() / 448.0
    w_fp8 = (w.float() / w_scale).to(torch.float8_e4m3fn)
    w_fp8_t = w_fp8.t().contiguous()  # W as [N, K] column-major: what _scaled_mm takes second
    ones = torch.ones(1, k, device="cuda")

    def fp8():
        gq, gs = quantize_scaled_rows(g, w_scale.view(1, -1))
        return torch._scaled_mm(gq, w_fp8_t.t(), scale_a=gs, scale_b=ones, out_dtype=torch.bfloat16)

    times = {"bf16_ms": timed(lambda: g @ w),
             "fp8_weights_dequantized_ms": timed(lambda: g @ (w_fp8.to(torch.bfloat16) * w_scale.to(torch.bfloat16))),
             "fp8_ms": timed(fp8)}
    exact = g.float() @ w.float()
    error = ((fp8().float() - exact).norm() / exact.norm()).item()
    flop = 2 * TOKENS * n * k
    return {**{key: round(ms, 3) for key, ms in times.items()}, "fp8_relative_error": round(error, 4),
            "bf16_tflops": round(flop / times["bf16_ms"] / 1e9, 1),
            "fp8_tflops": round(flop / times["fp8_ms"] / 1e9, 1)}


def main() -> None:
    result = {"tokens": TOKENS, **{name: measure(*shape) for name, shape in SHAPES.items()}}
    per_layer = {key: sum(result[name][key] * count for name, count in PER_LAYER.items()) for key in VARIANTS}
    result["per_layer_ms"] = {key: round(ms, 3) for key, ms in per_layer.items()}
    result[f"per_step_{LAYERS}_layers_ms"] = {key: round(LAYERS * ms, 1) for key, ms in per_layer.items()}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
