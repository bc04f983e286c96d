"""prepare: rows from a source -> validated, deduplicated, split, formatted training data.

    python -m stages.prepare

Reads   params.yaml (seed, data.*, model.*, train.max_seq_length) and the source named by data.source
Writes  data/prepared/train.jsonl, data/prepared/eval.jsonl   (question, reasoning, answer, prompt, completion, text)
        models/base/                                          (tiny: tokenizer + random Llama; else: tokenizer + base.json)
        reports/prepare/stats.json                            (rows read/kept/skipped by reason, duplicates, token lengths)
The tiny tokenizer is trained here, on the training texts, so every text ends with the model's own EOS
and the token statistics are counted with the tokenizer that train will use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages import base_model, config, dataset, files, prompts, sources
from stages.tasks import medical_cot

PREPARED = Path("data/prepared")
BASE = Path("models/base")
STATS = Path("reports/prepare/stats.json")


def token_stats(lengths: list[int], max_seq_length: int) -> dict:
    lengths = np.asarray(lengths)
    return {"p50": int(np.percentile(lengths, 50)), "p95": int(np.percentile(lengths, 95)),
            "max": int(lengths.max()), "mean": round(float(lengths.mean()), 1), "total": int(lengths.sum()),
            "rows_longer_than_max_seq_length": int((lengths > max_seq_length).sum()),
            "max_seq_length": max_seq_length}


def main() -> None:
    params = config.load()
    data = params.data
    records = sources.load_records(data.source, data.config, data.revision, data.split)
    rows, cleaned = dataset.clean(records, medical_cot.validate, data.on_bad_row, data.max_rows)
    train_rows, eval_rows = dataset.split(rows, data.eval_rows, params.seed)

    corpus = [prompts.training_text(r["question"], r["reasoning"], r["answer"], "") for r in train_rows]
    with files.replaced_dir(BASE) as work_dir:
        tokenizer = base_model.materialize(params.model, corpus, params.seed, params.train.max_seq_length,
                                           work_dir, BASE)
    train_rows = [medical_cot.format_row(r, tokenizer.eos_token) for r in train_rows]
    eval_rows = [medical_cot.format_row(r, tokenizer.eos_token) for r in eval_rows]
    lengths = [len(ids) for ids in tokenizer([r["text"] for r in train_rows + eval_rows])["input_ids"]]

    files.write_jsonl(PREPARED / "train.jsonl", train_rows)
    files.write_jsonl(PREPARED / "eval.jsonl", eval_rows)
    files.write_json(STATS, {
        "source": sources.describe(data.source), "rows_read": cleaned.rows_read, "rows_kept": cleaned.rows_kept,
        "rows_skipped": sum(cleaned.skipped.values()), "skipped_by_reason": dict(sorted(cleaned.skipped.items())),
        "duplicates": cleaned.duplicates, "train_rows": len(train_rows), "eval_rows": len(eval_rows),
        "eos_token": tokenizer.eos_token, "tokens": token_stats(lengths, params.train.max_seq_length)})
    print(f"prepare: {len(train_rows)} train / {len(eval_rows)} eval rows from {sources.describe(data.source)}; "
          f"skipped {sum(cleaned.skipped.values())}, duplicates {cleaned.duplicates}")


if __name__ == "__main__":
    files.run_stage(main)
