"""TRL's SFTTrainer, configured from TrainConfig, plus the per-step log and the run's metrics."""

from __future__ import annotations

import time

from stages import memory, trl_cpu


def resolve_optim(optim: str, cuda: bool) -> str:
    """`auto`: 8-bit AdamW where bitsandbytes runs (a CUDA GPU), plain AdamW elsewhere."""
    if optim != "auto":
        return optim
    return "adamw_8bit" if cuda else "adamw_torch"


def decide_checkpointing(train, model, lengths: list[int]) -> tuple[bool, float | None]:
    """train.gradient_checkpointing resolved for this model on this device, and the estimated peak (GiB) of the
    largest micro-batch of these rows without recomputation (None on the CPU). See stages/memory.py."""
    import torch

    if not torch.cuda.is_available():
        return memory.choose_checkpointing(train.gradient_checkpointing, None, None), None
    batch = train.per_device_train_batch_size
    tokens = (batch * train.max_seq_length if train.packing
              else memory.worst_batch_tokens(lengths, batch, padding_free=train.backend == "unsloth"))
    loaded = torch.cuda.memory_allocated() / 2**30
    estimate = memory.estimated_peak_gib(model.config, train.backend, tokens, loaded)
    gpu = torch.cuda.get_device_properties(0).total_memory / 2**30
    return memory.choose_checkpointing(train.gradient_checkpointing, estimate, gpu), round(estimate, 2)


def build(model, tokenizer, train_rows: list[dict], eval_rows: list[dict] | None, train, seed: int,
          output_dir: str, callbacks: list, gradient_checkpointing: bool):
    """An SFTTrainer on the rows' `text` (prompt + reasoning + answer + EOS); held-out loss every save_steps."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    if not cuda:
        trl_cpu.install()
    dtype = model.dtype if hasattr(model, "dtype") else torch.float32
    args = SFTConfig(
        output_dir=output_dir, seed=seed, data_seed=seed, report_to="none",
        max_steps=train.max_steps, per_device_train_batch_size=train.per_device_train_batch_size,
        per_device_eval_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps, learning_rate=train.learning_rate,
        warmup_steps=train.warmup_steps, optim=resolve_optim(train.optim, cuda), weight_decay=train.weight_decay,
        lr_scheduler_type=train.lr_scheduler_type, logging_steps=train.logging_steps,
        save_steps=train.save_steps, save_total_limit=2, eval_strategy="steps" if eval_rows else "no", eval_steps=train.save_steps,
        bf16=cuda and dtype == torch.bfloat16, fp16=cuda and dtype == torch.float16,
        max_length=train.max_seq_length, packing=train.packing, dataset_text_field="text",
        # Unsloth sets up its own (offloaded) checkpointing in get_peft_model, so it passes False here.
        gradient_checkpointing=gradient_checkpointing,
        dataloader_num_workers=0,
    )
    to_dataset = lambda rows: Dataset.from_list([{"text": r["text"]} for r in rows])  # noqa: E731
    return SFTTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=to_dataset(train_rows),
                      eval_dataset=to_dataset(eval_rows) if eval_rows else None, callbacks=callbacks)


def step_logger(model, pad_token_id: int):
    """A TrainerCallback that records one row per logged step (loss, lr, grad norm, tokens/s).

    Tokens are counted where they enter the model (a hook on the input embeddings, training forwards
    only, padding excluded), so every backend and collator (padded or padding-free) is counted alike.
    """
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        def __init__(self):
            self.rows, self.evals = [], []
            self.started = self.last_time = None
            self.last_tokens, self.tokens, self.offset = 0, 0, 0.0
            model.get_input_embeddings().register_forward_hook(self.count_tokens)

        def count_tokens(self, module, args, output):
            if module.training:  # a device tensor: no host sync per forward
                self.tokens = self.tokens + (args[0] != pad_token_id).sum()

        def state(self) -> dict:
            """What a resumed run needs to continue this log (saved with each checkpoint)."""
            return {"rows": self.rows, "evals": self.evals, "tokens": int(self.tokens),
                    "seconds": round(time.perf_counter() - self.started, 4)}

        def restore(self, saved: dict) -> None:
            self.rows, self.evals = saved["rows"], saved["evals"]
            self.tokens = self.last_tokens = saved["tokens"]
            self.offset = saved["seconds"]

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_time = time.perf_counter()
            self.started = self.last_time - self.offset

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "eval_loss" in logs:
                self.evals.append({"step": state.global_step, "eval_loss": round(logs["eval_loss"], 5)})
            if "loss" not in logs:
                return
            now, tokens = time.perf_counter(), int(self.tokens)
            rate = (tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
            self.last_time, self.last_tokens = now, tokens
            self.rows.append({"step": state.global_step, "loss": round(logs["loss"], 5),
                              "learning_rate": logs.get("learning_rate", 0.0),
                              "grad_norm": round(float(logs.get("grad_norm", 0.0)), 5),
                              "tokens_per_second": round(rate, 1), "tokens_seen": tokens,
                              "seconds": round(now - self.started, 4)})

    return StepLog()


TIMING_COLUMNS = ("tokens_per_second", "seconds")
"""Step-log columns that vary between reruns; steps.csv leaves them to step_times.csv."""


def split_timings(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The step log as (what reruns reproduce, the timings keyed by step)."""
    steps = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]
    times = [{"step": row["step"], **{k: row[k] for k in TIMING_COLUMNS}} for row in rows]
    return steps, times


def summarize(log) -> dict:
    """The run's headline numbers from the step log: the same on every rerun with the same params."""
    rows = log.rows
    return {"steps": rows[-1]["step"] if rows else 0, "train_loss_first": rows[0]["loss"] if rows else None,
            "train_loss_final": rows[-1]["loss"] if rows else None,
            "eval_loss_final": log.evals[-1]["eval_loss"] if log.evals else None,
            "tokens_seen": rows[-1]["tokens_seen"] if rows else 0}


def speed(log, train_seconds: float) -> dict:
    """Wall time and throughput of the run (these vary between reruns; metrics.json keeps only what does not)."""
    tokens = log.rows[-1]["tokens_seen"] if log.rows else 0
    return {"train_seconds": round(train_seconds, 2),
            "tokens_per_second": round(tokens / train_seconds, 1) if train_seconds else 0.0}
