"""Greedy or seeded sampled decoding with a static KV cache; on a GPU each decode step is replayed as one CUDA graph.

`generate()` with its dynamic cache spends most of a decode step in Python, kernel launches and cache
bookkeeping: at batch 64 an 8B step cost ~70 ms on an H200 whose memory bandwidth allows ~4 ms
(reports/bench/NOTES.md). Here every tensor a decode step touches is allocated once, so the step has fixed
shapes and fixed addresses and can be captured as a CUDA graph: one launch per generated token.

- Prompts are left-padded to the batch's longest; the prefill runs in row chunks (bounded memory) through
  the model's own attention, with the mask and positions `generate()` would use, and writes K/V into the cache.
- A decode step reads everything it needs from device tensors that it updates in place (next token, position
  per row, which cache slots are visible, the write index, which rows have stopped), so the host loop only
  replays and checks every `CHECK_EVERY` steps whether all rows have emitted EOS.
- Attention over the cache groups the query heads by their KV head (GQA) instead of repeating K and V, so a step
  reads the cache once; scores and softmax are in float32. On a GPU in 16-bit a decode step's attention is one Triton
  kernel (`decode_attention`) that reads each row's K/V only from its first prompt token to the current slot (left
  padding and the empty rest of the cache are never read) and keeps the softmax online, in float32, as flash
  attention does; elsewhere (the CPU, float32) it is batched products over windows of the cache.
- Sampling (`medical_r1/generation/sampling.py`) runs inside the step, on the device.
"""

from __future__ import annotations

import functools
import time

from medical_r1.generation.decode_kernel import decode_attention
from medical_r1.generation.sampling import Sampling, sample_tokens
from medical_r1.model import memory

ATTENTION = "static_cache_gqa"
"""Name under which the decode attention is registered with transformers' AttentionInterface."""
WINDOW = 256
"""Without the kernel, decode attention reads the cache up to the filled length rounded up to this many slots (one
CUDA graph per window length), not the whole allocation: at a 2,048-token budget a step reads on average about half
of it. The kernel reads exactly the filled slots of each row, so it runs one graph for the whole budget."""
CHECK_EVERY = 16
"""Decode steps between two host checks of whether every row has stopped (each check is one sync)."""
PREFILL_TOKENS = 16384
"""Prompt tokens per prefill chunk: bounds the prefill's activation memory whatever the batch size."""


class StaticKVCache:
    """K/V of every layer in preallocated tensors [rows, kv heads, length, head dim].

    Decoder layers call `update()` as they would on a transformers Cache; `position` (a device scalar) is where
    the next token's K/V go, `rows` restricts writes to the rows of a prefill chunk, and `window` (when set) is how
    many slots from the start attention sees.
    """

    def __init__(self, model_config, rows: int, length: int, dtype, device):
        import torch

        shape = (rows, model_config.num_key_value_heads, length, memory.head_dim(model_config))
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(model_config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(model_config.num_hidden_layers)]
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.rows = slice(None)
        self.window: int | None = None

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        import torch

        index = self.position + torch.arange(key_states.shape[2], device=key_states.device)
        keys, values = self.keys[layer_idx][self.rows], self.values[layer_idx][self.rows]
        keys.index_copy_(2, index, key_states)
        values.index_copy_(2, index, value_states)
        if self.window is None:
            return keys, values
        return keys[:, :, :self.window], values[:, :, :self.window]


