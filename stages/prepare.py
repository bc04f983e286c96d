"""prepare: rows from a source -> validated, deduplicated, split, formatted training data.

    python -m stages.prepare

Reads   params.yaml: seed, data.*, model.*, train.max_seq_length; the source named by data.source (data/sample
        holds the bundled ones, data/local/train/ the local ones DVC watches; rows longer than
        train.max_seq_length are counted, and skipped when data.on_long_row is skip);
        reports/check.json (not read: its dependency makes DVC run check, which validates every param, first)
Writes  data/prepared/train.jsonl, data/prepared/eval.jsonl   (the task's fields + question, answer, prompt,
                                                              completion, text, n_tokens)
        models/base/                                          (tiny: tokenizer + random Llama; else: tokenizer + base.json)
        reports/prepare/stats.json                            (numbers only: rows read/kept/skipped by reason,
                                                              duplicates, long rows, token lengths)
The tiny tokenizer is trained here, on the training texts, so every text ends with the model's own EOS
and the token statistics are counted with the tokenizer that train will use.
"""

from __future__ import annotations

import numpy as np

from medical_r1 import UserError, artifacts, config, files, gpus
from medical_r1.artifacts import BASE, EVAL_ROWS, PREPARE_STATS, TRAIN_ROWS
from medical_r1.data import dataset, prompts, tasks
from medical_r1.model import base_model


def main() -> None:
    params = config.load()
    with gpus.claimed(1):  # random weights are drawn on the GPU
        prepare(params.data, params.model, params.train.max_seq_length, params.seed)


def prepare(data, model, max_seq_length: int, seed: int) -> None:
    artifacts.require_outputs_writable("prepare")
    task = tasks.get(data.task)
    train_rows, eval_rows, cleaned, source = dataset.read_split(data, task, seed)

    corpus = [task.format_row(r, "")["text"] for r in train_rows]
    with files.replaced_dir(BASE.path) as work_dir:  # models/base is replaced only if everything below succeeds
        tokenizer = base_model.materialize(model, corpus, seed, max_seq_length, work_dir, BASE.path)
        check_template_fits(tokenizer, max_seq_length)
        train_rows, eval_rows = (dataset.tokenized(rows, task, tokenizer) for rows in (train_rows, eval_rows))
        long_rows = sum(r["n_tokens"] > max_seq_length for r in train_rows + eval_rows)
        if data.on_long_row == "skip" and long_rows:
            train_rows, eval_rows = drop_long(train_rows, max_seq_length), drop_long(eval_rows, max_seq_length)
            cleaned.skipped["too_long"] += long_rows
            cleaned.rows_kept -= long_rows
            if not train_rows or not eval_rows:
                raise UserError(f"every {'training' if not train_rows else 'held-out'} row is longer than "
                                f"train.max_seq_length ({max_seq_length}); raise it or set "
                                "data.on_long_row=truncate")

    files.write_jsonl(TRAIN_ROWS, train_rows)
    files.write_jsonl(EVAL_ROWS.path, eval_rows)
    PREPARE_STATS.write_json({
        "rows_read": cleaned.rows_read, "rows_kept": cleaned.rows_kept,
        "rows_skipped": sum(cleaned.skipped.values()), "skipped_by_reason": dict(sorted(cleaned.skipped.items())),
        "duplicates": cleaned.duplicates, "train_rows": len(train_rows), "eval_rows": len(eval_rows),
        "rows_longer_than_max_seq_length": long_rows,
        "tokens": token_stats([r["n_tokens"] for r in train_rows + eval_rows])})
    print(f"prepare: {len(train_rows)} train / {len(eval_rows)} eval rows from {source}; "
          f"skipped {sum(cleaned.skipped.values())}, duplicates {cleaned.duplicates}")


def token_stats(lengths: list[int]) -> dict:
    lengths = np.asarray(lengths)
    return {"p50": int(np.percentile(lengths, 50)), "p95": int(np.percentile(lengths, 95)),
            "max": int(lengths.max()), "mean": round(float(lengths.mean()), 1), "total": int(lengths.sum())}


def check_template_fits(tokenizer, max_seq_length: int) -> None:
    overhead = len(tokenizer(prompts.training_text("", "", "", tokenizer.eos_token))["input_ids"])
    if max_seq_length <= overhead:
        raise UserError(f"train.max_seq_length ({max_seq_length}) is below the template's own length "
                        f"({overhead} tokens with empty fields); raise it")


def drop_long(rows: list[dict], max_seq_length: int) -> list[dict]:
    return [r for r in rows if r["n_tokens"] <= max_seq_length]


if __name__ == "__main__":
    files.run_stage(main)
