"""What a step must compute and read at the least, for MFU and the decoding roofline.

Training: FLOPs per token = 4 x matmul parameters (forward + activation gradients; frozen weights get no weight
gradients) + 6 x LoRA parameters + 6 x layers x hidden x the token-weighted mean row length (causal attention
forward and backward); recomputation from gradient checkpointing is not counted (MFU, not HFU).
Decoding: a step reads every weight once (the embedding table is looked up, not read), multiplies every row by it,
and reads the KV cache of every row.
"""

from __future__ import annotations

from medical_r1.model import memory


def flops_per_token(model_config, n_lora: int, mean_context: float) -> float:
    hidden, layers = model_config.hidden_size, model_config.num_hidden_layers
    q_out = model_config.num_attention_heads * memory.head_dim(model_config)
    kv_out = model_config.num_key_value_heads * memory.head_dim(model_config)
    per_layer = hidden * (q_out + 2 * kv_out) + q_out * hidden + 3 * hidden * model_config.intermediate_size
    matmul = layers * per_layer + hidden * model_config.vocab_size  # + lm_head; embeddings are lookups
    return 4 * matmul + 6 * n_lora + 6 * layers * q_out * mean_context


def mfu(tokens_per_second: float, flops: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: the share of the GPU's dense peak the measured throughput computes."""
    return round(tokens_per_second * flops / (peak_tflops * 1e12), 4)


def roofline(model_config, weight_bytes: int, rows: int, prompt_tokens: float, max_new_tokens: int,
             value_bytes: int, bandwidth_tbs: float, peak_tflops: float) -> dict:
    """The least time of a decode step: the linear layers read every weight once (the embedding table is looked up,
    not read) while doing 2 x parameters x rows FLOPs, so they take the longer of the two; attention then reads the
    KV cache of every row at the mean context of the generation (mean prompt + half the budget)."""
    kv = rows * (prompt_tokens + max_new_tokens / 2) * memory.kv_bytes_per_token(model_config, value_bytes)
    weights_seconds = weight_bytes / (bandwidth_tbs * 1e12)
    matrix_seconds = 2 * weight_bytes / value_bytes * rows / (peak_tflops * 1e12)
    seconds = max(weights_seconds, matrix_seconds) + kv / (bandwidth_tbs * 1e12)
    return {"weight_bytes": weight_bytes, "kv_cache_bytes": round(kv), "weights_ms": round(weights_seconds * 1e3, 3),
            "matrix_ms": round(matrix_seconds * 1e3, 3), "ms_per_step": round(seconds * 1000, 6)}