def cache_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention over a StaticKVCache: the prefill through transformers' SDPA path (keys up to the prompt's end,
    exactly as `generate()` computes it); a decode step (one query) per KV-head group over the cache: with
    `decode_state` = (first visible slot of each row, the current slot) by `decode_attention`, else over what
    `attention_mask` shows of `key`/`value`."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    decode_state = kwargs.pop("decode_state", None)
    batch, heads, queries, head_dim = query.shape
    if queries > 1:
        return sdpa_attention_forward(module, query, key[:, :, :queries], value[:, :, :queries], attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    if decode_state is not None:
        return decode_attention(query, key, value, *decode_state, scaling), None
    kv_heads, length = key.shape[1], key.shape[2]
    grouped = query.reshape(batch * kv_heads, heads // kv_heads, head_dim)
    keys = key.reshape(batch * kv_heads, length, head_dim).transpose(1, 2)
    if query.dtype == torch.float32:
        scores = torch.bmm(grouped, keys)
    else:  # 16-bit inputs, float32 scores (as flash attention keeps them)
        scores = torch.bmm(grouped, keys, out_dtype=torch.float32)
    scores = scores.view(batch, kv_heads, -1, length) * scaling
    visible = attention_mask.view(batch, 1, 1, length)
    scores = torch.where(visible, scores, torch.finfo(torch.float32).min)
    probs = torch.softmax(scores, dim=-1).to(value.dtype).view(batch * kv_heads, -1, length)
    out = torch.bmm(probs, value.reshape(batch * kv_heads, length, head_dim))
    return out.view(batch, 1, heads, head_dim), None


def kernel_usable(model) -> bool:
    """Whether decode steps of `model` take `decode_attention`: a CUDA GPU, 16-bit weights, a head width the kernel
    tiles, and the kernel's result on a small random cache within bf16 rounding of the batched products' (checked
    once per process and dtype; a failure is printed and the products are used)."""
    import torch

    head = memory.head_dim(model.config)
    if model.device.type != "cuda" or model.dtype not in (torch.bfloat16, torch.float16) or head & (head - 1):
        return False
    return _kernel_checked(model.dtype, head, model.config.num_attention_heads, model.config.num_key_value_heads)


@functools.cache
def _kernel_checked(dtype, head_dim: int, heads: int, kv_heads: int) -> bool:
    import torch

    try:
        gen = torch.Generator(device="cuda").manual_seed(0)
        rows, slots = 3, 200
        query = torch.randn(rows, heads, 1, head_dim, device="cuda", generator=gen).to(dtype)
        key, value = (torch.randn(rows, kv_heads, slots, head_dim, device="cuda", generator=gen).to(dtype)
                      for _ in range(2))
        starts = torch.tensor([0, 5, 130], device="cuda", dtype=torch.int32)
        position = torch.tensor(170, device="cuda")
        visible = torch.arange(slots, device="cuda")[None, None, None, :]
        visible = (visible >= starts.view(rows, 1, 1, 1)) & (visible <= position)
        scaling = head_dim ** -0.5
        fast = decode_attention(query, key, value, starts, position, scaling).float()
        slow = cache_attention(None, query, key, value, visible, scaling=scaling)[0].float()
        error = ((fast - slow).abs().max() / slow.abs().max()).item()
        if error > 0.02:
            print(f"decode attention kernel: relative error {error:.3g} against the batched products; not used",
                  flush=True)
            return False
        return True
    except Exception as err:  # noqa: BLE001 - any failure to build or run it: decode with the batched products
        print(f"decode attention kernel unavailable ({type(err).__name__}: {err}); using batched products",
              flush=True)
        return False


def until_eos(tokens: list[int], eos: int | None) -> list[int]:
    """`tokens` up to and including the first `eos` (all of them when there is none)."""
    return tokens[:tokens.index(eos) + 1] if eos in tokens else tokens


def register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, cache_attention)


class StaticDecoder:
    """Decoding of batches of `rows` prompts, each at most `prompt_length` tokens, for `max_new_tokens`: greedy, or
    sampled when `sampling` is given (each row then needs its key, see `sampling.row_key`).

    One decoder serves every batch of a run: its cache and buffers (and, on a GPU, its captured graph) are reused.
    `eos_token_id=None` never stops early (benchmarks force the whole budget).
    """

    def __init__(self, model, rows: int, prompt_length: int, max_new_tokens: int, eos_token_id: int | None,
                 pad_token_id: int, cuda_graph: bool, sampling: Sampling | None = None):
        import torch

        device, dtype = model.device, model.dtype
        self.model, self.rows, self.budget = model, rows, max_new_tokens
        self.eos, self.pad = (-1 if eos_token_id is None else eos_token_id), pad_token_id
        self.cache = StaticKVCache(model.config, rows, prompt_length + max_new_tokens, dtype, device)
        self.visible = torch.zeros(rows, prompt_length + max_new_tokens, dtype=torch.bool, device=device)
        self.tokens = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)
        self.out = torch.full((rows, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
        self.step_index = torch.zeros((), dtype=torch.long, device=device)
        self.sampling = sampling
        self.keys = torch.zeros(rows, dtype=torch.long, device=device)
        self.use_graph = cuda_graph and device.type == "cuda"
        self.kernel = kernel_usable(model)
        """Whether decode attention is `decode_attention` (else batched products over windows of the cache)."""
        self.starts = torch.zeros(rows, dtype=torch.int32, device=device)
        """Each row's first visible cache slot (its prompt's first token: prompts are left-padded)."""
        self.length = prompt_length + max_new_tokens
        self.slot = 0
        """The cache slot the next decode step feeds (host copy of cache.position: picks the attention window)."""
        self.graphs = {}
        """Window length -> the decode step captured for it (on a GPU), sharing one memory pool."""
        self.pool = None
        self.prefill_seconds = 0.0
        """Time spent in prefills so far (the rest of a batch's time is decoding)."""

    def __call__(self, input_ids, attention_mask, keys: list[int] | None = None) -> list[list[int]]:
        """Left-padded prompts [rows, length] -> the new tokens of each row, up to its EOS (inclusive) or budget."""
        import torch

        if self.sampling is not None:
            self.keys.copy_(torch.tensor(keys, dtype=torch.long))
        with torch.no_grad():
            began = time.perf_counter()
            first = self.prefill(input_ids, attention_mask)
            if first.device.type == "cuda":
                torch.cuda.synchronize()
            self.prefill_seconds += time.perf_counter() - began
            self.start(first, attention_mask)
            steps = 1
            while steps < self.budget:
                self.decode_step()
                steps += 1
                if steps % CHECK_EVERY == 0 and bool(self.done.all()):
                    break
            generated = self.out[:, :steps].tolist()
        return [until_eos(row, self.eos) for row in generated]

    def prefill(self, input_ids, attention_mask):
        """Run the prompts in row chunks, filling the cache; return each row's first generated token."""
        import torch

        length = input_ids.shape[1]
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
        chunk = max(1, PREFILL_TOKENS // length)
        first = []
        self.cache.position.zero_()
        for start in range(0, self.rows, chunk):
            rows = slice(start, start + chunk)
            mask = attention_mask[rows]
            # As generate(): no mask (SDPA's is_causal) when nothing is padded, else causal & not padding.
            mask = None if bool(mask.all()) else causal[None, None] & mask[:, None, None, :].bool()
            self.cache.rows = rows
            logits = self.model(input_ids=input_ids[rows], attention_mask=mask, position_ids=positions[rows],
                                past_key_values=self.cache, use_cache=True, logits_to_keep=1).logits
            first.append(self.choose(logits[:, -1], self.keys[rows], torch.zeros_like(self.step_index)))
        self.cache.rows = slice(None)
        self.cache.position.fill_(length)
        self.slot = length
        return torch.cat(first)

    def start(self, first, attention_mask) -> None:
        """Reset the decode buffers for a new batch whose first tokens are `first`."""
        length = attention_mask.shape[1]
        self.visible.zero_()
        self.visible[:, :length] = attention_mask.bool()
        self.starts.copy_(attention_mask.int().argmax(-1))
        self.tokens.copy_(first[:, None])
        self.positions.copy_(attention_mask.long().sum(-1, keepdim=True))
        self.done.copy_(first == self.eos)
        self.out.fill_(self.pad)
        self.out[:, 0] = first
        self.step_index.fill_(1)

    def step(self) -> None:
        """One token for every row (greedy or sampled); touches only preallocated tensors, so it can be graph-captured."""
        import torch

        self.visible.index_fill_(1, self.cache.position.view(1), True)
        window = self.cache.window
        state = {"decode_state": (self.starts, self.cache.position)} if self.kernel else {}
        logits = self.model(input_ids=self.tokens, attention_mask=self.visible[:, None, None, :window],
                            position_ids=self.positions, past_key_values=self.cache, use_cache=True, **state).logits
        chosen = torch.where(self.done, self.pad, self.choose(logits[:, -1], self.keys, self.step_index))
        self.out.index_copy_(1, self.step_index.view(1), chosen[:, None])
        self.done |= chosen == self.eos
        self.tokens.copy_(chosen[:, None])
        self.positions += 1
        self.cache.position += 1
        self.step_index += 1

    def choose(self, logits, keys, step):
        """The next token of each row: the most likely, or sampled at the row's key and token index."""
        return logits.argmax(-1) if self.sampling is None else sample_tokens(logits, self.sampling, keys, step)

    def decode_step(self) -> None:
        import torch

        window = self.length if self.kernel else min(self.length, -(-(self.slot + 1) // WINDOW) * WINDOW)
        self.cache.window, self.slot = window, self.slot + 1
        try:
            if not self.use_graph:
                self.step()
            elif window in self.graphs:
                self.graphs[window].replay()
            else:  # a window's first step runs eagerly on a side stream (the warm-up capture needs); capturing
                warmup = torch.cuda.Stream()  # records the next step without running it
                warmup.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(warmup):
                    self.step()
                torch.cuda.current_stream().wait_stream(warmup)
                self.pool = self.pool or torch.cuda.graph_pool_handle()
                self.graphs[window] = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graphs[window], pool=self.pool):
                    self.step()
        finally:
            self.cache.window = None
