"""Running a model for evaluation: loading it with its adapter, teacher-forced loss, batched greedy generation.

Evaluation loads models with plain transformers whatever `train.backend` trained the adapter (the adapter is
PEFT-format either way), merges the adapter where that keeps its effect and else runs its LoRA products beside the
base's (medical_r1/model/lora_decoding.py), and generates with `medical_r1/generation/decoding.py` (engine `static`) or
transformers' `generate()` (engine `generate`: the dynamic-cache reference path, for models whose attention does
not go through transformers' AttentionInterface).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from medical_r1 import UserError, distributed, runtime
from medical_r1.generation import batching, decoding
from medical_r1.generation.sampling import Sampling
from medical_r1.model import lora_decoding, memory, precision
from medical_r1.model.base_model import BaseModel

LOGITS_CHUNK = 1024
"""Tokens whose logits over the vocabulary exist at once in the teacher-forced loss (float32)."""


@dataclass
class Generations:
    texts: list[str]
    """What the model wrote after each prompt (special tokens removed)."""
    stopped: list[bool]
    """Whether each generation ended with EOS within the budget."""
    new_tokens: list[int]
    """Tokens generated per prompt, EOS included."""
    seconds: float
    """Wall time of generation (prefill and decoding, all batches)."""
    batch_size: int
    """Rows per batch as run: eval.batch_size (or what `auto` chose) evened out over the prompts."""
    prompts_cut: int
    """Prompts longer than the model's budget (train.max_seq_length - max_new_tokens), cut to their last tokens."""

    @property
    def tokens_per_second(self) -> float:
        return round(sum(self.new_tokens) / self.seconds, 1)


@dataclass
class Decoded:
    tokens: list[list[int]]
    """New tokens of each prompt, up to its EOS (inclusive) or the budget."""
    seconds: float
    """Wall time of all batches."""
    batch_size: int
    """Rows per batch (the largest, where tiers of prompt length ran at different sizes)."""
    batches: int
    """Batches run: each decodes the whole budget unless every row stopped."""
    prefill_seconds: float | None
    """The part of `seconds` spent in prefills (static engine; None for generate())."""
    plan: list[batching.Batch]
    """The batches as run (`batching.plan_batches`)."""
    attention: str | None
    """The static engine's decode attention: `kernel` (decode_kernel.decode_attention) or `products` (None for
    generate())."""


def load(base: BaseModel, adapter: Path | None, load_in_4bit: bool, merge: bool | None = None):
    """The base model with `adapter` when given, and its tokenizer. The adapter is merged into the weights when
    `merge` is True, kept as PEFT LoRA layers (a PeftModel) when False, and by default (None) made ready for decoding
    by medical_r1/model/lora_decoding.py: merged when the merge keeps its effect, else its LoRA products run beside
    the base's (`load_tuned` also says which).

    With load_in_4bit the base is loaded in NF4 as training saw it (both backends quantize model.name itself),
    then dequantized to 16-bit before the merge: the tuned model is base-as-quantized + adapter, run at 16-bit
    speed, and the base model is scored on the same dequantized weights.
    """
    from transformers import AutoTokenizer

    model = precision.for_inference(load_in_4bit).from_pretrained(base.weights, base.revision, base.trust_remote_code)
    if load_in_4bit:
        model = model.dequantize(dtype=runtime.compute_dtype())
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
        elif merge is None:
            model, _ = lora_decoding.for_decoding(model)
    return model.eval(), AutoTokenizer.from_pretrained(base.tokenizer)


def load_tuned(base: BaseModel, adapter: Path, load_in_4bit: bool):
    """`load` of the tuned model for decoding, with the lora_decoding.Route it took."""
    model, tokenizer = load(base, adapter, load_in_4bit, merge=False)
    model, route = lora_decoding.for_decoding(model)
    return model.eval(), tokenizer, route


def context_length(model) -> int:
    """Tokens the model's positions cover: prompt + generation must fit (MCQ prompts are cut to fit the budget)."""
    return model.config.max_position_embeddings


