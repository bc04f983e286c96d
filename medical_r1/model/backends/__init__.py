"""One small interface over the two ways we fine-tune: Unsloth and plain transformers + peft.

Each backend module exposes the same names; heavy imports happen inside the functions, so importing this
package costs nothing and Unsloth can patch transformers before anything else loads it. Everything that
differs between the two lives in their modules; the recipe (stages/finetune.py) only calls:

    load(base: BaseModel, load_in_4bit: bool, max_seq_length: int) -> (model, tokenizer)
    add_lora(model, lora: LoraConfig, seed: int, gradient_checkpointing: bool, base_precision: str) -> peft model
    trainer_args(gradient_checkpointing: bool) -> dict      SFTConfig settings this backend needs
    PADDING_FREE: bool                                        rows of a micro-batch are packed without padding
    activation_bytes_per_token(model_config) -> int          kept for backward when nothing is recomputed

Evaluation needs neither backend: it loads the adapter with plain transformers + peft (stages/inference.py).
"""

from __future__ import annotations

import importlib
from types import ModuleType

def get(name: str) -> ModuleType:
    """The backend module for `train.backend`."""
    return importlib.import_module(f"medical_r1.model.backends.{name}")
