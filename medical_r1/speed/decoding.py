"""Decoding speed of a base model and of it with a LoRA (unmerged, then merged): transformers' generate() against
the static-cache engine, at a fixed batch and at the auto batch, each against its bandwidth roofline. Every prompt
generates the whole budget (EOS never stops a row early), so every variant does the same work."""

from __future__ import annotations

from typing import Iterator

from medical_r1 import UserError, runtime
from medical_r1.generation import inference
from medical_r1.speed import flops, training


def generation_prompts(gen, tokenizer, rows: list[dict]) -> list[list[int]]:
    """bench.generate.prompts windows of bench.generate.prompt_tokens tokens over the rows' training texts."""
    stream = [i for r in rows for i in tokenizer(r["text"])["input_ids"]]
    count, length = gen.prompts, gen.prompt_tokens
    if len(stream) < length + count:
        raise UserError(f"data.source holds {len(stream):,} tokens: too few for {count} prompts of {length}")
    stride = (len(stream) - length) // count
    return [stream[k * stride:k * stride + length] for k in range(count)]


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


def measure_generation(model, name: str, engine: str, batch_size, encoded: list[list[int]], pad: int, gen) -> dict:
    """Generate the whole budget for every prompt; speed, memory and the fraction of the bandwidth roofline."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run = inference.generate_tokens(model, encoded, gen.max_new_tokens, batch_size, engine, None, pad, name)
    steps = len(inference.batches(list(range(len(encoded))), run.batch_size)) * gen.max_new_tokens
    weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "embed_tokens" not in n)
    bound = flops.roofline(model.config, weights, run.batch_size, gen, inference.value_bytes(model))
    new_tokens, ms_per_step = sum(map(len, run.tokens)), run.seconds * 1000 / steps
    timing = {}
    if run.prefill_seconds is not None:
        timing = {"prefill_seconds": round(run.prefill_seconds, 2),
                  "decode_ms_per_step": round((run.seconds - run.prefill_seconds) * 1000 / steps, 3)}
    return {"name": name, "engine": engine, "batch": batch_size, "batch_size": run.batch_size,
            "prompts": len(encoded), "new_tokens": new_tokens, "seconds": round(run.seconds, 2),
            "tokens_per_second": round(new_tokens / run.seconds, 1), "ms_per_step": round(ms_per_step, 3), **timing,
            "roofline": {**bound, "fraction": round(bound["ms_per_step"] / ms_per_step, 4)},
            "device": runtime.device_name(), **runtime.peak_memory()}


def generate(params) -> Iterator[dict]:
    """Decoding speed of the model.* base: base with generate() and the static engine, then with a random LoRA,
    unmerged and merged, at bench.generate.batch_size and at the auto batch; each result as soon as it is
    measured."""
    gen, max_length = params.bench.generate, params.train.max_seq_length
    runtime.setup(params.seed)
    train_rows, held_out, base = training.inputs(params)
    model, tokenizer = inference.load(base, None, params.train.load_in_4bit)
    encoded, pad = generation_prompts(gen, tokenizer, train_rows), tokenizer.pad_token_id
    fixed, tag = encoded[:gen.batch_size], f"b{gen.batch_size}"
    common = {"weights": base.init, "model": params.model.name, "rows": params.data.source,
              "prompt_tokens": gen.prompt_tokens,
              "max_new_tokens": gen.max_new_tokens, "lora_r": params.lora.r, "versions": training.versions()}
    inference.generate_tokens(model, encoded[:2], 4, 2, "generate", None, pad, "warm-up")
    yield common | measure_generation(model, f"base-generate-{tag}", "generate", gen.batch_size, fixed, pad, gen)
    yield common | measure_generation(model, f"base-static-{tag}", "static", gen.batch_size, fixed, pad, gen)
    yield common | measure_generation(model, "base-static-auto", "static", "auto", encoded, pad, gen)
    model = random_lora(model, params.lora, params.seed)
    losses = {"unmerged": inference.teacher_forced_loss(model, tokenizer, held_out, 4, max_length)["full"]}
    yield common | measure_generation(model, f"tuned-unmerged-static-{tag}", "static", gen.batch_size, fixed, pad, gen)
    model = model.merge_and_unload()
    losses["merged"] = inference.teacher_forced_loss(model, tokenizer, held_out, 4, max_length)["full"]
    common["teacher_forced_loss_tuned"] = {key: round(value, 5) for key, value in losses.items()}
    yield common | measure_generation(model, f"tuned-static-{tag}", "static", gen.batch_size, fixed, pad, gen)
    yield common | measure_generation(model, "tuned-static-auto", "static", "auto", encoded, pad, gen)
