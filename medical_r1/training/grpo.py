"""The GRPO recipe: setup -> fit. stages/rl.py, stages/bench.py and the tests train through it.

    session = grpo.setup(base, adapter_dir, load_in_4bit, max_seq_length, rl, seed)   # the policy
    seconds = grpo.fit(session, problems, rl, seed, output_dir)

`setup` loads the base with the rl.backend backend and the SFT adapter on it, trainable; with
rl.beta > 0 a frozen copy of the adapter too, named `ref`, which TRL's GRPOTrainer takes as the reference of the KL
term. `fit` runs GRPOTrainer on the problems' prompts: each step samples rl.num_generations completions per question
(rollouts), scores them with the rl.reward function (training/rewards.py) and updates the adapter. Rollouts come
from our static engine (`Rollouts`, rl.engine: static) with the adapter's current weights, or from TRL's own
generate() path (rl.engine: generate). `StepLog` keeps what each step did and where its time went.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medical_r1 import runtime
from medical_r1.data.tasks.verifiable import Problem
from medical_r1.generation import inference
from medical_r1.generation.sampling import Sampling, row_key
from medical_r1.model import backends, lora_decoding, precision
from medical_r1.model.base_model import BaseModel
from medical_r1.training import finetune, rewards

LOGGED = {"reward": "reward", "accuracy": "rewards/{reward}/mean", "format_rate": "rewards/formatted/mean",
          "completion_length": "completions/mean_length", "truncated": "completions/clipped_ratio", "kl": "kl",
          "loss": "loss"}
"""Per-step column -> the key GRPOTrainer logs it under ({reward}: rl.reward)."""


TIMED = ("seconds", "rollout_seconds", "reward_seconds", "rollout_tokens")
"""Per-step timings: the whole step, its rollouts, its rewards (the rest is the policy update), new tokens rolled out."""


@dataclass
class StepLog:
    rows: list[dict] = field(default_factory=list)
    """Per GRPO step: LOGGED's values (the same on every rerun)."""
    times: list[dict] = field(default_factory=list)
    """Per GRPO step: TIMED's values."""
    current: dict = field(default_factory=lambda: dict.fromkeys(TIMED, 0))
    """The step in progress."""


@dataclass
class Session:
    model: Any
    """The base with the SFT adapter, trainable (a PeftModel), on this machine's device."""
    tokenizer: Any
    log: StepLog


def setup(base: BaseModel, adapter: Path, load_in_4bit: bool, max_seq_length: int, rl, seed: int) -> Session:
    """The policy: base (rl.backend; NF4 with train.load_in_4bit, else 16-bit) + the SFT adapter, trainable; its
    frozen copy `ref` when rl.beta > 0."""
    from peft import PeftModel

    stored_as = precision.for_inference(load_in_4bit)  # as SFT saw it (FP8 only sped SFT's products up)
    stored_as.require_machine()  # before the weights load
    runtime.setup(seed)
    model, tokenizer = backends.get(rl.backend).load(base, stored_as, max_seq_length)
    model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    if rl.beta > 0:
        model.load_adapter(str(adapter), adapter_name="ref", is_trainable=False)
        model.set_adapter("default")
    return Session(model, tokenizer, StepLog())


