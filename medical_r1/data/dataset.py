"""From parsed records to clean, deduplicated, split rows. Plain values in, plain values out."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from medical_r1 import UserError
from medical_r1.data import sources
from medical_r1.data.sources import Record
from medical_r1.data.tasks import BadRow


class DataError(UserError):
    """Data that cannot be used; the message names file, row and field."""


@dataclass
class CleanStats:
    rows_read: int = 0
    rows_kept: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)
    """Skipped rows by reason (e.g. empty_field, malformed_json)."""


def clean(records: list[Record], validate: Callable, on_bad_row: str, max_rows: int | None = None
          ) -> tuple[list[dict], CleanStats]:
    """Validate every record, drop exact duplicates, keep at most `max_rows`."""
    stats, rows, seen = CleanStats(rows_read=len(records)), [], set()
    for record in records:
        try:
            if record.error:
                raise BadRow(record.reason, record.error)
            try:
                row = validate(record.value)
            except (TypeError, AttributeError, KeyError, ValueError) as err:  # a shape no check foresaw
                raise BadRow("wrong_type", f"a field has an unexpected type or shape ({type(err).__name__}: "
                                           f"{err})") from None
        except BadRow as bad:
            if on_bad_row == "error":
                raise DataError(f"{record.origin}: row {record.number}: {bad} "
                                "(set data.on_bad_row=skip to skip and count such rows)") from None
            stats.skipped[bad.reason] += 1
            continue
        key = json.dumps(row, sort_keys=True)
        if key in seen:
            stats.duplicates += 1
            continue
        seen.add(key)
        rows.append(row)
    rows = rows[:max_rows] if max_rows is not None else rows
    stats.rows_kept = len(rows)
    return rows, stats


def tokenized(rows: list[dict], task, tokenizer) -> list[dict]:
    """Each row formatted by the task (its text ending with the tokenizer's EOS) plus `n_tokens`, its length in
    tokens of that tokenizer."""
    rows = [task.format_row(r, tokenizer.eos_token) for r in rows]
    lengths = [len(ids) for ids in tokenizer([r["text"] for r in rows])["input_ids"]] if rows else []
    return [{**r, "n_tokens": n} for r, n in zip(rows, lengths)]


def split(rows: list[dict], eval_rows: int, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded shuffle; the first `eval_rows` are held out. Same rows and seed -> same split."""
    if len(rows) <= eval_rows:
        raise DataError(f"only {len(rows)} usable rows, but data.eval_rows is {eval_rows}; "
                        "lower data.eval_rows or add rows")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in order[eval_rows:]], [rows[i] for i in order[:eval_rows]]


def read_split(data, task, seed: int) -> tuple[list[dict], list[dict], CleanStats, str]:
    """The rows data.* names, cleaned by the task and split: training rows, held-out rows, what cleaning dropped, and
    the source they came from (prepare, and the benchmark around the same recipe)."""
    source, hub_config = sources.resolve_sample(data.source, data.config, task.SAMPLES)
    records = sources.load_records(source, hub_config, data.revision, data.split)
    rows, cleaned = clean(records, task.validate, data.on_bad_row, data.max_rows)
    train_rows, eval_rows = split(rows, data.eval_rows, seed)
    return train_rows, eval_rows, cleaned, source
