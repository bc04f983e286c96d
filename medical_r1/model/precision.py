"""How the frozen base is stored while a run trains, chosen in one place (`for_training`):

    bf16   the compute dtype: bf16 on GPUs that have it, fp16 on older ones, float32 on a CPU
    4bit   NF4 with double quantization (QLoRA, bitsandbytes): a CUDA GPU
    fp8    scaled float8 copies of the LoRA-wrapped weights, products in FP8 both ways (model/fp8.py): the unsloth
           backend on a GPU with FP8 units

Evaluation loads the base as training saw it (`for_inference`: NF4 for a 4-bit run, else 16-bit; FP8 is a training
speed-up, not a different model). config.py's rules refuse what no machine could run (fp8 with hf, with 4-bit, ...);
`require_machine` refuses what this machine cannot, before any weights load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from medical_r1 import UserError, runtime

Name = Literal["bf16", "4bit", "fp8"]


@dataclass(frozen=True)
class Precision:
    name: Name

    @property
    def load_in_4bit(self) -> bool:
        return self.name == "4bit"

    def require_machine(self) -> None:
        cuda = runtime.cuda_available()
        if self.name == "4bit" and not cuda:
            raise UserError("train.load_in_4bit=true needs a CUDA GPU (bitsandbytes NF4); "
                            "set train.load_in_4bit=false to train in 16/32-bit on this machine")
        if self.name == "fp8" and not has_fp8_units():
            has = runtime.device_name() if cuda else "no CUDA GPU"
            raise UserError(f"train.base_precision: fp8 needs a CUDA GPU with FP8 matrix units (compute capability "
                            f"8.9 or later: Ada, Hopper, Blackwell); this machine has {has}; use bf16")

    def from_pretrained(self, weights: str, revision: str | None, trust_remote_code: bool):
        """A causal LM with plain transformers in this precision (FP8 converts later, around LoRA), on this
        machine's device."""
        self.require_machine()
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        kwargs = {}
        if self.load_in_4bit:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=runtime.compute_dtype())
        return AutoModelForCausalLM.from_pretrained(
            weights, revision=revision, dtype=runtime.compute_dtype(), trust_remote_code=trust_remote_code,
            device_map=runtime.device_map(), use_safetensors=True, **kwargs)

    def add_lora(self, backend, model, lora, seed: int, gradient_checkpointing: bool) -> Any:
        """backend.add_lora, with FP8's conversion of the wrapped weights before and its check after."""
        if self.name != "fp8":
            return backend.add_lora(model, lora, seed, gradient_checkpointing)
        from medical_r1.model import fp8

        converted = fp8.to_fp8(model, lora.target_modules)
        fp8.keep_fp8_products()
        model = backend.add_lora(model, lora, seed, gradient_checkpointing)
        fp8.require_fp8_weights(model, converted)
        return model


def has_fp8_units() -> bool:
    """FP8 matrix units: compute capability 8.9 or later (Ada, Hopper, Blackwell)."""
    import torch

    return runtime.cuda_available() and torch.cuda.get_device_capability() >= (8, 9)


def for_training(train) -> Precision:
    return Precision("4bit" if train.load_in_4bit else train.base_precision)


def for_inference(load_in_4bit: bool) -> Precision:
    return Precision("4bit" if load_in_4bit else "bf16")