def fit(session: Session, problems: list[Problem], rl, seed: int, output_dir: str | Path) -> float:
    """GRPO for rl.max_steps steps on `problems`; the wall time in seconds."""
    trainer = grpo_trainer(session, problems, rl, seed, str(output_dir))
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def grpo_trainer(session: Session, problems: list[Problem], rl, seed: int, output_dir: str):
    """TRL's GRPOTrainer configured from rl.*, its rollouts timed into session.log."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    log, cuda, greedy = session.log, torch.cuda.is_available(), rl.temperature == 0

    class TimedRollouts(GRPOTrainer):  # GRPOTrainer._generate (trl 1.15): every rollout of a step, either engine
        def _generate(self, prompts):
            began = time.perf_counter()
            out = super()._generate(prompts)
            log.current["rollout_seconds"] += time.perf_counter() - began
            log.current["rollout_tokens"] += sum(map(len, out[1]))
            return out

    class Steps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            log.current["seconds"] = -time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()  # the update's kernels belong to this step, not to the next rollout
            log.current["seconds"] += time.perf_counter()
            log.times.append({"step": state.global_step, **log.current})
            log.current = dict.fromkeys(TIMED, 0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                keys = {column: key.format(reward=rl.reward) for column, key in LOGGED.items()}
                log.rows.append({"step": state.global_step, **{c: round(logs[k], 6) for c, k in keys.items()
                                                                if k in logs}})

    dtype = getattr(session.model, "dtype", torch.float32)
    args = GRPOConfig(
        output_dir=output_dir, seed=seed, data_seed=seed, report_to="none", max_steps=rl.max_steps,
        per_device_train_batch_size=rl.prompts_per_step * rl.num_generations, gradient_accumulation_steps=1,
        num_generations=rl.num_generations, max_completion_length=rl.max_new_tokens,
        temperature=1.0 if greedy else rl.temperature, top_p=rl.top_p,
        generation_kwargs={"do_sample": False} if greedy else None,
        learning_rate=rl.learning_rate, lr_scheduler_type="constant", warmup_steps=0, beta=rl.beta,
        loss_type=rl.loss_type, optim=finetune.resolve_optim("auto", cuda), logging_steps=1, save_strategy="no",
        logging_nan_inf_filter=False, reward_weights=[1.0, 0.0], dataloader_num_workers=0,
        bf16=cuda and dtype == torch.bfloat16, fp16=cuda and dtype == torch.float16, gradient_checkpointing=cuda)
    dataset = Dataset.from_list([{"prompt": p.prompt(), "problem": json.dumps(asdict(p))} for p in problems])
    rollouts = Rollouts(session.tokenizer, rl, seed) if rl.engine == "static" else None
    return TimedRollouts(model=session.model, args=args, processing_class=session.tokenizer,
                         reward_funcs=reward_functions(rl.reward, log), train_dataset=dataset,
                         rollout_func=rollouts, callbacks=[Steps()])


def reward_functions(name: str, log: StepLog) -> list:
    """GRPOTrainer's reward functions: rl.reward (weight 1) and `formatted` (weight 0: logged, never rewarded)."""
    score = rewards.REWARDS[name]

    def timed(function, label: str):
        def reward(completions: list[str], problem: list[str], **_) -> list[float]:
            began = time.perf_counter()
            values = [function(c, Problem(**json.loads(p))) for c, p in zip(completions, problem)]
            log.current["reward_seconds"] += time.perf_counter() - began
            return values

        reward.__name__ = label  # GRPOTrainer logs rewards/<name>/mean
        return reward

    formatted = lambda completion, problem: float(rewards.verdict(completion, problem).formatted)  # noqa: E731
    return [timed(score, name), timed(formatted, "formatted")]


class Rollouts:
    """GRPOTrainer's rollout_func on our static engine: each prompt's completion sampled at rl.temperature / top_p
    (greedy at 0) with the policy's current weights, keyed by (seed, step, row) so a rerun samples the same tokens.
    The adapter decodes as evaluate decodes it unmerged (lora_decoding.fused: one down-projection per shared input,
    in the base's dtype); PEFT's own LoRA layers made a decode step of the 8B ~50% slower."""

    def __init__(self, tokenizer, rl, seed: int):
        self.tokenizer, self.budget, self.seed = tokenizer, rl.max_new_tokens, seed
        self.sampling = Sampling(rl.temperature, rl.top_p) if rl.temperature > 0 else None

    def __call__(self, prompts: list[str], trainer) -> dict:
        model = trainer.accelerator.unwrap_model(trainer.model)
        encoded = [self.tokenizer(p)["input_ids"] for p in prompts]
        keys = ([row_key(self.seed, trainer.state.global_step, i) for i in range(len(prompts))]
                if self.sampling else None)
        training = model.training
        model.eval()
        try:
            with lora_decoding.fused(model) as policy:
                run = inference.generate_tokens(policy, encoded, self.budget, "auto", "static",
                                                self.tokenizer.eos_token_id, self.tokenizer.pad_token_id,
                                                f"rollout {trainer.state.global_step + 1}", self.sampling, keys)
        finally:
            model.train(training)
        return {"prompt_ids": encoded, "completion_ids": run.tokens, "logprobs": None}


def summarize(log: StepLog, problems: int, seconds: float) -> tuple[dict, dict]:
    """(metrics, perf) of a run: the reward at the first and the last step (the first samples the SFT policy), the
    last step's accuracy, format rate, completion length and truncated share (and KL); where the time went
    (`seconds`: the whole run). The per-step values are in steps.csv."""
    metrics: dict = {"steps": len(log.rows), "problems": problems}
    if log.rows:
        first, last = log.rows[0], log.rows[-1]
        metrics |= {"reward_first": first["reward"], **{f"{column}_final": last[column] for column in LOGGED
                                                          if column in last and column != "loss"}}
    return metrics, {"seconds": round(seconds, 2), **split(log.times)}


def split(times: list[dict], per_step: bool = False) -> dict:
    """Where the steps' time went: rollout, reward and policy update seconds (summed, or per step), the rollout
    share, the rollout new tokens/s."""
    total = {key: sum(t[key] for t in times) for key in TIMED}
    update = total["seconds"] - total["rollout_seconds"] - total["reward_seconds"]
    n = len(times) if per_step else 1
    return {"rollout_seconds": round(total["rollout_seconds"] / n, 3),
            "reward_seconds": round(total["reward_seconds"] / n, 4), "update_seconds": round(update / n, 3),
            "rollout_share": round(total["rollout_seconds"] / total["seconds"], 4) if total["seconds"] else None,
            "rollout_tokens_per_second": round(total["rollout_tokens"] / total["rollout_seconds"], 1)
            if total["rollout_seconds"] else None}