def teacher_forced_loss(model, tokenizer, rows: list[dict], batch_size: int | str, max_length: int) -> dict:
    """Mean per-token NLL on the full text and on the completion part only (token-weighted).

    Rows are batched by length; logits are computed LOGITS_CHUNK real tokens at a time, never for the whole batch.
    Data-parallel processes share the batches (distributed.mine) and add their sums up in batch order, as one
    process would.
    """
    import torch

    encoded = [tokenizer(r["text"], truncation=True, max_length=max_length)["input_ids"] for r in rows]
    prompt_lengths = [len(tokenizer(r["prompt"])["input_ids"]) for r in rows]
    if batch_size == "auto":
        free, bytes_per_value = batching.free_memory_bytes(model.device), batching.value_bytes(model)
        batch_size = distributed.agreed(memory.loss_batch(model.config, free, max(map(len, encoded)), LOGITS_CHUNK,
                                                          bytes_per_value))
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    sums = {}
    plan = list(enumerate(batching.batches(sorted(range(len(rows)), key=lambda i: len(encoded[i])), batch_size)))
    for index, batch in distributed.mine(plan):
        ids, mask = batching.padded([encoded[i] for i in batch], tokenizer.pad_token_id, "right", model.device)
        with torch.no_grad():
            hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
            real = mask[:, 1:].bool()
            positions = torch.arange(real.shape[1], device=model.device).unsqueeze(0)
            starts = torch.tensor([prompt_lengths[i] - 1 for i in batch], device=model.device).unsqueeze(1)
            response = (positions >= starts)[real]
            states, targets = hidden[real], ids[:, 1:][real]
            nll = torch.cat([torch.nn.functional.cross_entropy(head(states[s:s + LOGITS_CHUNK]).float(),
                                                               targets[s:s + LOGITS_CHUNK], reduction="none")
                             for s in range(0, len(targets), LOGITS_CHUNK)])
        sums[index] = {key: (selected.sum().item(), selected.numel())
                       for key, selected in (("full", nll), ("response", nll[response]))}
    sums = distributed.gathered(sums)
    totals = {"full": [0.0, 0], "response": [0.0, 0]}
    for index in range(len(plan)):
        for key, (total, count) in sums[index].items():
            totals[key][0] += total
            totals[key][1] += count
    return {key: total / max(count, 1) for key, (total, count) in totals.items()}


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int | str, engine: str,
             max_length: int, label: str, sampling: Sampling | None = None, keys: list[int] | None = None
             ) -> Generations:
    """Generation until EOS or `max_new_tokens`, greedy or sampled (then each prompt with its key); see
    `generate_tokens`. A prompt longer than `max_length` -
    `max_new_tokens` tokens (the length the model was trained at, less the budget) keeps its last tokens, which hold
    the question's end and the template's cue to answer; the cuts are counted."""
    budget = max_length - max_new_tokens
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    cut = sum(len(ids) > budget for ids in encoded)
    run = generate_tokens(model, [cut_to(ids, budget, tokenizer.bos_token_id) for ids in encoded], max_new_tokens,
                          batch_size, engine, tokenizer.eos_token_id, tokenizer.pad_token_id, label, sampling, keys)
    return Generations(texts=[tokenizer.decode(t, skip_special_tokens=True) for t in run.tokens],
                       stopped=[bool(t) and t[-1] == tokenizer.eos_token_id for t in run.tokens],
                       new_tokens=[len(t) for t in run.tokens], seconds=run.seconds, batch_size=run.batch_size,
                       prompts_cut=cut)


def cut_to(ids: list[int], budget: int, bos: int | None) -> list[int]:
    """The last `budget` tokens of a prompt, its BOS kept in front as in training."""
    if len(ids) <= budget:
        return ids
    return ids[:1] + ids[len(ids) - budget + 1:] if bos is not None and ids[0] == bos else ids[-budget:]


