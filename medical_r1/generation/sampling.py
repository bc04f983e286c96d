"""Seeded sampling inside the static decoder's step (medical_r1/generation/decoding.py).

Each token is drawn by inverting the nucleus' cumulative probability at a uniform number that is a hash of (the
row's key, the token's index), computed on the device: a row's sample depends only on its key (seed, question,
sample number) and its logits, never on the batch it ran in or on a generator's state, so it reproduces byte for
byte at any batch size, and the decode step stays one CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Sampling:
    temperature: float
    """Logits are divided by it before the softmax (> 0)."""
    top_p: float
    """The nucleus: the most likely tokens until their probability reaches top_p (the first always)."""


def mix32(x):
    """Chris Wellons' lowbias32 integer hash of a 32-bit value: on Python ints or int64 tensors alike (every product
    stays below 2**63, so tensors never overflow)."""
    x = x ^ (x >> 16)
    x = _times(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _times(x, 0x846CA68B)
    return x ^ (x >> 16)


def _times(x, constant: int):
    """x * constant mod 2**32 for 0 <= x < 2**32: the constant's top bit contributes (x & 1) << 31."""
    return (x * (constant & 0x7FFFFFFF) + ((x & 1) << 31) * (constant >> 31)) & MASK32


def row_key(seed: int, prompt: int, sample: int) -> int:
    """The 32-bit key of one sampled generation: which seed, which prompt, which of its samples."""
    return mix32(mix32(mix32(seed & MASK32) ^ (prompt & MASK32)) ^ (sample & MASK32))


def uniform(keys, step):
    """A number in (0, 1) per row, from its key and the token index (exact in float32: 24 bits)."""
    return ((mix32(keys ^ mix32(step)) >> 8).float() + 0.5) / 2**24


def sample_tokens(logits, sampling: Sampling, keys, step):
    """One token per row from `logits` [rows, vocab]: the nucleus of softmax(logits / temperature), drawn at
    `uniform(keys, step)` by its cumulative probability (most likely first; ties in a stable order)."""
    import torch

    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    ordered, order = probs.sort(dim=-1, descending=True, stable=True)
    cumulative = ordered.cumsum(dim=-1)
    kept = ((cumulative - ordered) < sampling.top_p).sum(dim=-1, keepdim=True)
    mass = cumulative.gather(-1, kept - 1)
    index = (cumulative < uniform(keys, step)[:, None] * mass).sum(dim=-1, keepdim=True).clamp(max=kept - 1)
    return order.gather(-1, index).squeeze(-1)
