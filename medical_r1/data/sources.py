"""Rows from a data source: a task's bundled sample, a local .json/.jsonl/.parquet/.csv file, or the hub.

Every loader returns `Record`s that remember where they came from (file and 1-based row number), so a
bad row can be reported precisely. A row that cannot even be parsed (a JSONL line that is not JSON,
bytes that are not UTF-8) is a Record with `error` set; a file that cannot be read at all raises
SourceError with one sentence.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medical_r1 import UserError, artifacts, distributed

HUB_PREFIX = "hf:"
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")
LOCAL_FOLDERS = {"data": artifacts.LOCAL_TRAIN, "rl": artifacts.LOCAL_RL, "eval": artifacts.LOCAL_EVAL}
"""Per params section: the folder for its local sources, a dependency of the stages that read them (dvc.yaml)."""
LOCAL_HINT = ("point data.source at a local .json/.jsonl/.parquet/.csv file "
              "(e.g. -S data.source=data/local/train/rows.jsonl)")


class SourceError(UserError):
    """A data source that cannot be read; the message is one sentence."""


@dataclass(frozen=True)
class Record:
    origin: str
    """File (or hub id) the row came from."""
    number: int
    """1-based row number in that file (line number for JSONL and CSV)."""
    value: Any
    """The parsed row, usually a dict; None when it could not be parsed."""
    error: str | None = None
    """Why the row could not be parsed, if it could not."""
    reason: str | None = None
    """The skip-count key of that error (malformed_json, not_utf8, wrong_field_count)."""


def resolve_sample(source: str, config: str | None, samples: dict, param: str = "data.config"
                   ) -> tuple[str, str | None]:
    """`sample` -> (the task's bundled file for `config`, no config); any other source is returned unchanged."""
    if source != "sample":
        return source, config
    if config not in samples:
        choices = ", ".join(str(c) for c in samples if c is not None) or "none (leave the config null)"
        raise SourceError(f"{param} {config!r}: the bundled sample has no such config; choose {choices}")
    return str(samples[config]), None


def load_records(source: str, config: str | None = None, revision: str | None = None,
                 split: str = "train", param: str = "data") -> list[Record]:
    """All rows of `source` in order; see the module docstring for the schemes. `param` names the params whose
    `source` and `config` these are (data, rl, eval.mcq_sets.<set>), for the messages and the watched folder."""
    if source.startswith(HUB_PREFIX):
        return read_hub(source[len(HUB_PREFIX):], config, revision, split)
    path = Path(source)
    if "://" in source or path.suffix.lower() not in LOCAL_SUFFIXES:
        raise SourceError(f"{param}.source {source!r}: unknown scheme; use `sample`, `hf:<dataset id>` or a "
                          f"local file ending in {', '.join(LOCAL_SUFFIXES)}")
    if config is not None:
        raise SourceError(f"{param}.config {config!r}: only hub sources (hf:...) have configs; "
                          f"set {param}.config to null for the local file {source}")
    records = read_local(path)
    note_if_untracked(path, param)
    return records


def note_if_untracked(path: Path, param: str) -> None:
    """One line when a local source is not under a path that every stage reading `param` depends on (its section's
    folder, or a bundled sample those stages list): DVC then cannot see it change."""
    folder = LOCAL_FOLDERS[param.split(".")[0]]
    read_by_all = set.intersection(*(set(artifacts.read_by(stage)) for stage in folder.readers))
    watched = [a.path.resolve() for a in read_by_all if a.kind == "source"]
    where = path.absolute().parent.resolve() / path.name  # the folder's links resolved, the file's own kept
    if distributed.is_main() and not any(where.is_relative_to(w) for w in watched):
        print(f"note: {param}.source {path} lies outside {folder.path}/, so DVC will not see an edit to it; keep it "
              f"in {folder.path}/, or after an edit run `dvc repro --force {' '.join(folder.readers)}`", flush=True)


def read_local(path: Path) -> list[Record]:
    if path.is_dir():
        raise SourceError(f"{path}: a directory, not a file of rows; {LOCAL_HINT}")
    if not path.exists():
        raise SourceError(f"{path}: " + ("a symbolic link to nothing (or a loop of links)" if path.is_symlink()
                                         else "no such file"))
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file (a device, socket or pipe); {LOCAL_HINT}")
    data = path.read_bytes()
    if not data.strip():
        raise SourceError(f"{path}: the file is empty")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path, data)
    if suffix == ".parquet":
        return _read_parquet(path)
    text = _decode(path, data)
    return _read_json(path, text) if suffix == ".json" else _read_csv(path, text)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SourceError(f"{path}: not UTF-8 text (bad byte at offset {err.start})") from None


def _read_jsonl(path: Path, data: bytes) -> list[Record]:
    records = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(Record(str(path), number, json.loads(line.decode("utf-8-sig"))))
        except UnicodeDecodeError as err:
            records.append(Record(str(path), number, None, f"not UTF-8 (bad byte at column {err.start + 1})",
                                  "not_utf8"))
        except json.JSONDecodeError as err:
            records.append(Record(str(path), number, None, f"not valid JSON ({err.msg} at column {err.colno})",
                                  "malformed_json"))
    return records


def _read_json(path: Path, text: str) -> list[Record]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if isinstance(rows, dict) and isinstance(rows.get("data"), list):
        rows = rows["data"]
    if not isinstance(rows, list):
        raise SourceError(f"{path}: expected a JSON list of rows, got a {type(rows).__name__}")
    return [Record(str(path), number, row) for number, row in enumerate(rows, start=1)]


CSV_FIELD_LIMIT = 2**31 - 1
"""The csv module stops at fields over 128 KiB; a long text is a long row (data.on_long_row), not an unreadable file."""


def _read_csv(path: Path, text: str) -> list[Record]:
    """Rows by header, each numbered by the line it starts on; a row with more or fewer fields than the header (an
    unquoted comma) is a bad row; an unclosed quote is an unreadable file (it would swallow every later line)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records, header, start = [], None, 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise SourceError(f"{path}: not readable as CSV from line {start} on ({err})") from None
        number, start = start, reader.line_num + 1
        if header is None:
            header = fields
        elif not fields:  # a blank line
            continue
        elif len(fields) != len(header):
            records.append(Record(str(path), number, None, f"{len(fields)} fields, but the header has "
                                  f"{len(header)} (a comma inside an unquoted field?)", "wrong_field_count"))
        else:
            records.append(Record(str(path), number, dict(zip(header, fields))))
    return records


def _read_parquet(path: Path) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several unrelated types for a corrupt file
        raise SourceError(f"{path}: not a readable parquet file ({err})") from None
    return [Record(str(path), number, row) for number, row in enumerate(rows, start=1)]


def read_hub(dataset_id: str, config: str | None, revision: str | None, split: str) -> list[Record]:
    """A hub dataset (or a local dataset folder) through `datasets.load_dataset`."""
    import datasets

    datasets.disable_progress_bars()
    where = f"hf:{dataset_id}" + (f" (config {config})" if config else "")
    try:
        rows = datasets.load_dataset(dataset_id, config, revision=revision, split=split)
    except (ConnectionError, OSError):
        raise SourceError(f"{where}: not reachable (offline or no network) and not in the local cache; "
                          f"{LOCAL_HINT}") from None
    except (ValueError, KeyError) as err:  # unknown config or split, bad revision
        raise SourceError(f"{where}: {str(err).splitlines()[0]}") from None
    return [Record(where, number, row) for number, row in enumerate(rows, start=1)]
