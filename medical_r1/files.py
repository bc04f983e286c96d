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


SAFETENSORS_HEADER_LIMIT = 100 * 2**20
"""The safetensors format's own bound on the JSON header (100 MB)."""


def check_safetensors(path: Path, remedy: str) -> None:
    """Stop before any work when `path` is not a whole safetensors file: an 8-byte header length, a JSON header that
    fits in the file, tensors whose byte ranges end exactly at the file's end. `remedy` says what to do."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        header = f.read(length) if 0 < length <= min(SAFETENSORS_HEADER_LIMIT, size - 8) else b""
    try:
        tensors = json.loads(header.decode("utf-8")) if header else None
        ends = [value["data_offsets"][1] for key, value in tensors.items() if key != "__metadata__"]
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        tensors = None
    if tensors is None:
        raise UserError(f"{path}: not a safetensors file (no readable header); {remedy}")
    if 8 + length + max(ends, default=0) != size:
        raise UserError(f"{path}: truncated or padded ({size:,} bytes where its header promises "
                        f"{8 + length + max(ends, default=0):,}); {remedy}")


def read_json_file(path: Path, remedy: str) -> Any:
    """A JSON file another stage or a tool wrote, or one sentence naming it (cut off, not JSON, not UTF-8)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path}: not a complete JSON file ({type(err).__name__}: {str(err)[:80]}); {remedy}") \
            from None


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a UserError ends it with its one-sentence message and exit code 2, Ctrl-C with one line
    and exit code 130. A stage during which params.yaml changed fails too: DVC records a stage's results under the
    params.yaml it finds at the end, and two `dvc exp run` at once rewrite the one params.yaml, so without this the
    results of one run would be filed (dvc.lock, the run-cache) under the other's params."""
    from medical_r1.config import PARAMS_FILE

    started_with = PARAMS_FILE.read_bytes() if PARAMS_FILE.is_file() else None
    try:
        main()
        if (PARAMS_FILE.read_bytes() if PARAMS_FILE.is_file() else None) != started_with:
            raise UserError(f"{PARAMS_FILE} changed while this stage ran (a second `dvc exp run`, or an edit): its "
                            "results are not recorded under params it did not run with; run it again when nothing "
                            "else is running")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: this run's results are not recorded (DVC keeps what it had); run it again",
              file=sys.stderr)  # on a line of its own, after any progress bar
        sys.exit(130)
