"""bench: LoRA training speed and memory of one backend x precision, and greedy decoding speed, on a GPU.

    python -m stages.bench run --backend unsloth --precision bf16            # one combination, this process
    python -m stages.bench run --backend hf --precision bf16 --gradient-checkpointing off --batch-size 4 --tag best
    python -m stages.bench run --backend unsloth --precision bf16 --gradient-checkpointing off --batch-size 8 \
        --gradient-accumulation-steps 1 --profile-steps 2 --tag profile-b8   # + where the GPU time goes
    python -m stages.bench run --backend unsloth --precision bf16 --gradient-checkpointing off --batch-size 8 \
        --gradient-accumulation-steps 1 --logging-steps 10 --base-precision fp8 --held-out 16 --tag fp8-b8
    python scripts/bench_flash_varlen.py run ...   # the same, one varlen attention call per layer on torch < 2.12
    python -m stages.bench chart reports/bench/*.json                        # results -> chart
    python -m stages.bench generate                                          # decoding: generate() vs the static engine
    python3 -m dvc repro bench/dvc.yaml                                      # every stage (bench/dvc.yaml)

Reads   params.yaml: run/chart seed, lora.*, train.optim/warmup_steps/weight_decay/lr_scheduler_type and bench.*
        but bench.generate; generate seed, lora.r/alpha/target_modules, bench.model/rows/tokenizer_vocab_size/
        max_seq_length and bench.generate.*; the rows of bench.rows
Writes  reports/bench/<backend>-<precision>[-<tag>].json   GPU, versions, params; steady-state tokens/s (real,
        non-pad tokens), step time, peak allocated/reserved memory, MFU, longest sequence within the budget;
                                                    with --held-out N, the loss of N rows kept out of training;
                                                    with --profile-steps, GPU time by kernel kind and host syncs
        reports/bench/throughput_memory.png                 (chart) tokens/s and peak memory, Unsloth vs hf
        reports/bench/generate-<model>-<engine>-<batch>.json  (generate) new tokens/s, ms per step, prefill and
                                                    decode time, peak memory, fraction of the bandwidth roofline
        reports/bench/generate.png                          (generate) tokens/s of each variant against its roofline
Every combination runs in its own process (Unsloth patches transformers globally) on the same tokenized
rows, the same LoRA config and the same effective batch. Weights are seeded random: `weights: random`.
FLOPs per token = 4 x matmul parameters (forward + activation gradients; frozen weights get no weight
gradients) + 6 x LoRA parameters + 6 x layers x hidden x the token-weighted mean row length (causal
attention forward and backward); recomputation from gradient checkpointing is not counted (MFU, not HFU).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import platform
import re
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Iterator

import numpy as np

from medical_r1 import UserError, config, files, runtime
from medical_r1.data import dataset, prompts, sources
from medical_r1.generation import inference
from medical_r1.model import base_model, memory, tiny
from medical_r1.reporting import plots
from medical_r1.training import finetune
from medical_r1.model.base_model import BaseModel
from medical_r1.data.tasks import medical_cot

RESULTS = Path("reports/bench")
COMPLETE = "complete"


def bench_rows(bench) -> list[dict]:
    rows, _ = dataset.clean(sources.load_records(bench.rows), medical_cot.validate, "skip")
    return rows


def bench_tokenizer(bench, rows: list[dict]):
    """A BPE trained on the benchmark rows (bench.tokenizer_vocab_size gives Llama 3's characters per token)."""
    return tiny.train_tokenizer([prompts.training_text(r["question"], r["reasoning"], r["answer"], "") for r in rows],
                                bench.tokenizer_vocab_size, bench.max_seq_length)


def random_weights(bench, tokenizer, seed: int) -> Path:
    """bench.model's architecture with seeded random weights and the benchmark's tokenizer, written once and reused by
    every combination of the same architecture, rows, vocabulary, length and seed (else written again)."""
    out = Path(bench.weights_dir)
    made_of = json.dumps({"model": bench.model, "rows": bench.rows, "vocab": bench.tokenizer_vocab_size,
                          "max_seq_length": bench.max_seq_length, "seed": seed}, sort_keys=True) + "\n"
    if not (out / COMPLETE).is_file() or (out / COMPLETE).read_text() != made_of:
        with files.replaced_dir(out) as work_dir:
            base_model.save_random_model(bench.model, tokenizer, seed, work_dir)
            (work_dir / COMPLETE).write_text(made_of)
    return out


def flops_per_token(model_config, n_lora: int, mean_context: float) -> float:
    hidden, layers = model_config.hidden_size, model_config.num_hidden_layers
    q_out = model_config.num_attention_heads * memory.head_dim(model_config)
    kv_out = model_config.num_key_value_heads * memory.head_dim(model_config)
    per_layer = hidden * (q_out + 2 * kv_out) + q_out * hidden + 3 * hidden * model_config.intermediate_size
    matmul = layers * per_layer + hidden * model_config.vocab_size  # + lm_head; embeddings are lookups
    return 4 * matmul + 6 * n_lora + 6 * layers * q_out * mean_context


def steady_state(marks: dict[int, tuple[float, int]], warmup: int, last: int) -> dict:
    """Tokens/s and step time over steps warmup+1..last, from (seconds, tokens seen) marked at those two steps."""
    (start, tokens_start), (end, tokens_end) = marks[warmup], marks[last]
    steps, tokens = last - warmup, tokens_end - tokens_start
    return {"measured_steps": steps, "tokens_per_second": round(tokens / (end - start), 1),
            "step_seconds": round((end - start) / steps, 4), "measured_tokens": tokens}


def step_timer(log, warmup: int, last: int):
    """Marks the time and the step log's token count at the end of steps `warmup` and `last` (its `.marks`), waiting
    for the GPU there and nowhere else, so the steps between run as training runs them; the peak memory of the
    steps between (its `.peak`: counters reset at `warmup`, read at `last`, before any evaluation or saving)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks, self.peak = {}, {}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step not in (warmup, last):
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks[state.global_step] = (time.perf_counter(), int(log.tokens))
            if state.global_step == warmup and torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            if state.global_step == last:
                self.peak = runtime.peak_memory()

    return StepTimer()


KERNEL_KINDS = {
    "attention": re.compile(r"flash|fmha|attention|attn", re.I),
    "matmul (GEMM)": re.compile(r"gemm|gemv|cutlass|xmma|nvjet|cublas", re.I),
    "cross-entropy": re.compile(r"cross_entropy|logsumexp|log_softmax", re.I),
    "optimizer": re.compile(r"adam|optimizer|multi_tensor|foreach", re.I),
    "copies and casts": re.compile(r"memcpy|memset|copy|cast|convert", re.I),
}
"""Kernel name patterns, tried in order; every other kernel (norms, RoPE, SwiGLU, LoRA glue) is `elementwise`."""


def kernel_breakdown(events, steps: int) -> dict:
    """GPU kernel time per step, its share by kernel kind and the 10 costliest kernels, from profiler averages
    (objects with `key` and `self_device_time_total` in microseconds)."""
    kinds, kernels = {kind: 0.0 for kind in (*KERNEL_KINDS, "elementwise")}, []
    for event in events:
        micros = event.self_device_time_total
        if micros <= 0:
            continue
        kind = next((k for k, pattern in KERNEL_KINDS.items() if pattern.search(event.key)), "elementwise")
        kinds[kind] += micros
        kernels.append((micros, event.key))
    total = sum(kinds.values())
    return {"gpu_ms_per_step": round(total / steps / 1000, 2),
            "share": {kind: round(micros / total, 4) for kind, micros in kinds.items()},
            "top_kernels": [{"kernel": name[:100], "share": round(micros / total, 4)}
                            for micros, name in sorted(kernels, reverse=True)[:10]]}


def kernel_profiler(start_step: int, steps: int):
    """Profiles the GPU kernels of the `steps` optimizer steps after `start_step` (its `.breakdown` after) and
    counts the host syncs in them: every operation that makes the CPU wait for the GPU, by the innermost Python
    line that asked for it (torch.cuda.set_sync_debug_mode; an explicit torch.cuda.synchronize() counts at
    torch's own line). Only logs that fall in the profiled steps are counted: profile at least logging_steps
    steps to see them."""
    import warnings

    import torch
    from transformers import TrainerCallback

    class KernelProfile(TrainerCallback):
        def __init__(self):
            self.breakdown = None
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            self.syncs = warnings.catch_warnings(record=True)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == start_step:
                self.profiler.start()
                self.caught = self.syncs.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
            elif state.global_step == start_step + steps:
                torch.cuda.set_sync_debug_mode("default")
                self.syncs.__exit__(None, None, None)
                torch.cuda.synchronize()
                self.profiler.stop()
                self.breakdown = kernel_breakdown(self.profiler.key_averages(), steps) | {
                    "host_syncs_per_step": sync_sites(self.caught, steps)}

    return KernelProfile()


def sync_sites(caught: list, steps: int) -> dict[str, float]:
    """Synchronizing operations per step by the line that asked for them (site-packages/ and the repo stripped)."""
    counts = collections.Counter(f"{w.filename.split('site-packages/')[-1].split('/medical_r1/')[-1]}:{w.lineno}"
                                 for w in caught if "synchronizing" in str(w.message))
    return {where: round(count / steps, 2) for where, count in counts.most_common()}


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
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"python": platform.python_version(), **found}


def run(args, params) -> dict:
    """One backend x precision: finetune.setup and finetune.fit on the benchmark rows, timed after warm-up."""
    bench = params.bench
    cuda = runtime.cuda_available()
    if args.profile_steps and not cuda:
        raise UserError("--profile-steps profiles GPU kernels and needs a CUDA GPU; drop it on this machine")
    last_timed = bench.warmup_steps + bench.measure_steps
    train = dataclasses.replace(
        params.train, backend=args.backend, load_in_4bit=args.precision == "4bit",
        base_precision=args.base_precision, optim=args.optim or params.train.optim,
        max_seq_length=bench.max_seq_length,
        per_device_train_batch_size=args.batch_size or bench.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps or bench.gradient_accumulation_steps,
        gradient_checkpointing=args.gradient_checkpointing or bench.gradient_checkpointing,
        max_steps=last_timed + args.profile_steps, logging_steps=args.logging_steps,
        save_steps=10**9, packing=False,
        learning_rate=bench.learning_rate)
    if train.load_in_4bit and not cuda:
        raise UserError("--precision 4bit needs a CUDA GPU (bitsandbytes NF4); use --precision bf16 on this machine")
    params = dataclasses.replace(params, train=train)  # the options checked by the rules params.yaml's values pass
    plain = bench_rows(bench)
    tokenizer = bench_tokenizer(bench, plain)
    rows = dataset.tokenized(plain, medical_cot, tokenizer)
    held_out, rows = rows[:args.held_out], rows[args.held_out:]
    weights = str(random_weights(bench, tokenizer, params.seed))

    session = finetune.setup(BaseModel(weights, None, weights, init="random"), train, params.lora, params.seed,
                             [r["n_tokens"] for r in rows])
    timer = step_timer(session.log, bench.warmup_steps, last_timed)
    profiler = kernel_profiler(last_timed, args.profile_steps) if args.profile_steps else None
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer scores the held-out rows after its last step
        finetune.fit(session, rows, held_out, train, params.seed, scratch, [timer, *([profiler] if profiler else [])])
    result = steady_state(timer.marks, bench.warmup_steps, last_timed) | timer.peak
    if held_out:
        result["held_out"] = {"rows": len(held_out), "loss_after_training": session.log.evals[-1]["eval_loss"]}
    if profiler:
        result["profile"] = profiler.breakdown
    return describe(result, session, rows, train, params, args)


def describe(result: dict, session, rows: list[dict], train, params, args) -> dict:
    """The measured steady state (and its peak memory, taken before the length probes reset the counters) with what
    was measured: model, data, params, FLOPs and MFU, length probes."""
    bench, model = params.bench, session.model
    lengths = np.minimum([r["n_tokens"] for r in rows], bench.max_seq_length)
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    mean_context = float((lengths ** 2).sum() / lengths.sum())
    flops = flops_per_token(model.config, n_lora, mean_context)
    if runtime.cuda_available():
        model.config.use_cache = False
        probes = probe_lengths(model, session.tokenizer(rows[0]["text"])["input_ids"], bench.seq_probe_lengths,
                               bench.memory_budget_gib)
        fitting = [p["max_seq_length"] for p in probes if p["fits"]]
        result |= {"mfu": round(result["tokens_per_second"] * flops / (bench.peak_tflops * 1e12), 4),
                   "seq_probes": probes, "max_seq_length_within_budget": max(fitting) if fitting else None,
                   "memory_budget_gib": bench.memory_budget_gib}
    return {
        "backend": args.backend, "precision": args.precision, "tag": args.tag, "weights": "random",
        "model": bench.model, "device": runtime.device_name(), "versions": versions(),
        "params": {"per_device_train_batch_size": train.per_device_train_batch_size,
                   "gradient_accumulation_steps": train.gradient_accumulation_steps,
                   "max_seq_length": train.max_seq_length, "gradient_checkpointing": session.gradient_checkpointing,
                   "optim": finetune.resolve_optim(train.optim, runtime.cuda_available()),
                   "logging_steps": train.logging_steps, "base_precision": train.base_precision,
                   "lora_r": params.lora.r,
                   "lora_alpha": params.lora.alpha, "target_modules": params.lora.target_modules,
                   "warmup_steps": bench.warmup_steps, "measure_steps": bench.measure_steps, "seed": params.seed},
        "data": {"rows": bench.rows, "n_rows": len(rows), "tokens_per_row_mean": round(float(lengths.mean()), 1),
                 "tokens_per_row_p95": int(np.percentile(lengths, 95)),
                 "token_weighted_mean_length": round(mean_context, 1)},
        "lora_parameters": n_lora, "flops_per_token": round(flops),
        "estimated_peak_gib_without_recompute": session.estimated_peak_gib, **result,
    }


def generation_prompts(bench, tokenizer, rows: list[dict]) -> list[list[int]]:
    """bench.generate.prompts windows of bench.generate.prompt_tokens tokens over the rows' training texts."""
    stream = [i for r in rows for i in tokenizer(medical_cot.format_row(r, "")["text"])["input_ids"]]
    count, length = bench.generate.prompts, bench.generate.prompt_tokens
    if len(stream) < length + count:
        raise UserError(f"bench.rows holds {len(stream):,} tokens: too few for {count} prompts of {length}")
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


def roofline(model_config, weight_bytes: int, rows: int, gen, value_bytes: int) -> dict:
    """The least a decode step must read: every weight once (the embedding table is looked up, not read) and the
    KV cache of every row at the mean context of the generation (prompt + half the budget); its time at the GPU's
    bandwidth."""
    kv = rows * (gen.prompt_tokens + gen.max_new_tokens / 2) * memory.kv_bytes_per_token(model_config, value_bytes)
    seconds = (weight_bytes + kv) / (gen.peak_bandwidth_tbs * 1e12)
    return {"weight_bytes": weight_bytes, "kv_cache_bytes": round(kv), "ms_per_step": round(seconds * 1000, 6)}


def measure_generation(model, name: str, engine: str, batch_size, encoded: list[list[int]], pad: int, gen) -> dict:
    """Generate the whole budget for every prompt; speed, memory and the fraction of the bandwidth roofline."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run = inference.generate_tokens(model, encoded, gen.max_new_tokens, batch_size, engine, None, pad, name)
    steps = len(inference.batches(list(range(len(encoded))), run.batch_size)) * gen.max_new_tokens
    weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "embed_tokens" not in n)
    bound = roofline(model.config, weights, run.batch_size, gen, inference.value_bytes(model))
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
    """Decoding speed of the bench.model architecture (random weights): base with generate() and the static engine,
    then with a random LoRA, unmerged and merged, at bench.generate.batch_size and at the auto batch; each result
    as soon as it is measured."""
    bench, gen = params.bench, params.bench.generate
    runtime.setup(params.seed)
    rows = bench_rows(bench)
    tokenizer = bench_tokenizer(bench, rows)
    encoded, pad = generation_prompts(bench, tokenizer, rows), tokenizer.pad_token_id
    fixed, tag = encoded[:gen.batch_size], f"b{gen.batch_size}"
    loss_rows = dataset.tokenized(rows[:16], medical_cot, tokenizer)
    model = base_model.random_model(bench.model, tokenizer, params.seed).eval()
    common = {"weights": "random", "model": bench.model, "rows": bench.rows, "prompt_tokens": gen.prompt_tokens,
              "max_new_tokens": gen.max_new_tokens, "lora_r": params.lora.r, "versions": versions()}
    inference.generate_tokens(model, encoded[:2], 4, 2, "generate", None, pad, "warm-up")
    yield common | measure_generation(model, f"base-generate-{tag}", "generate", gen.batch_size, fixed, pad, gen)
    yield common | measure_generation(model, f"base-static-{tag}", "static", gen.batch_size, fixed, pad, gen)
    yield common | measure_generation(model, "base-static-auto", "static", "auto", encoded, pad, gen)
    model = random_lora(model, params.lora, params.seed)
    losses = {"unmerged": inference.teacher_forced_loss(model, tokenizer, loss_rows, 4, bench.max_seq_length)["full"]}
    yield common | measure_generation(model, f"tuned-unmerged-static-{tag}", "static", gen.batch_size, fixed, pad, gen)
    model = model.merge_and_unload()
    losses["merged"] = inference.teacher_forced_loss(model, tokenizer, loss_rows, 4, bench.max_seq_length)["full"]
    common["teacher_forced_loss_tuned"] = {key: round(value, 5) for key, value in losses.items()}
    yield common | measure_generation(model, f"tuned-static-{tag}", "static", gen.batch_size, fixed, pad, gen)
    yield common | measure_generation(model, "tuned-static-auto", "static", "auto", encoded, pad, gen)


def result_name(backend: str, precision: str, tag: str | None) -> str:
    return f"{backend}-{precision}" + (f"-{tag}" if tag else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="benchmark one backend x precision")
    one.add_argument("--backend", choices=config.BACKENDS, required=True)
    one.add_argument("--precision", choices=["bf16", "4bit"], required=True)
    one.add_argument("--batch-size", type=int, help="override bench.per_device_train_batch_size")
    one.add_argument("--gradient-accumulation-steps", type=int, help="override bench.gradient_accumulation_steps")
    one.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"])
    one.add_argument("--tag", help="suffix of the result file, for variants beyond the reference four")
    one.add_argument("--profile-steps", type=int, default=0,
                     help="after the timed steps, profile this many more: GPU time by kernel kind, host syncs")
    one.add_argument("--optim", help="override train.optim")
    one.add_argument("--logging-steps", type=int, default=1,
                     help="log (loss, grad norm: a host sync each) every this many steps")
    one.add_argument("--base-precision", choices=["bf16", "fp8"], default="bf16", help="train.base_precision")
    one.add_argument("--held-out", type=int, default=0,
                     help="keep this many rows out of training and report their loss after the last step")
    chart = commands.add_parser("chart", help="draw reports/bench/throughput_memory.png from result files")
    chart.add_argument("results", nargs="+", type=Path)
    commands.add_parser("generate", help="decoding speed, base and tuned, generate() vs the static engine")
    args = parser.parse_args()
    if args.command == "generate":
        results = []
        for result in generate(config.load()):
            files.write_json(RESULTS / f"generate-{result['name']}.json", result)
            results.append(result)
        plots.generation_bars(results, RESULTS / "generate.png")
        return
    if args.command == "chart":
        missing = [str(p) for p in args.results if not p.is_file()]
        if missing:
            raise UserError(f"no benchmark result {', '.join(missing)}; run `python -m stages.bench run ...` first")
        plots.bench_bars([files.read_json(p) for p in args.results], RESULTS / "throughput_memory.png")
        return
    result = run(args, config.load())
    files.write_json(RESULTS / f"{result_name(args.backend, args.precision, args.tag)}.json", result)
    print(f"bench {result_name(args.backend, args.precision, args.tag)}: {result['tokens_per_second']:,.0f} tokens/s, "
          f"step {result['step_seconds']} s")


if __name__ == "__main__":
    files.run_stage(main)
