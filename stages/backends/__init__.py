"""One small interface over the two ways we fine-tune: Unsloth and plain transformers + peft.

Each backend module exposes the same two functions; heavy imports happen inside them, so importing
this package costs nothing and Unsloth can patch transformers before anything else loads it. Evaluation
needs neither: it loads the adapter with plain transformers + peft (stages/inference.py).

    load(base: BaseModel, train: TrainConfig) -> (model, tokenizer)
    add_lora(model, lora: LoraConfig, seed: int, gradient_checkpointing) -> peft model
"""

from __future__ import annotations

import importlib
from types import ModuleType

from stages import UserError


class BackendError(UserError):
    """A backend that cannot run as configured here; the message is one sentence."""


def get(name: str) -> ModuleType:
    """The backend module for `train.backend`."""
    return importlib.import_module(f"stages.backends.{name}_backend")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def require_cuda_for_4bit(load_in_4bit: bool) -> None:
    if load_in_4bit and not cuda_available():
        raise BackendError("train.load_in_4bit=true needs a CUDA GPU (bitsandbytes NF4); "
                           "set train.load_in_4bit=false to train in 16/32-bit on this machine")


def compute_dtype():
    """bf16 on GPUs that have it, fp16 on older GPUs, fp32 on the CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
