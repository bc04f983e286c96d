"""The activation-gradient products of a LoRA step's frozen base layers (grad_X = G @ W) on the 8B's shapes, on a
CUDA GPU with FP8 units, the three ways a backward can take them: bf16 weights; row-wise FP8 weights dequantized to
bf16 first (Unsloth's fused LoRA backward, unsloth.kernels.fp8.weight_dequant); FP8 throughout, as
`train.base_precision: fp8` runs it (medical_r1/model/fp8.FP8Weight: G quantized per row in one Triton
kernel, times W's transpose kept in FP8 per column). CUDA-event times, median of 20
after warm-up (reports/bench/NOTES.md).

    python scripts/fp8_backward_products.py [TOKENS] > reports/bench/levers/fp8-backward-products.json
"""

import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from medical_r1.model.fp8 import backward_weight, to_fp8  # noqa: E402

TOKENS = int(sys.argv[1]) if len(sys.argv) > 1 else 6912
"""A batch-8 step of the demo rows' length mix packs about this many tokens."""
MODEL = json.loads((Path(__file__).resolve().parent.parent / "models/configs/DeepSeek-R1-Distill-Llama-8B/config.json")
                   .read_text())
HIDDEN, INTERMEDIATE, LAYERS = MODEL["hidden_size"], MODEL["intermediate_size"], MODEL["num_hidden_layers"]
KV = MODEL["num_key_value_heads"] * HIDDEN // MODEL["num_attention_heads"]
SHAPES = {"q_proj/o_proj": (HIDDEN, HIDDEN), "k_proj/v_proj": (KV, HIDDEN), "gate_proj/up_proj": (INTERMEDIATE, HIDDEN),
          "down_proj": (HIDDEN, INTERMEDIATE)}
"""(N out, K in) of each weight W of the 8B; grad_X = G[TOKENS, N] @ W[N, K]."""
PER_LAYER = {"q_proj/o_proj": 2, "k_proj/v_proj": 2, "gate_proj/up_proj": 2, "down_proj": 1}
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


def measure(n: int, k: int) -> dict:
    from unsloth.kernels.fp8 import weight_dequant

    g = torch.randn(TOKENS, n, device="cuda", dtype=torch.bfloat16)
    linear = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
    torch.nn.init.normal_(linear.weight, std=0.02)
    w = linear.weight.detach().clone()
    to_fp8(torch.nn.ModuleDict({"proj": linear}), ["proj"])
    fp8_weight = backward_weight(linear.weight).t()  # W, as the backward multiplies with it
    times = {"bf16_ms": timed(lambda: g @ w),
             "fp8_weights_dequantized_ms": timed(
                 lambda: g @ weight_dequant(linear.weight, linear.weight_scale, torch.bfloat16)),
             "fp8_ms": timed(lambda: g @ fp8_weight)}
    exact = g.float() @ w.float()
    error = (((g @ fp8_weight).float() - exact).norm() / exact.norm()).item()
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
