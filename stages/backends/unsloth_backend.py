"""Unsloth: FastLanguageModel.from_pretrained + get_peft_model (its own kernels and checkpointing).

On a machine without a GPU, Unsloth 2026.10 falls back to stock transformers + peft; the calls are the same.
Its collator packs a micro-batch's rows without padding. `train.base_precision: fp8` stores the LoRA-wrapped
base weights in row-wise scaled FP8 (to_fp8), which Unsloth's fused LoRA kernels multiply in FP8. Activations
kept for backward per token, with no recomputation (bf16): per layer the inputs and outputs of both RMSNorms
(4h), q and the attention output kept by flash-attention (2h), k and v (2 kv), and gate and up (2i): its fused
LoRA MLP recomputes SwiGLU, and its chunked cross-entropy never holds the full logits.
"""

from __future__ import annotations

from pathlib import Path

from stages import memory, runtime, trl_cpu
from stages.base_model import BaseModel

PADDING_FREE = True
FP8_MAX = 448.0
"""The largest finite float8_e4m3fn value."""


def load(base: BaseModel, load_in_4bit: bool, max_seq_length: int):
    runtime.require_cuda_for_4bit(load_in_4bit)
    from unsloth import FastLanguageModel  # must come before transformers is imported
    from transformers import AutoTokenizer

    trl_cpu.install_if_no_gpu()
    model, _ = FastLanguageModel.from_pretrained(
        model_name=base.weights, revision=base.revision, max_seq_length=max_seq_length,
        dtype=runtime.compute_dtype(), load_in_4bit=load_in_4bit, trust_remote_code=base.trust_remote_code,
        use_exact_model_name=True,  # no swap to a pre-quantized mirror: train on the weights evaluate loads
        local_files_only=Path(base.weights).is_dir())  # else it asks the hub for <dir>/adapter_config.json
    return model, AutoTokenizer.from_pretrained(base.tokenizer)


def add_lora(model, lora, seed: int, gradient_checkpointing: bool, base_precision: str):
    from unsloth import FastLanguageModel

    if base_precision == "fp8":
        runtime.require_fp8_gpu()
        quantized = to_fp8(model, lora.target_modules)
    model = FastLanguageModel.get_peft_model(
        model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        use_rslora=lora.use_rslora, bias="none", random_state=seed,
        use_gradient_checkpointing="unsloth" if gradient_checkpointing else False)
    if base_precision == "fp8" and fp8_weights(model) != quantized:  # a cast back would compute with raw FP8 values
        raise RuntimeError(f"Unsloth's get_peft_model left {fp8_weights(model)} of {quantized} FP8 base weights")
    return model


def to_fp8(model, target_modules: list[str]) -> int:
    """Row-wise FP8 for the base weights LoRA wraps; how many were converted. Each output row is scaled so its
    largest magnitude maps to float8_e4m3fn's largest value (448) and stored in float8 with its float32 scale in
    `weight_scale`, where Unsloth's fused LoRA kernels find it (unsloth.kernels.utils.matmul_lora -> fp8_linear):
    the forward product runs in FP8 (torch._scaled_mm, the activations quantized per row in a compiled kernel), the
    backward dequantizes the weight to bf16. `compute_dtype` makes PEFT keep the adapters in the 16-bit dtype
    instead of casting them to the weight's."""
    import torch

    converted = 0
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear and name.rsplit(".", 1)[-1] in target_modules:  # not a quantized one
            weight = module.weight.data
            scale = weight.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
            module.weight = torch.nn.Parameter((weight.float() / scale).to(torch.float8_e4m3fn), requires_grad=False)
            module.register_buffer("weight_scale", scale)
            module.compute_dtype = weight.dtype
            converted += 1
    torch.cuda.empty_cache()
    return converted


def fp8_weights(model) -> int:
    import torch

    return sum(p.dtype == torch.float8_e4m3fn for p in model.parameters())


def trainer_args(gradient_checkpointing: bool) -> dict:
    return {"gradient_checkpointing": False}  # get_peft_model has set up Unsloth's own (offloaded) checkpointing


def activation_bytes_per_token(model_config) -> int:
    h, i, layers = model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers
    kv = model_config.num_key_value_heads * memory.head_dim(model_config)
    return layers * memory.BF16 * (6 * h + 2 * kv + 2 * i)
