"""Unsloth: FastLanguageModel.from_pretrained + get_peft_model (its own kernels and checkpointing).

On a machine without a GPU, Unsloth 2026.10 falls back to stock transformers + peft; the calls are the same.
"""

from __future__ import annotations

from stages import runtime
from stages.base_model import BaseModel


def load(base: BaseModel, train):
    runtime.require_cuda_for_4bit(train.load_in_4bit)
    from unsloth import FastLanguageModel  # must come before transformers is imported
    from transformers import AutoTokenizer

    model, _ = FastLanguageModel.from_pretrained(
        model_name=base.weights, revision=base.revision, max_seq_length=train.max_seq_length,
        dtype=runtime.compute_dtype(), load_in_4bit=train.load_in_4bit, trust_remote_code=base.trust_remote_code,
        use_exact_model_name=True)  # no swap to a pre-quantized mirror: train on the weights evaluate loads
    return model, AutoTokenizer.from_pretrained(base.tokenizer)


def add_lora(model, lora, seed: int, gradient_checkpointing):
    from unsloth import FastLanguageModel

    return FastLanguageModel.get_peft_model(
        model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        use_rslora=lora.use_rslora, bias="none", random_state=seed,
        use_gradient_checkpointing="unsloth" if gradient_checkpointing else False)
