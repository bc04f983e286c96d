"""train: LoRA fine-tune of the base model on the prepared rows, with Unsloth or transformers + peft.

    python -m stages.train
    dvc exp run -S train.backend=hf -S train.max_steps=3

Reads   params.yaml (seed, lora.*, train.*), data/prepared/{train,eval}.jsonl, models/base/
Writes  models/adapter/              LoRA adapter (PEFT format, safetensors) + tokenizer
        reports/train/metrics.json   loss first/final, held-out loss, steps, tokens seen (identical on reruns)
        reports/train/perf.json      seconds, tokens/s, peak memory (GPU allocated/reserved, or CPU max RSS)
        reports/train/run.json       what the run resolved: device, weights (random or pretrained), optimizer,
                                     gradient checkpointing on or off
        reports/train/steps.csv      per logged step: loss, learning rate, grad norm, tokens seen
        reports/train/step_times.csv per logged step: tokens/s and seconds since the start (timings)
        reports/train/eval_loss.csv  held-out loss every train.save_steps
Keeps   models/checkpoints/<run>/    trainer checkpoints every train.save_steps while the run is incomplete (not
                                     a DVC output): with train.resume=auto a killed run continues from the
                                     newest complete one; a finished run deletes them
"""

from __future__ import annotations

import time
from pathlib import Path

from stages import backends, base_model, checkpoints, config, files, runtime, trainer
from stages.base_model import BaseModel

PREPARED = Path("data/prepared")
BASE = Path("models/base")
ADAPTER = Path("models/adapter")
CHECKPOINTS = Path("models/checkpoints")
REPORTS = Path("reports/train")


def sort_target_modules(adapter_dir: Path) -> None:
    """PEFT writes target_modules from a set, in an order that changes with Python's hash seed; sort it
    so that reruns write byte-identical adapters."""
    path = adapter_dir / "adapter_config.json"
    adapter_config = files.read_json(path)
    if isinstance(adapter_config.get("target_modules"), list):
        adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    files.write_json(path, adapter_config)


def main() -> None:
    params = config.load()
    backend = backends.get(params.train.backend)
    runtime.setup(params.seed)
    base = BaseModel.read(BASE)
    model, tokenizer = backend.load(base, params.train)
    train_rows = files.read_jsonl(PREPARED / "train.jsonl")
    lengths = [min(r["n_tokens"], params.train.max_seq_length) for r in train_rows]  # counted by prepare
    checkpointing, estimated_peak = trainer.decide_checkpointing(params.train, model, lengths)
    model = backend.add_lora(model, params.lora, params.seed, checkpointing)

    log = trainer.step_logger(model, tokenizer.pad_token_id)
    run = checkpoints.fingerprint(params, PREPARED / "train.jsonl", BASE)
    run_dir = checkpoints.run_dir(CHECKPOINTS, run)
    resume_from = (checkpoints.find_resumable(run_dir, run, params.train.max_steps)
                   if params.train.resume == "auto" else None)
    if resume_from:
        log.restore(files.read_json(resume_from / checkpoints.MARKER))
        print(f"train: resuming from {resume_from}")
    else:
        checkpoints.clear(CHECKPOINTS)  # this run starts over, and other runs' leftovers go too
    sft = trainer.build(model, tokenizer, train_rows, files.read_jsonl(PREPARED / "eval.jsonl"), params.train,
                        params.seed, str(run_dir), [log, checkpoints.marker_writer(run, log)],
                        gradient_checkpointing=checkpointing and params.train.backend == "hf")
    started = time.perf_counter()
    sft.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - started + log.offset

    with files.replaced_dir(ADAPTER) as work_dir:
        sft.model.save_pretrained(work_dir, safe_serialization=True)
        sort_target_modules(work_dir)
        base_model.save_tokenizer(tokenizer, work_dir)
    checkpoints.clear(run_dir)
    steps, times = trainer.split_timings(log.rows)
    files.write_csv(REPORTS / "steps.csv", steps)
    files.write_csv(REPORTS / "step_times.csv", times)
    files.write_csv(REPORTS / "eval_loss.csv", log.evals)
    metrics = trainer.summarize(log)
    perf = {**trainer.speed(log, seconds), **runtime.peak_memory()}
    if estimated_peak is not None:
        perf["estimated_peak_gib_without_recompute"] = estimated_peak
    files.write_json(REPORTS / "metrics.json", metrics)
    files.write_json(REPORTS / "perf.json", perf)
    files.write_json(REPORTS / "run.json", {
        "device": runtime.device_name(), "weights": base.init, "gradient_checkpointing": checkpointing,
        "optim": trainer.resolve_optim(params.train.optim, runtime.cuda_available())})
    print(f"train: loss {metrics['train_loss_first']} -> {metrics['train_loss_final']} in {metrics['steps']} steps, "
          f"{perf['tokens_per_second']} tokens/s")


if __name__ == "__main__":
    files.run_stage(main)
