"""Plain transformers + peft: AutoModelForCausalLM (+ bitsandbytes NF4) and get_peft_model."""

from __future__ import annotations

from stages import runtime
from stages.base_model import BaseModel


def load(base: BaseModel, train):
    from transformers import AutoTokenizer

    model = runtime.from_pretrained(base.weights, base.revision, base.trust_remote_code, train.load_in_4bit)
    if train.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model, AutoTokenizer.from_pretrained(base.tokenizer)


def add_lora(model, lora, seed: int, gradient_checkpointing):
    import torch
    from peft import LoraConfig, get_peft_model

    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    torch.manual_seed(seed)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, use_rslora=lora.use_rslora, bias="none",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)
