"""The training step log (one row per logged step, the last step always among them) and the run's numbers: the
steps and tokens from what ran (the trainer's state, the token counter), the losses from the log."""

from __future__ import annotations

import math
import time

from medical_r1 import UserError, distributed

TIMING_COLUMNS = ("tokens_per_second", "seconds")
"""Step-log columns that vary between reruns; steps.csv leaves them to step_times.csv."""


def step_logger(model, pad_token_id: int):
    """A TrainerCallback that records one row per logged step (loss, lr, grad norm, tokens/s).

    Tokens are counted where they enter the model (a hook on the input embeddings, training forwards
    only, padding excluded), so every backend and collator (padded or padding-free) is counted alike; under DDP
    each process counts its own and the log sums them (every process logs and saves at the same steps).
    """
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        def __init__(self):
            self.rows, self.evals = [], []
            self.started = self.last_time = None
            self.tokens, self.seen, self.offset = 0, 0, 0.0
            self.steps = 0
            self.diverged = None
            model.get_input_embeddings().register_forward_hook(self.count_tokens)

        def count_tokens(self, module, args, output):
            if module.training:  # a device tensor: no host sync per forward
                self.tokens = self.tokens + (args[0] != pad_token_id).sum()

        def state(self) -> dict:
            """What a resumed run needs to continue this log (saved with each checkpoint; every process calls it)."""
            return {"rows": self.rows, "evals": self.evals, "tokens": distributed.total(self.tokens),
                    "seconds": round(time.perf_counter() - self.started, 4)}

        def restore(self, saved: dict) -> None:
            self.rows, self.evals = saved["rows"], saved["evals"]
            self.seen = saved["tokens"]
            self.tokens = saved["tokens"] if distributed.is_main() else 0  # the processes' counts sum to it
            self.offset = saved["seconds"]

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_time = time.perf_counter()
            self.started = self.last_time - self.offset

        def on_step_end(self, args, state, control, **kwargs):
            self.steps = state.global_step
            if state.global_step >= state.max_steps:
                control.should_log = True  # whatever train.logging_steps says: the run's last loss is its result

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            self.diverged = self.diverged or divergence(state.global_step, logs)
            if self.diverged:  # the trainer stops after this step; finetune.fit then fails with the message
                control.should_training_stop = True
                return
            if "eval_loss" in logs:
                self.evals.append({"step": state.global_step, "eval_loss": round(logs["eval_loss"], 5)})
            if "loss" not in logs:
                return
            now, tokens = time.perf_counter(), distributed.total(self.tokens)
            rate = (tokens - self.seen) / max(now - self.last_time, 1e-9)
            self.last_time, self.seen = now, tokens
            self.rows.append({"step": state.global_step, "loss": round(logs["loss"], 5),
                              "learning_rate": logs.get("learning_rate", 0.0),
                              "grad_norm": round(float(logs.get("grad_norm", 0.0)), 5),
                              "tokens_per_second": round(rate, 1), "tokens_seen": tokens,
                              "seconds": round(now - self.started, 4)})

    return StepLog()


class Diverged(UserError):
    """The loss or the gradient norm stopped being a finite number: the run has no result."""


def divergence(step: int, logs: dict) -> str | None:
    """What is wrong when a logged loss, held-out loss or gradient norm is not a finite number (else None)."""
    bad = {key: logs[key] for key in ("loss", "eval_loss", "grad_norm")
           if key in logs and not math.isfinite(float(logs[key]))}
    if not bad:
        return None
    values = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in bad.items())
    return (f"train diverged at step {step} ({values}, learning rate {logs.get('learning_rate', '?')}): no adapter "
            "or metrics are written; lower train.learning_rate, or check train.max_seq_length and the rows")


def split_timings(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The step log as (what reruns reproduce, the timings keyed by step)."""
    steps = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]
    times = [{"step": row["step"], **{k: row[k] for k in TIMING_COLUMNS}} for row in rows]
    return steps, times


def summarize(log) -> dict:
    """The run's headline numbers: the same on every rerun with the same params."""
    rows = log.rows
    return {"steps": log.steps, "train_loss_first": rows[0]["loss"] if rows else None,
            "train_loss_final": rows[-1]["loss"] if rows else None,
            "eval_loss_final": log.evals[-1]["eval_loss"] if log.evals else None,
            "tokens_seen": log.seen}


def speed(log, train_seconds: float) -> dict:
    """Wall time and throughput of the run (these vary between reruns; metrics.json keeps only what does not)."""
    tokens = log.seen
    return {"train_seconds": round(train_seconds, 2),
            "tokens_per_second": round(tokens / train_seconds, 1) if train_seconds else 0.0}
