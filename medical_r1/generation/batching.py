"""Batches for generation and the teacher-forced loss: which prompts run together, at how many rows, and how they
are padded. With `auto` a batch is as large as the free memory allows for its own longest prompt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from medical_r1.generation import decoding
from medical_r1.model import memory


@dataclass
class Batch:
    prompts: list[int]
    """Indices of the prompts it generates for."""
    rows: int
    """Rows of the decoder that runs it (a short batch is filled up with copies)."""
    prompt_length: int
    """Prompt tokens the decoder's cache holds per row (the longest prompt of its batches)."""


def plan_batches(model, lengths: list[int], max_new_tokens: int, batch_size: int | str, sampled: bool
                 ) -> list[Batch]:
    """Prompts shortest first. With `auto` each batch takes the next prompts while the KV cache of all its rows
    (its longest prompt + the budget) fits the free memory, so short prompts are not batched as if they were as long
    as the longest, and no batch is added for a few long prompts. A fixed batch_size cuts them into batches of even
    size; one too large for the GPU's free memory is shrunk to what fits, and said."""
    free = free_memory_bytes(model.device)

    def fitting(longest: int) -> int:
        return memory.generation_batch(model.config, free, longest, max_new_tokens, decoding.PREFILL_TOKENS,
                                       value_bytes(model), sampled)

    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    if batch_size == "auto":
        groups: list[list[int]] = []
        for i in order:  # fitting() falls as prompts grow: a batch closes when its next prompt would not fit
            if groups and len(groups[-1]) < fitting(lengths[i]):
                groups[-1].append(i)
            else:
                groups.append([i])
        return [Batch(group, len(group), lengths[group[-1]]) for group in groups]
    longest = lengths[order[-1]]
    fits, size = fitting(longest), batch_size
    if model.device.type == "cuda" and fits < batch_size:
        print(f"batch size {batch_size}: the KV cache of {batch_size} rows of {longest + max_new_tokens:,} tokens "
              f"does not fit the GPU's free memory; running {fits} rows per batch", flush=True)
        size = fits
    groups = batches(order, size)
    return [Batch(group, max(map(len, groups)), longest) for group in groups]


def batches(order: list[int], batch_size: int) -> list[list[int]]:
    """`order` cut into the fewest batches of at most `batch_size`, all of one size but the last (so a static
    engine pads the last one least)."""
    count = -(-len(order) // batch_size)
    size = -(-len(order) // count)
    return [order[start:start + size] for start in range(0, len(order), size)]


def padded(sequences: list[list[int]], pad: int, side: str, device):
    """Token lists -> (ids, attention mask) tensors padded on `side` to the longest."""
    import torch

    longest = max(map(len, sequences))
    fill = [[pad] * (longest - len(s)) for s in sequences]
    ids = [f + s if side == "left" else s + f for s, f in zip(sequences, fill)]
    mask = [[0] * len(f) + [1] * len(s) if side == "left" else [1] * len(s) + [0] * len(f)
            for s, f in zip(sequences, fill)]
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)


def free_memory_bytes(device) -> int:
    """Free memory of the model's device: the GPU's (counting what PyTorch's allocator holds but no tensor uses,
    e.g. after the loss pass), or the machine's available RAM."""
    import torch

    if device.type == "cuda":
        held_unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + held_unused
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def value_bytes(model) -> int:
    return next(model.parameters()).element_size()
