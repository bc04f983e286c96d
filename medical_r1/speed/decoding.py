"""Decoding speed of a base model and of it tuned with a LoRA, on prompts with MedQA's length mix: transformers'
generate() against the static-cache engine at a fixed batch, and the engine at the auto batch; the tuned model as
PEFT's LoRA layers run it and as evaluation runs it (medical_r1/model/lora_decoding.py). Every prompt generates the
whole budget (EOS never stops a row early), so every variant does the same work; each is set against its roofline."""

from __future__ import annotations

import math
from statistics import NormalDist, mean
from typing import Iterator

from medical_r1 import UserError, runtime
from medical_r1.data import prompts
from medical_r1.data.tasks import mcq
from medical_r1.generation import batching, inference
from medical_r1.model import lora_decoding
from medical_r1.speed import flops, training

VARIANTS = {"base-generate": ("base", "generate", "fixed"), "base-static": ("base", "static", "fixed"),
            "base-auto": ("base", "static", "auto"), "tuned-peft": ("peft", "static", "fixed"),
            "tuned-static": ("tuned", "static", "fixed"), "tuned-auto": ("tuned", "static", "auto")}
"""name -> (model, engine, batch): `peft` is the tuned model with PEFT's LoRA layers, `tuned` as evaluation runs it;
`fixed` is bench.generate.batch_size prompts spread over the length mix, `auto` all prompts at the auto batch."""


def prompt_characters(gen) -> list[int]:
    """bench.generate.prompts lengths, log-normal through the median and the 95th percentile, capped at the
    longest, which the last one has."""
    sigma = math.log(gen.prompt_chars_p95 / gen.prompt_chars_median) / NormalDist().inv_cdf(0.95)
    lengths = [min(gen.prompt_chars_max, round(gen.prompt_chars_median
                                                * math.exp(sigma * NormalDist().inv_cdf((i + 0.5) / gen.prompts))))
               for i in range(gen.prompts)]
    return lengths[:-1] + [gen.prompt_chars_max]


def prompt_windows(gen, rows: list[dict]) -> list[str]:
    """Windows of the rows' text, one per length of `prompt_characters`: the questions the benchmark decodes."""
    text = " ".join(r["text"] for r in rows)
    lengths = prompt_characters(gen)
    if len(text) < 2 * max(lengths):
        raise UserError(f"data.source holds {len(text):,} characters: too few for prompts of {max(lengths):,}")
    stride = (len(text) - max(lengths)) // gen.prompts
    return [text[i * stride:i * stride + n] for i, n in enumerate(lengths)]


def generation_prompts(gen, tokenizer, rows: list[dict]) -> list[list[int]]:
    """The R1 inference template around each of `prompt_windows`, tokenized."""
    return [tokenizer(prompts.inference_prompt(window))["input_ids"] for window in prompt_windows(gen, rows)]


MCQ_OPTIONS = {"A": "first", "B": "second", "C": "third", "D": "fourth"}


def mcq_set(gen, rows: list[dict]) -> list[dict]:
    """`prompt_windows` as an MCQ set in MedQA's row shape, each question cut by what the options and instruction add,
    so that its MCQ prompt is as long as the benchmark's prompt: the evaluate stage, timed on this set, decodes the
    benchmark's prompt lengths."""
    added = len(mcq.prompt(mcq.Item("", MCQ_OPTIONS, "A", "medqa"))) - len(prompts.inference_prompt(""))
    windows = [window.strip() for window in prompt_windows(gen, rows)]
    if min(map(len, windows)) <= added:
        raise UserError(f"bench.generate: prompts of {min(map(len, windows))} characters leave no question beside "
                        f"the options ({added} characters); raise bench.generate.prompt_chars_median")
    return [{"question": window[:len(window) - added].strip(), "options": MCQ_OPTIONS, "answer_idx": "A",
             "answer": MCQ_OPTIONS["A"]} for window in windows]


