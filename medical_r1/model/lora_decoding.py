"""The tuned model for decoding, exact and at the base's speed: the adapter merged into the weights when the merge
keeps its effect, else its LoRA products beside the base projections, one product per shared input.

A merge adds the low-rank update to each weight and rounds the sum to the weights' dtype. In float32 that loses
nothing; in bf16 (8 bits of mantissa) an update much smaller than the weight is largely rounded away (on the H200 a
12-step adapter of the 8B gave teacher-forced loss 8.497 with its LoRA layers and 9.141 merged). So the merge is
measured first: for every adapted projection, the error of the merged update, |round(W + dW) - W - dW| / |dW|
(Frobenius norms), and the adapter is merged only when the largest is at most MERGE_TOLERANCE. Otherwise each
projection runs as base(x) + (x A^T) (s B)^T in two GEMMs, the second accumulating into the base's output, and the
projections that read the same input (q/k/v, gate/up) share one product x [A_q; A_k; A_v]^T: PEFT's LoRA layers
spend ~6 extra kernels per projection (casts to float32, scaling, the add), which cost 30% of a decode step.
`fused` runs those products for the length of a with-block and then puts PEFT's layers back: GRPO's rollouts decode
the policy so between its updates.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Literal

MERGE_TOLERANCE = 0.01
"""Largest relative error of a merged update for which the adapter is merged (1% of its effect)."""
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Projections of one module that read the same input (a Llama-family attention and MLP)."""


@dataclass(frozen=True)
class Route:
    path: Literal["merged", "lora"]
    """`merged` into the weights, or `lora`: the adapter's products beside the base's."""
    merge_error: float
    """The largest relative error a merge would make (or made) of one projection's update."""


def for_decoding(peft_model) -> tuple[object, Route]:
    """The plain model to decode with (no PEFT layers left), and which route it took."""
    error = merge_error(peft_model)
    if error <= MERGE_TOLERANCE:
        return peft_model.merge_and_unload(), Route("merged", error)
    return fuse(peft_model), Route("lora", error)


def lora_layers(peft_model) -> dict[str, object]:
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}


def merge_error(peft_model) -> float:
    """max over adapted projections of |round(W + dW) - W - dW| / |dW| (0 for an update of zero)."""
    import torch

    worst = 0.0
    with torch.no_grad():
        for layer in lora_layers(peft_model).values():
            weight = layer.get_base_layer().weight
            for adapter in layer.active_adapters:
                update = layer.get_delta_weight(adapter).float()
                size = update.norm().item()
                if size > 0:
                    merged = (weight.float() + update).to(weight.dtype).float()
                    worst = max(worst, (merged - weight.float() - update).norm().item() / size)
    return worst


@functools.cache
def _modules():
    """(SharedDown, LoraProjection), built on first use so that importing this module does not import torch."""
    import torch

    class SharedDown(torch.nn.Module):
        """x [A_1; ...; A_n]^T for the `readers` projections that read the same x: computed for the first, reused by
        the rest (each holds this module; `x is` the last input while they run one after the other on it). Once the
        last has read it, x and the product are let go: held on, every layer's input of a prefill chunk would stay
        in memory (64 x 16,384 tokens x 4,096 x 2 bytes, 8.6 GB, for the 8B)."""

        def __init__(self, weight, readers: int):
            super().__init__()
            self.register_buffer("weight", weight, persistent=False)
            self.readers, self.read = readers, 0
            self.last_input, self.last_output = None, None

        def forward(self, x):
            if x is not self.last_input:
                self.last_input, self.last_output = x, torch.nn.functional.linear(x, self.weight)
                self.read = 0
            out = self.last_output
            self.read += 1
            if self.read >= self.readers:
                self.last_input, self.last_output = None, None
            return out

    class LoraProjection(torch.nn.Module):
        """base(x) + (x A^T)[its columns] (s B)^T, the second product accumulated into the base's output."""

        def __init__(self, base, down, columns: slice, up):
            super().__init__()
            self.base, self.down, self.columns = base, down, columns
            self.register_buffer("up_t", up.t().contiguous(), persistent=False)

        def forward(self, x):
            out = self.base(x)
            low = self.down(x).reshape(-1, self.down.weight.shape[0])[:, self.columns]
            return torch.addmm(out.reshape(-1, out.shape[-1]), low, self.up_t).view(out.shape)

    return SharedDown, LoraProjection


def fuse(peft_model):
    """The base model with each LoRA layer replaced by a LoraProjection in the base's dtype."""
    for parent, child, projection in projections(peft_model):
        setattr(parent, child, projection)
    return peft_model.get_base_model()


@contextlib.contextmanager
def fused(peft_model):
    """The base model decoding with the adapter's current weights as LoraProjections (as `fuse`), its LoRA layers
    put back on exit: GRPO's rollouts decode fast while the PEFT model trains on between them. A base quantized to
    4 bits keeps PEFT's layers (LoraProjection adds into a 16-bit output)."""
    layers = lora_layers(peft_model)
    if not all(layer.get_base_layer().weight.is_floating_point() for layer in layers.values()):
        yield peft_model
        return
    replaced = projections(peft_model)
    try:
        for parent, child, projection in replaced:
            setattr(parent, child, projection)
        yield peft_model.get_base_model()
    finally:
        for name, layer in layers.items():
            parent, _, child = name.rpartition(".")
            setattr(peft_model.get_submodule(parent), child, layer)


def projections(peft_model) -> list[tuple[object, str, object]]:
    """(parent module, attribute, LoraProjection) for each LoRA layer, from the adapter's weights as they are now
    (copies in the base's dtype, outside autograd)."""
    import torch

    layers = lora_layers(peft_model)
    shared_down, projection = _modules()
    parents: dict[str, dict[str, object]] = {}
    for name, layer in layers.items():
        parent, _, child = name.rpartition(".")
        parents.setdefault(parent, {})[child] = layer
    out = []
    with torch.no_grad():
        for parent_name, children in parents.items():
            parent = peft_model.get_submodule(parent_name)
            groups = [[c for c in group if c in children] for group in SHARED_INPUTS]
            groups += [[c] for c in children if not any(c in g for g in SHARED_INPUTS)]
            for group in filter(None, groups):
                bases = [children[c].get_base_layer() for c in group]
                adapter = children[group[0]].active_adapters[0]
                downs = [children[c].lora_A[adapter].weight for c in group]
                dtype = bases[0].weight.dtype
                down = shared_down(torch.cat(downs).to(dtype), len(group))
                start = 0
                for child, base, a in zip(group, bases, downs):
                    layer = children[child]
                    up = (layer.lora_B[adapter].weight * layer.scaling[adapter]).to(dtype)
                    out.append((parent, child, projection(base, down, slice(start, start + a.shape[0]), up)))
                    start += a.shape[0]
    return out
