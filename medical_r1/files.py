"""Writing outputs so an interrupted stage never leaves a half-written file for DVC to cache."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from medical_r1 import UserError


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON: a NaN or infinity (which json would write as the invalid `NaN`) stops the stage instead."""
    try:
        text = json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False, allow_nan=False)
    except ValueError:
        raise UserError(f"{path}: {non_finite(obj)} is not a finite number; a result like that is not written") \
            from None
    write_text(path, text + "\n")


def non_finite(obj: Any, where: str = "") -> str | None:
    """The dotted key of the first NaN or infinity in `obj`."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "the value"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return next((found for key, value in items if (found := non_finite(value, f"{where}.{key}".lstrip(".")))), None)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_csv(path: str | Path, rows: list[dict]) -> None:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, out.getvalue())


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV we wrote, numbers parsed back to int/float."""
    def number(text: str):
        try:
            return int(text)
        except ValueError:
            return float(text) if text else None

    with open(path, encoding="utf-8", newline="") as f:
        return [{key: number(value) for key, value in row.items()} for row in csv.DictReader(f)]


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def replaced_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces `path` only if the block finishes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def require_inputs(paths: list[Path], made_by: str) -> None:
    """Stop before any work when an input another stage writes is missing."""
    for path in paths:
        if not Path(path).exists():
            raise UserError(f"{path}: missing; it is written by {made_by}, so run that first (`dvc repro` runs "
                            "every stage in order)")


def require_writable(files: list[Path] = (), directories: list[Path] = ()) -> None:
    """Stop before any work when an output could not be written (a file where a folder must be, or the reverse, or
    no write permission), so a stage never fails half-way with some outputs new and some old."""
    for path, is_dir in [*((Path(f), False) for f in files), *((Path(d), True) for d in directories)]:
        if path.exists() and path.is_dir() != is_dir:
            raise UserError(f"{path}: {'a file' if is_dir else 'a directory'} is in the way of this stage's "
                            f"{'folder' if is_dir else 'file'}; move it away")
        existing = next(p for p in path.parents if p.exists())  # the folder that is, or will hold, the output
        if not existing.is_dir():
            raise UserError(f"{existing}: a file where a folder must be (to write {path}); move it away")
        if not os.access(existing, os.W_OK):
            raise UserError(f"{existing}: not writable, and this stage writes {path} there")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a UserError ends it with its one-sentence message and exit code 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