def measure_generation(model, name: str, engine: str, batch_size, encoded: list[list[int]], pad: int, params
                       ) -> dict:
    """Generate the whole budget for every prompt; speed, memory and the fraction of the roofline."""
    import torch

    gen = params.bench.generate
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run = inference.generate_tokens(model, encoded, gen.max_new_tokens, batch_size, engine, None, pad, name)
    steps = run.batches * gen.max_new_tokens
    weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "embed_tokens" not in n)
    bound = roofline(model, weights, run.plan, encoded, gen.max_new_tokens, params)
    bound_seconds, bound["seconds"] = bound["seconds"], round(bound["seconds"], 3)
    new_tokens, ms_per_step = sum(map(len, run.tokens)), run.seconds * 1000 / steps
    timing = {}
    if run.prefill_seconds is not None:
        decode_seconds = run.seconds - run.prefill_seconds
        timing = {"prefill_seconds": round(run.prefill_seconds, 2),
                  "decode_ms_per_step": round(decode_seconds * 1000 / steps, 3), "attention": run.attention}
        bound["decode_fraction"] = round(bound_seconds / decode_seconds, 4)
    return {"name": name, "engine": engine, "batch": batch_size, "batch_size": run.batch_size, "batches": run.batches,
            "batch_rows": [batch.rows for batch in run.plan],
            "prompts": len(encoded), "prompt_tokens_mean": round(mean(map(len, encoded)), 1),
            "prompt_tokens_max": max(map(len, encoded)), "new_tokens": new_tokens, "seconds": round(run.seconds, 2),
            "tokens_per_second": round(new_tokens / run.seconds, 1), "ms_per_step": round(ms_per_step, 3), **timing,
            "roofline": {**bound, "tokens_per_second": round(new_tokens / bound_seconds, 1),
                         "fraction": round(bound_seconds / run.seconds, 4)},
            "device": runtime.device_name(), **runtime.peak_memory()}


def roofline(model, weight_bytes: int, plan, encoded: list[list[int]], budget: int, params) -> dict:
    """The least time of the run's decode steps: for each batch, `budget` steps of flops.roofline at its prompts
    (rows that only fill a short batch up do no work the task needs, so they are not counted) and their mean
    prompt length. `ms_per_step` and `kv_cache_bytes` are means over all steps; `matrix_ms` is the largest batch's."""
    per_batch = [flops.roofline(model.config, weight_bytes, len(batch.prompts),
                                mean(len(encoded[i]) for i in batch.prompts), budget, batching.value_bytes(model),
                                params.bench.generate.peak_bandwidth_tbs, params.bench.peak_tflops)
                 for batch in plan]
    seconds = budget * sum(b["ms_per_step"] for b in per_batch) / 1000
    return {"weight_bytes": weight_bytes, "kv_cache_bytes": round(mean(b["kv_cache_bytes"] for b in per_batch)),
            "weights_ms": per_batch[0]["weights_ms"], "matrix_ms": max(b["matrix_ms"] for b in per_batch),
            "ms_per_step": round(seconds * 1000 / (budget * len(plan)), 6), "seconds": seconds,
            "bandwidth_tbs": params.bench.generate.peak_bandwidth_tbs, "peak_tflops": params.bench.peak_tflops}


def generate(params, variants: list[str]) -> Iterator[dict]:
    """Decoding speed of the model.* base and of it with a seeded random LoRA, for each of `variants` in VARIANTS'
    order (the LoRA goes into the base's modules, and evaluation's route then replaces PEFT's layers, so base, peft
    and tuned variants run in that order); each result as soon as it is measured."""
    gen, max_length = params.bench.generate, params.train.max_seq_length
    runtime.setup(params.seed)
    train_rows, held_out, base = training.inputs(params)
    model, tokenizer = inference.load(base, None, params.train.load_in_4bit)
    encoded, pad = generation_prompts(gen, tokenizer, train_rows), tokenizer.pad_token_id
    spread = encoded[::max(1, len(encoded) // gen.batch_size)][:gen.batch_size]
    common = {"weights": base.init, "model": params.model.name, "rows": params.data.source,
              "max_new_tokens": gen.max_new_tokens, "lora_r": params.lora.r, "versions": training.versions()}
    inference.generate_tokens(model, encoded[:2], 4, 2, "generate", None, pad, "warm-up")
    losses, current = {}, "base"
    for name in [v for v in VARIANTS if v in variants]:
        kind, engine, batch = VARIANTS[name]
        if kind != current and current == "base":
            model = random_lora(model, params.lora, params.seed)
            losses["peft"] = inference.teacher_forced_loss(model, tokenizer, held_out, 4, max_length)["full"]
            current = "peft"
        if kind == "tuned" and current == "peft":
            model, route = lora_decoding.for_decoding(model)
            losses["tuned"] = inference.teacher_forced_loss(model, tokenizer, held_out, 4, max_length)["full"]
            common["adapter"] = {"path": route.path, "merge_error": route.merge_error}
            current = "tuned"
        common["teacher_forced_loss"] = {key: round(value, 5) for key, value in losses.items()}
        label = f"{name}-b{gen.batch_size}" if batch == "fixed" else name
        yield common | measure_generation(model, label, engine, gen.batch_size if batch == "fixed" else "auto",
                                          spread if batch == "fixed" else encoded, pad, params)


def random_lora(model, lora, seed: int):
    """`model` with LoRA layers whose B is seeded noise (PEFT starts B at zero, which would merge to nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model

    runtime.seed_all(seed)
    tuned = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules,
                                             task_type="CAUSAL_LM"))
    for name, weight in tuned.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.01)
    return tuned.eval()
