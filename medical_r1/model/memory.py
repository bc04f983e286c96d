"""How much GPU memory a LoRA step needs without activation recomputation, and `gradient_checkpointing: auto`;
how many rows an evaluation batch can hold (`eval.batch_size: auto`).

Training: activations are counted per token from the model config (bf16, 2 bytes per value), as autograd keeps
them when nothing is recomputed; each backend states its own count (`activation_bytes_per_token` in
medical_r1/model/backends/), since Unsloth's fused kernels keep less than plain transformers. Frozen weights need no
gradients, and LoRA's own tensors (rank r) are small. The peak is what the loaded model already holds plus
tokens x bytes per token. tests/test_memory.py checks the estimate against the peaks measured on the H200
(reports/bench/*.json).

Evaluation needs no gradients: a generation batch holds the KV cache of every row for prompt + budget tokens
(layers x KV heads x head dim x 2 x bytes per token) plus one prefill chunk's activations; a loss batch holds
one layer's activations of every token at a time.
"""

from __future__ import annotations

BF16 = 2


def head_dim(model_config) -> int:
    """Width of one attention head (configs state it, or it is hidden size over heads)."""
    return getattr(model_config, "head_dim", None) or model_config.hidden_size // model_config.num_attention_heads


AUTO_BUDGET = 0.7
"""`auto` turns recomputation off when the estimated peak is at most this share of the GPU's memory: the
rest is for the allocator's fragmentation (reserved/allocated up to 1.42 measured, hf's padded batches),
the CUDA context and evaluation."""


def worst_batch_tokens(lengths: list[int], batch_size: int, padding_free: bool) -> int:
    """Tokens in the largest possible micro-batch: the `batch_size` longest rows back to back (padding-free, as
    Unsloth collates), or `batch_size` copies of the longest row (padded)."""
    longest = sorted(lengths, reverse=True)[:batch_size]
    return sum(longest) if padding_free else batch_size * longest[0]


def estimated_peak_gib(activation_bytes_per_token: int, tokens: int, loaded_gib: float) -> float:
    """Peak GPU memory (GiB) of a step over `tokens` tokens, given what the loaded model holds."""
    return loaded_gib + tokens * activation_bytes_per_token / 2**30


def choose_checkpointing(setting: str, estimated_gib: float | None, gpu_gib: float | None) -> bool:
    """`on`/`off` as given; `auto`: recompute only when the estimate does not fit (never on a CPU)."""
    if setting != "auto":
        return setting == "on"
    if estimated_gib is None or gpu_gib is None:
        return False
    return estimated_gib > AUTO_BUDGET * gpu_gib


AUTO_EVAL_SHARE = 0.9
"""`eval.batch_size: auto` fills at most this share of the memory that is free once the model is loaded."""


def kv_bytes_per_token(model_config, value_bytes: int) -> int:
    """K and V of one token in every layer."""
    layers, kv_heads = model_config.num_hidden_layers, model_config.num_key_value_heads
    return layers * kv_heads * head_dim(model_config) * 2 * value_bytes


def forward_bytes_per_token(model_config, value_bytes: int) -> int:
    """What one layer of an inference forward holds per token at its peak: gate, up and their product, the
    hidden state and its norm, attention input and output, and K/V repeated to every query head."""
    h, i = model_config.hidden_size, model_config.intermediate_size
    return value_bytes * (3 * i + 4 * h + 2 * model_config.num_attention_heads * head_dim(model_config))


SAMPLING_BYTES_PER_LOGIT = 24
"""What sampling a row's next token holds per vocabulary entry: probabilities, their sorted copy and cumulative sum
(float32 each), the sort order (int64), a mask."""


def generation_batch(model_config, free_bytes: int, prompt_tokens: int, max_new_tokens: int, prefill_tokens: int,
                     value_bytes: int, sampled: bool = False) -> int:
    """The most rows whose KV cache (prompt + budget) fits in AUTO_EVAL_SHARE of `free_bytes`, after one
    prefill chunk of `prefill_tokens` tokens and each row's logits over the vocabulary (and, when `sampled`, what
    drawing from them holds)."""
    per_logit = value_bytes + 4 + (SAMPLING_BYTES_PER_LOGIT if sampled else 0)
    per_row = (kv_bytes_per_token(model_config, value_bytes) * (prompt_tokens + max_new_tokens)
               + model_config.vocab_size * per_logit)
    usable = AUTO_EVAL_SHARE * free_bytes - prefill_tokens * forward_bytes_per_token(model_config, value_bytes)
    return max(1, int(usable // per_row))


def loss_batch(model_config, free_bytes: int, longest_row_tokens: int, logits_chunk_tokens: int,
               value_bytes: int) -> int:
    """The most rows of `longest_row_tokens` whose forward fits in AUTO_EVAL_SHARE of `free_bytes`, after the
    float32 logits of one chunk of `logits_chunk_tokens` tokens."""
    per_token = forward_bytes_per_token(model_config, value_bytes) + model_config.hidden_size * value_bytes
    per_row = longest_row_tokens * per_token
    usable = AUTO_EVAL_SHARE * free_bytes - logits_chunk_tokens * model_config.vocab_size * 4 * 2
    return max(1, int(usable // per_row))