def generate_tokens(model, encoded: list[list[int]], max_new_tokens: int, batch_size: int | str, engine: str,
                    eos: int | None, pad: int, label: str, sampling: Sampling | None = None,
                    keys: list[int] | None = None) -> Decoded:
    """New tokens of each prompt (up to its EOS, inclusive; the whole budget when `eos` is None): greedy, or sampled
    by the static engine at each prompt's key in `keys`.

    Prompts run in the batches of `batching.plan_batches`, left-padded; a static decoder (its cache and captured
    graphs) serves every batch of its shape. Data-parallel processes run every world_size-th batch of the first
    process's plan, so each prompt is decoded in the batch it has in one process, and all get every prompt's tokens.
    Shows a progress bar on a terminal and prints one summary line, `label` first."""
    import torch
    from tqdm import tqdm

    plan = distributed.agreed(batching.plan_batches(model, list(map(len, encoded)), max_new_tokens, batch_size,
                                                    sampling is not None))
    attention = model.config._attn_implementation
    new_tokens: dict[int, list[int]] = {}
    mine = distributed.mine(plan)
    progress = tqdm(total=sum(len(batch.prompts) for batch in mine), desc=label, unit="prompt",
                    disable=None if distributed.is_main() else True, leave=False)
    began, prefill_seconds, run, shape = time.perf_counter(), 0.0, None, None
    try:
        for batch in mine:
            if engine == "generate":
                run = run or generate_engine(model, max_new_tokens, eos, pad)
                filled = batch.prompts
            else:
                if (batch.rows, batch.prompt_length) != shape:
                    prefill_seconds += run.prefill_seconds if run else 0.0
                    run, shape = None, (batch.rows, batch.prompt_length)
                    if model.device.type == "cuda":
                        torch.cuda.empty_cache()  # the previous decoder's cache and graphs, before the next one's
                    run = static_engine(model, batch.rows, batch.prompt_length, max_new_tokens, eos, pad, sampling)
                filled = batch.prompts + [batch.prompts[0]] * (batch.rows - len(batch.prompts))
            ids, mask = batching.padded([encoded[i] for i in filled], pad, "left", model.device)
            for i, tokens in zip(batch.prompts, run(ids, mask, keys and [keys[i] for i in filled])):
                new_tokens[i] = tokens
            progress.update(len(batch.prompts))
            progress.set_postfix(tokens_per_second=round(sum(map(len, new_tokens.values()))
                                                         / (time.perf_counter() - began)))
        if model.device.type == "cuda":
            torch.cuda.synchronize()
    finally:
        progress.close()
        model.set_attn_implementation(attention)
    seconds = distributed.slowest(time.perf_counter() - began)
    new_tokens = distributed.gathered(new_tokens)
    outputs = [new_tokens[i] for i in range(len(encoded))]
    total, rows = sum(map(len, outputs)), max(batch.rows for batch in plan)
    static = engine == "static"
    attention = distributed.agreed(("kernel" if run and run.kernel else "products") if static else None)
    processes = f", {distributed.world_size()} processes" if distributed.active() else ""
    if distributed.is_main():
        print(f"{label}: {len(encoded)} prompts, {total:,} new tokens in {seconds:.1f} s ({total / seconds:,.0f} "
              f"tokens/s; {len(plan)} batches of up to {rows}, engine {engine}"
              f"{f', attention {attention}' if static else ''}{processes})", flush=True)
    prefill_seconds += run.prefill_seconds if static and run else 0.0  # a process may have had no batch
    return Decoded(outputs, seconds, rows, len(plan), prefill_seconds if static else None, plan, attention)


def static_engine(model, rows: int, prompt_length: int, max_new_tokens: int, eos: int | None, pad: int,
                  sampling: Sampling | None):
    """decoding.py's StaticDecoder, with its attention set on the model (a CUDA graph on a GPU)."""
    decoding.register_attention()
    model.set_attn_implementation(decoding.ATTENTION)
    if model.config._attn_implementation != decoding.ATTENTION:
        raise UserError(f"eval.engine=static: {type(model).__name__} does not route attention through transformers' "
                        "AttentionInterface; set eval.engine=generate")
    return decoding.StaticDecoder(model, rows, prompt_length, max_new_tokens, eos, pad, cuda_graph=True,
                                  sampling=sampling)


def generate_engine(model, max_new_tokens: int, eos: int | None, pad: int):
    """transformers' generate() with its dynamic cache: the plain reference path. Without `eos` the whole budget
    is generated (EOS suppressed until then)."""
    forced = {} if eos is not None else {"min_new_tokens": max_new_tokens}

    def run(ids, mask, keys=None) -> list[list[int]]:
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=eos, pad_token_id=pad, **forced)
        return [decoding.until_eos(row, eos) for row in out[:, ids.shape[1]:].tolist()]

    return run
