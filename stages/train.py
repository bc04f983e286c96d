"""train: LoRA fine-tune of the base model on the prepared rows, with Unsloth or transformers + peft.

    python -m stages.train
    dvc exp run -S train.backend=hf -S train.max_steps=3

Reads   params.yaml (seed, lora.*, train.*), data/prepared/{train,eval}.jsonl, models/base/
Writes  models/adapter/              LoRA adapter (PEFT format, safetensors) + tokenizer
        models/checkpoints/          trainer checkpoints every train.save_steps (persisted by DVC)
        reports/train/metrics.json   loss first/final, steps, tokens seen, seconds, tokens/s, peak memory
        reports/train/steps.csv      per logged step: loss, learning rate, grad norm, tokens/s
        reports/train/eval_loss.csv  held-out loss every train.save_steps
"""

from __future__ import annotations

import time
from pathlib import Path

from stages import backends, config, files, trainer
from stages.base_model import BaseModel

PREPARED = Path("data/prepared")
BASE = Path("models/base")
ADAPTER = Path("models/adapter")
CHECKPOINTS = Path("models/checkpoints")
REPORTS = Path("reports/train")


def main() -> None:
    params = config.load()
    backend = backends.get(params.train.backend)
    trainer.seed_everything(params.seed)
    base = BaseModel.read(BASE)
    model, tokenizer = backend.load(base, params.train)
    cuda = backends.cuda_available()
    checkpointing = trainer.use_gradient_checkpointing(params.train.gradient_checkpointing, cuda)
    model = backend.add_lora(model, params.lora, params.seed, checkpointing)

    log = trainer.step_logger(model, tokenizer.pad_token_id)
    sft = trainer.build(model, tokenizer, files.read_jsonl(PREPARED / "train.jsonl"),
                        files.read_jsonl(PREPARED / "eval.jsonl"), params.train, params.seed, str(CHECKPOINTS),
                        [log], backend_checkpoints=params.train.backend == "hf")
    started = time.perf_counter()
    sft.train()
    seconds = time.perf_counter() - started

    with files.replaced_dir(ADAPTER) as work_dir:
        sft.model.save_pretrained(work_dir, safe_serialization=True)
        tokenizer.save_pretrained(work_dir)
    files.write_csv(REPORTS / "steps.csv", log.rows)
    files.write_csv(REPORTS / "eval_loss.csv", log.evals)
    metrics = {"backend": params.train.backend, "weights": base.init, **trainer.summarize(log, seconds),
               "gradient_checkpointing": checkpointing, **trainer.peak_memory()}
    files.write_json(REPORTS / "metrics.json", metrics)
    print(f"train: loss {metrics['train_loss_first']} -> {metrics['train_loss_final']} in {metrics['steps']} steps, "
          f"{metrics['tokens_per_second']} tokens/s")


if __name__ == "__main__":
    files.run_stage(main)
