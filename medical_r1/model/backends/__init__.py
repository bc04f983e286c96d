"""The two ways we fine-tune, behind one small interface: Unsloth, and plain transformers + peft.

`REGISTRY` names each backend's module; `train.backend` may be any of its keys (medical_r1/sections.py derives the
allowed values from it). A backend module defines `BACKEND`, an object with the methods of `Backend`; heavy imports
happen inside them, so naming or importing a backend costs nothing and Unsloth can patch transformers before
anything else loads it. The recipe (medical_r1/training/finetune.py) calls only these. Evaluation needs neither:
it loads the adapter with plain transformers + peft (medical_r1/generation/inference.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from medical_r1.model.base_model import BaseModel
    from medical_r1.model.precision import Precision

REGISTRY = {"unsloth": "unsloth", "hf": "hf"}
"""train.backend -> its module in this package."""


class Backend(Protocol):
    padding_free: bool
    """Whether the rows of a micro-batch are packed without padding (the memory estimate counts tokens so)."""

    def load(self, base: BaseModel, precision: Precision, max_seq_length: int) -> tuple[Any, Any]:
        """The base model on this machine's device in `precision`, and its tokenizer."""

    def add_lora(self, model, lora, seed: int, gradient_checkpointing: bool) -> Any:
        """`model` with LoRA adapters (a PEFT model), activations recomputed in backward when asked."""

    def trainer_args(self, gradient_checkpointing: bool) -> dict:
        """SFTConfig settings this backend needs."""

    def activation_bytes_per_token(self, model_config) -> int:
        """Bytes of activations kept for backward per token when nothing is recomputed (bf16)."""


def get(name: str) -> Backend:
    """The backend `train.backend` names (config.py has checked that it is one of REGISTRY)."""
    return importlib.import_module(f"{__name__}.{REGISTRY[name]}").BACKEND
