"""Plain transformers + peft: AutoModelForCausalLM (+ bitsandbytes NF4) and get_peft_model.

Activations kept for backward per token, with no recomputation (bf16): per layer the inputs and outputs of
both RMSNorms (4h), q and the attention output (2h), k and v (2 kv), gate, up, SwiGLU's activation and
product (4i), and the float32 copies each RMSNorm makes of its input and output (2 x 2 x 4h bytes); then the
logits: bf16, their float32 upcast, log-softmax and its gradient (2 + 4 + 4 + 4 bytes per vocabulary entry).
"""

from __future__ import annotations

from medical_r1 import runtime
from medical_r1.model import memory, trl_cpu
from medical_r1.model.base_model import BaseModel
from medical_r1.model.precision import Precision


class HfBackend:
    padding_free = False

    def load(self, base: BaseModel, precision: Precision, max_seq_length: int):
        from transformers import AutoTokenizer

        trl_cpu.install_if_no_gpu()
        model = precision.from_pretrained(base.weights, base.revision, base.trust_remote_code)
        if precision.load_in_4bit:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return model, AutoTokenizer.from_pretrained(base.tokenizer)

    def add_lora(self, model, lora, seed: int, gradient_checkpointing: bool):
        from peft import LoraConfig, get_peft_model

        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        model.config.use_cache = False
        runtime.seed_all(seed)  # LoRA A's initialisation
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=lora.target_modules, use_rslora=lora.use_rslora, bias="none",
                            task_type="CAUSAL_LM")
        return get_peft_model(model, config)

    def trainer_args(self, gradient_checkpointing: bool) -> dict:
        return {"gradient_checkpointing": gradient_checkpointing}

    def activation_bytes_per_token(self, model_config) -> int:
        h, i, layers = model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers
        kv = model_config.num_key_value_heads * memory.head_dim(model_config)
        norms_fp32 = 2 * 2 * 4 * h
        logits = model_config.vocab_size * (2 + 4 + 4 + 4)
        return layers * (memory.BF16 * (6 * h + 2 * kv + 4 * i) + norms_fp32) + logits


BACKEND = HfBackend()
