"""Unsloth: FastLanguageModel.from_pretrained + get_peft_model (its own kernels and checkpointing).

On a machine without a GPU, Unsloth 2026.10 falls back to stock transformers + peft; the calls are the same.
Its collator packs a micro-batch's rows without padding. `train.base_precision: fp8` stores the LoRA-wrapped
base weights twice in scaled FP8 (as W and as W.t()), multiplied in FP8 both ways (model/fp8.py, through model/precision.py). Activations
kept for backward per token, with no recomputation (bf16): per layer the inputs and outputs of both RMSNorms
(4h), q and the attention output kept by flash-attention (2h), k and v (2 kv), and gate and up (2i): its fused
LoRA MLP recomputes SwiGLU, and its chunked cross-entropy never holds the full logits.
"""

from __future__ import annotations

from pathlib import Path

from medical_r1 import runtime
from medical_r1.model import memory, trl_cpu
from medical_r1.model.base_model import BaseModel
from medical_r1.model.precision import Precision


class UnslothBackend:
    padding_free = True

    def load(self, base: BaseModel, precision: Precision, max_seq_length: int):
        precision.require_machine()
        from unsloth import FastLanguageModel  # must come before transformers is imported
        from transformers import AutoTokenizer

        trl_cpu.install_if_no_gpu()
        model, _ = FastLanguageModel.from_pretrained(
            model_name=base.weights, revision=base.revision, max_seq_length=max_seq_length,
            dtype=runtime.compute_dtype(), load_in_4bit=precision.load_in_4bit,
            trust_remote_code=base.trust_remote_code, device_map=runtime.device_map() or "sequential",
            use_exact_model_name=True,  # no swap to a pre-quantized mirror: train on the weights evaluate loads
            local_files_only=Path(base.weights).is_dir())  # else it asks the hub for <dir>/adapter_config.json
        return model, AutoTokenizer.from_pretrained(base.tokenizer)

    def add_lora(self, model, lora, seed: int, gradient_checkpointing: bool):
        from unsloth import FastLanguageModel

        return FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
            use_rslora=lora.use_rslora, bias="none", random_state=seed,
            use_gradient_checkpointing="unsloth" if gradient_checkpointing else False)

    def trainer_args(self, gradient_checkpointing: bool) -> dict:
        return {"gradient_checkpointing": False}  # get_peft_model has set up Unsloth's own (offloaded) checkpointing

    def activation_bytes_per_token(self, model_config) -> int:
        h, i, layers = model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers
        kv = model_config.num_key_value_heads * memory.head_dim(model_config)
        return layers * memory.BF16 * (6 * h + 2 * kv + 2 * i)


BACKEND = UnslothBackend()
