"""GRPO's speed: the rl stage's steps on the recipe's base, once per rollout engine in one process, so the two stand
side by side on the same machine, batch and budget. After bench.skip_steps warm-up steps (CUDA graph capture,
autotuning) bench.measure_steps steps are timed: a step's seconds split into rollout, reward and policy update (means
over the timed steps); rollout new tokens/s; peak memory. The SFT adapter is LoRA (lora.*) with seeded random B, so the policy is not the base and
the LoRA products run in every rollout as they do after SFT.

    python -m stages.bench grpo -S recipe=speed_8b_grpo
"""

from __future__ import annotations

import dataclasses
import gc
import tempfile
from pathlib import Path

from medical_r1 import runtime
from medical_r1.data.tasks import verifiable
from medical_r1.model import precision
from medical_r1.speed import decoding, training
from medical_r1.training import grpo

ENGINES = ("static", "generate")


def measure(params) -> list[dict]:
    """One result per rollout engine (`grpo-<engine>`): both with rl.backend hf, generate() alone with unsloth
    (Unsloth replaces the forward our engine decodes through)."""
    import torch

    bench = params.bench
    _, _, base = training.inputs(params)
    problems, _ = verifiable.load(params.rl, params.data.on_bad_row)
    results = []
    with tempfile.TemporaryDirectory() as adapter, tempfile.TemporaryDirectory() as scratch:
        write_random_adapter(base, params.lora, params.train.load_in_4bit, params.seed, Path(adapter))
        for engine in ENGINES if params.rl.backend == "hf" else ("generate",):
            rl = dataclasses.replace(params.rl, engine=engine, max_steps=bench.skip_steps + bench.measure_steps)
            session = grpo.setup(base, Path(adapter), params.train.load_in_4bit, params.train.max_seq_length, rl,
                                 params.seed)
            if runtime.cuda_available():
                torch.cuda.reset_peak_memory_stats()
            grpo.fit(session, problems, rl, params.seed, scratch)
            timed = session.log.times[bench.skip_steps:]
            results.append({
                "name": f"grpo-{engine}", "engine": engine, "weights": base.init,
                "backend": params.rl.backend, "device": runtime.device_name(), "timed_steps": len(timed),
                "questions_per_step": rl.prompts_per_step, "completions_per_step": rl.prompts_per_step
                * rl.num_generations, "max_new_tokens": rl.max_new_tokens,
                "step_seconds": round(sum(t["seconds"] for t in timed) / len(timed), 3),
                **grpo.split(timed, per_step=True), **runtime.peak_memory(), "versions": training.versions()})
            del session
            gc.collect()
            if runtime.cuda_available():
                torch.cuda.empty_cache()
    return results


def write_random_adapter(base, lora, load_in_4bit: bool, seed: int, out: Path) -> None:
    """A LoRA adapter on `base` whose B is seeded noise (an SFT adapter's stand-in), saved in PEFT format."""
    model = precision.for_inference(load_in_4bit).from_pretrained(base.weights, base.revision, base.trust_remote_code)
    decoding.random_lora(model, lora, seed).save_pretrained(out, safe_serialization=True)
