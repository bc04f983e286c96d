"""train: LoRA fine-tune of the base model on the prepared rows, with Unsloth or transformers + peft.

    python -m stages.train
    dvc exp run -S train.backend=hf -S train.max_steps=3
    dvc exp run -S train.num_processes=2      # DDP: 2 GPUs (2 CPU processes with gloo on a machine without one)

Reads   params.yaml: seed, lora.*, train.*; data/prepared/{train,eval}.jsonl, models/base/
Writes  models/adapter/              LoRA adapter (PEFT format, safetensors) + tokenizer
        reports/train/metrics.json   loss first/final, held-out loss, steps, tokens seen (identical on reruns)
        reports/train/perf.json      seconds, tokens/s, peak memory (GPU allocated/reserved, or CPU max RSS)
        reports/train/run.json       what the run resolved: device, weights (random or pretrained), optimizer,
                                     gradient checkpointing on or off, processes, rows per optimizer step
        reports/train/steps.csv      per logged step: loss, learning rate, grad norm, tokens seen
        reports/train/step_times.csv per logged step: tokens/s and seconds since the start (timings)
        reports/train/eval_loss.csv  held-out loss every train.save_steps
Keeps   models/checkpoints/<run>/    trainer checkpoints every train.save_steps while the run is incomplete (not
                                     a DVC output): with train.resume=auto a killed run continues from the
                                     newest complete one (at the same train.num_processes); a finished run
                                     deletes them
With train.num_processes above 1 the stage runs itself under torchrun (medical_r1/distributed.py); only the first
process writes.
The recipe itself (load, checkpointing decision, LoRA, SFTTrainer) is medical_r1/training/finetune.py: setup -> fit.
"""

from __future__ import annotations

from pathlib import Path

from medical_r1 import artifacts, config, distributed, files, runtime
from medical_r1.artifacts import ADAPTER, BASE, CHECKPOINTS, EVAL_ROWS, TRAIN_ROWS
from medical_r1.model import base_model
from medical_r1.model.base_model import BaseModel
from medical_r1.training import checkpoints, finetune, steplog


def main() -> None:
    params = config.load()
    files.require_inputs([TRAIN_ROWS, EVAL_ROWS.path, BASE.path / base_model.BASE_FILE], "prepare")
    artifacts.require_outputs_writable("train")
    processes = distributed.processes(params.train.num_processes, "train.num_processes")
    finetune.check_processes(params.train, processes)
    run = checkpoints.fingerprint(params.seed, params.lora, params.train, TRAIN_ROWS, BASE.path)
    resume_from = resumable(run, params.train, processes)
    if not resume_from and not distributed.in_worker():
        checkpoints.clear(CHECKPOINTS)  # this run starts over, and other runs' leftovers go too
    distributed.run("stages.train", processes, lambda: train(params, run, resume_from, processes))


def resumable(run: str, train, processes: int) -> Path | None:
    """The checkpoint this run continues from (train.resume: auto), written at this process count."""
    if train.resume != "auto":
        return None
    checkpoint = checkpoints.find_resumable(checkpoints.run_dir(CHECKPOINTS, run), run, train.max_steps)
    if checkpoint:
        checkpoints.require_same_processes(checkpoint, processes)
    return checkpoint


def train(params, run: str, resume_from: Path | None, processes: int) -> None:
    """Train in this process (one of `processes`); the first writes the outputs."""
    base = BaseModel.read(BASE.path)
    train_rows, eval_rows = files.read_jsonl(TRAIN_ROWS), files.read_jsonl(EVAL_ROWS.path)
    session = finetune.setup(base, params.train, params.lora, params.seed, [r["n_tokens"] for r in train_rows])
    if resume_from:
        session.log.restore(files.read_json(resume_from / checkpoints.MARKER))
        if distributed.is_main():
            print(f"train: resuming from {resume_from}")
    seconds = fit(session, train_rows, eval_rows, params.seed, run, resume_from, processes, params.train)
    if distributed.is_main():
        save(session, seconds, base, params.train, processes)


def fit(session: finetune.Session, train_rows: list[dict], eval_rows: list[dict], seed: int, run: str,
        resume_from: Path | None, processes: int, train) -> float:
    """finetune.fit with checkpoints in this run's own folder, deleted once the run has finished or diverged (a
    crash or a kill keeps them)."""
    run_dir = checkpoints.run_dir(CHECKPOINTS, run)
    try:
        seconds = finetune.fit(session, train_rows, eval_rows, train, seed, run_dir,
                               [checkpoints.marker_writer(run, session.log, processes)], resume_from)
    except steplog.Diverged:
        if distributed.is_main():
            checkpoints.clear(run_dir)  # resuming would only diverge again
        raise
    if distributed.is_main():
        checkpoints.clear(run_dir)
    return seconds


def save(session: finetune.Session, seconds: float, base: BaseModel, train, processes: int) -> None:
    """The adapter and tokenizer, the step log and the run's numbers."""
    finetune.save_adapter(session.model, session.tokenizer, ADAPTER.path, BASE.path)
    log = session.log
    steps, times = steplog.split_timings(log.rows)
    files.write_csv(artifacts.TRAIN_STEPS.path, steps)
    files.write_csv(artifacts.STEP_TIMES.path, times)
    files.write_csv(artifacts.EVAL_LOSS.path, log.evals)
    metrics = steplog.summarize(log)
    perf = {**steplog.speed(log, seconds), **runtime.peak_memory()}
    if session.estimated_peak_gib is not None:
        perf["estimated_peak_gib_without_recompute"] = session.estimated_peak_gib
    artifacts.TRAIN_METRICS.write_json(metrics)
    artifacts.TRAIN_PERF.write_json(perf)
    artifacts.save_run_info(runtime.device_name(), base.init, session.gradient_checkpointing,
                            finetune.resolve_optim(train.optim, runtime.cuda_available()), session.packing, processes,
                            train.per_device_train_batch_size * train.gradient_accumulation_steps * processes)
    if train.packing and not session.packing:
        print("train: train.packing is true, but the trainer could not pack rows here and trained them unpacked "
              "(reports/train/run.json records packing: false)")
    print(f"train: loss {metrics['train_loss_first']} -> {metrics['train_loss_final']} in {metrics['steps']} steps, "
          f"{perf['tokens_per_second']} tokens/s")


if __name__ == "__main__":
    files.run_stage(main)
