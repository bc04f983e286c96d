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


def get(name: str) -> ModuleType:
    """The backend module for `train.backend`."""
    return importlib.import_module(f"stages.backends.{name}_backend")
