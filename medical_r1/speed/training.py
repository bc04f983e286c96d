"""Training speed and memory of a recipe: the same setup -> fit the train stage runs, on the same params, with a step
timer and (on a GPU) a kernel profiler as callbacks. Only bench.* decides what is measured: the steps skipped before
timing (compilation, autotuning, allocator warm-up), the steps timed, the steps profiled after them; the recipe's
train.max_steps and save_steps give way to those (the LR warm-up still comes from train.warmup_steps)."""

from __future__ import annotations

import dataclasses
import json
import platform
import tempfile
from pathlib import Path

import numpy as np

from medical_r1 import UserError, files, runtime
from medical_r1.data import dataset, tasks
from medical_r1.model import base_model, patches, precision
from medical_r1.model.base_model import BaseModel
from medical_r1.speed import flops
from medical_r1.training import finetune, timing

COMPLETE = "complete"
NEVER = 10**9
"""save_steps of a measured run: no checkpoint inside the timed window."""


def inputs(params) -> tuple[list[dict], list[dict], BaseModel]:
    """The training and held-out rows of data.*, tokenized, and the base model of model.*, as prepare makes them.
    The base is written to bench.weights_dir once and reused while the params it is made of stay the same."""
    task = tasks.get(params.data.task)
    train_rows, eval_rows, _, _ = dataset.read_split(params.data, task, params.seed)
    out = Path(params.bench.weights_dir)
    made_of = json.dumps({"model": dataclasses.asdict(params.model), "data": dataclasses.asdict(params.data),
                          "max_seq_length": params.train.max_seq_length, "seed": params.seed}, sort_keys=True) + "\n"
    if not (out / COMPLETE).is_file() or (out / COMPLETE).read_text() != made_of:
        corpus = [task.format_row(r, "")["text"] for r in train_rows]
        with files.replaced_dir(out) as work_dir:
            base_model.materialize(params.model, corpus, params.seed, params.train.max_seq_length, work_dir, out)
            (work_dir / COMPLETE).write_text(made_of)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    return (dataset.tokenized(train_rows, task, tokenizer), dataset.tokenized(eval_rows, task, tokenizer),
            BaseModel.read(out))


def run(params, name: str) -> dict:
    """The recipe's steady state: tokens/s and step time over bench.measure_steps after bench.skip_steps, peak memory
    in those steps, the held-out loss after the last step, and with bench.profile_steps where the GPU time goes."""
    bench = params.bench
    if bench.profile_steps and not runtime.cuda_available():
        raise UserError("bench.profile_steps profiles GPU kernels and needs a CUDA GPU; set it to 0 on this machine")
    last_timed = bench.skip_steps + bench.measure_steps
    train = dataclasses.replace(params.train, max_steps=last_timed + bench.profile_steps, save_steps=NEVER)
    precision.for_training(train).require_machine()  # before the rows and weights are made
    train_rows, held_out, base = inputs(params)
    session = finetune.setup(base, train, params.lora, params.seed, [r["n_tokens"] for r in train_rows])
    timer = timing.step_timer(session.log, bench.skip_steps, last_timed)
    profiler = timing.kernel_profiler(last_timed, bench.profile_steps) if bench.profile_steps else None
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer scores the held-out rows after its last step
        finetune.fit(session, train_rows, held_out, train, params.seed, scratch, [timer, *filter(None, [profiler])])
    result = timing.steady_state(timer.marks, bench.skip_steps, last_timed) | timer.peak
    result["held_out"] = {"rows": len(held_out), "loss_after_training": session.log.evals[-1]["eval_loss"]}
    if profiler:
        result["profile"] = profiler.breakdown
    return describe(name, result, session, train_rows, train, params)


def describe(name: str, result: dict, session, rows: list[dict], train, params) -> dict:
    """The measured steady state (and its peak memory, taken before the length probes reset the counters) with what
    was measured: model, data, params, FLOPs and MFU, length probes."""
    bench, model = params.bench, session.model
    lengths = np.minimum([r["n_tokens"] for r in rows], train.max_seq_length)
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    mean_context = float((lengths ** 2).sum() / lengths.sum())
    per_token = flops.flops_per_token(model.config, n_lora, mean_context)
    if runtime.cuda_available():
        model.config.use_cache = False
        probes = probe_lengths(model, session.tokenizer(rows[0]["text"])["input_ids"], bench.seq_probe_lengths,
                               bench.memory_budget_gib)
        fitting = [p["max_seq_length"] for p in probes if p["fits"]]
        result |= {"mfu": flops.mfu(result["tokens_per_second"], per_token, bench.peak_tflops), "seq_probes": probes,
                   "max_seq_length_within_budget": max(fitting) if fitting else None,
                   "memory_budget_gib": bench.memory_budget_gib}
    return {
        "name": name, "backend": train.backend, "precision": precision.for_training(train).name,
        "weights": BaseModel.read(bench.weights_dir).init, "model": params.model.name,
        "device": runtime.device_name(), "versions": versions(),
        "params": {"per_device_train_batch_size": train.per_device_train_batch_size,
                   "gradient_accumulation_steps": train.gradient_accumulation_steps,
                   "max_seq_length": train.max_seq_length, "gradient_checkpointing": session.gradient_checkpointing,
                   "optim": finetune.resolve_optim(train.optim, runtime.cuda_available()),
                   "logging_steps": train.logging_steps, "packing": train.packing, "lora_r": params.lora.r,
                   "lora_alpha": params.lora.alpha, "target_modules": params.lora.target_modules,
                   "skip_steps": bench.skip_steps, "measure_steps": bench.measure_steps, "seed": params.seed},
        "data": {"source": params.data.source, "n_rows": len(rows),
                 "tokens_per_row_mean": round(float(lengths.mean()), 1),
                 "tokens_per_row_p95": int(np.percentile(lengths, 95)),
                 "token_weighted_mean_length": round(mean_context, 1)},
        "lora_parameters": n_lora, "flops_per_token": round(per_token),
        "estimated_peak_gib_without_recompute": session.estimated_peak_gib, **result,
    }


def probe_lengths(model, token_ids: list[int], lengths: list[int], budget_gib: float) -> list[dict]:
    """One batch-1 forward + backward per length (shortest first) and its peak reserved memory."""
    import torch

    probes = []
    for length in lengths:
        ids = torch.tensor([(token_ids * (length // len(token_ids) + 1))[:length]], device=model.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            model(input_ids=ids, labels=ids).loss.backward()
            peak = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        except torch.OutOfMemoryError:
            peak = None  # out of memory: more than the GPU has
        model.zero_grad(set_to_none=True)
        fits = peak is not None and peak <= budget_gib
        probes.append({"max_seq_length": length, "peak_reserved_gib": peak, "fits": fits})
        if not fits:
            break
    return probes


def versions() -> dict:
    names = ("torch", "transformers", "trl", "peft", "unsloth", "unsloth_zoo", "bitsandbytes")
    return {"python": platform.python_version(), **{name: patches.installed_version(name) for name in names}}
