"""Decode attention as one Triton kernel: one program per (row, KV head) reads that row's K/V cache only from its
first prompt token to the current slot, the query heads of the KV head as one tile (K and V read once), with the
softmax online in float32 as flash attention keeps it. The static decoder (decoding.py) uses it on a CUDA GPU in
16-bit once `decoding.kernel_usable` has checked it against the batched products; tests run it under Triton's
interpreter on the CPU. Its profile on an H100: reports/bench/NOTES.md ("Decoding at MedQA's shapes")."""

from __future__ import annotations

import functools

BLOCK = 64
"""Cache slots the kernel reads per iteration (K and V: 2 x 64 x head dim x 2 bytes)."""
WARPS = 4
STAGES = 3
"""Loads the kernel keeps in flight (software pipelining)."""


@functools.cache
def _decode_kernel():
    """The Triton kernel of `decode_attention`, built on first use (importing this module needs no Triton)."""
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(q_ptr, k_ptr, v_ptr, out_ptr, starts_ptr, position_ptr, scale,
               q_row, q_head, k_row, k_head, k_slot, v_row, v_head, v_slot, o_row, o_head,
               KV_HEADS: tl.constexpr, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
               BLOCK: tl.constexpr):
        program = tl.program_id(0)
        row, kv_head = (program // KV_HEADS).to(tl.int64), program % KV_HEADS  # offsets past 2**31 elements
        start = tl.load(starts_ptr + row).to(tl.int32)
        end = tl.load(position_ptr).to(tl.int32) + 1
        group, dims = tl.arange(0, GROUP_PAD), tl.arange(0, HEAD_DIM)
        heads = kv_head * GROUP + group
        real = (group < GROUP)[:, None]
        q = tl.load(q_ptr + row * q_row + heads[:, None] * q_head + dims[None, :], mask=real, other=0.0)
        best = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        total = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
        keys = k_ptr + row * k_row + kv_head * k_head
        values = v_ptr + row * v_row + kv_head * v_head
        for block in range(start // BLOCK * BLOCK, end, BLOCK):
            slots = block + tl.arange(0, BLOCK)
            visible = (slots >= start) & (slots < end)
            k = tl.load(keys + slots[:, None] * k_slot + dims[None, :], mask=visible[:, None], other=0.0)
            scores = tl.dot(q, tl.trans(k)) * scale
            scores = tl.where(visible[None, :], scores, float("-inf"))
            top = tl.maximum(best, tl.max(scores, 1))
            correction = tl.exp(best - top)
            p = tl.exp(scores - top[:, None])
            total = total * correction + tl.sum(p, 1)
            v = tl.load(values + slots[:, None] * v_slot + dims[None, :], mask=visible[:, None], other=0.0)
            acc = acc * correction[:, None] + tl.dot(p.to(v.dtype), v)
            best = top
        out = acc / total[:, None]
        tl.store(out_ptr + row * o_row + heads[:, None] * o_head + dims[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=real)

    return kernel


def decode_attention(query, key, value, starts, position, scaling):
    """One decode step's attention, one Triton program per (row, KV head): query [rows, heads, 1, head dim] against
    the cache slots `starts[row]` .. `position` (inclusive) of key/value [rows, KV heads, slots, head dim]; the
    query heads of a KV head are one tile, so K and V are read once. Returns [rows, 1, heads, head dim]."""
    import torch

    rows, heads, _, head_dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    out = torch.empty(rows, 1, heads, head_dim, dtype=query.dtype, device=query.device)
    _decode_kernel()[(rows * kv_heads,)](
        query, key, value, out, starts, position, scaling,
        query.stride(0), query.stride(1), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2), out.stride(0), out.stride(2),
        KV_HEADS=kv_heads, GROUP=group, GROUP_PAD=max(16, 1 << (group - 1).bit_length()), HEAD_DIM=head_dim,
        BLOCK=BLOCK, num_warps=WARPS, num_stages=STAGES)
    return out
