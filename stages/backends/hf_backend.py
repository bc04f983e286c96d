"""Plain transformers + peft: AutoModelForCausalLM (+ bitsandbytes NF4) and get_peft_model."""

from __future__ import annotations

from stages.base_model import BaseModel
from stages.backends import compute_dtype, cuda_available, require_cuda_for_4bit


def load(base: BaseModel, train):
    require_cuda_for_4bit(train.load_in_4bit)
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    kwargs = {}
    if train.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype())
    model = AutoModelForCausalLM.from_pretrained(
        base.weights, revision=base.revision, dtype=compute_dtype(), trust_remote_code=base.trust_remote_code,
        device_map={"": 0} if cuda_available() else None, use_safetensors=True, **kwargs)
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
