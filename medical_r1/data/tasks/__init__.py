"""Per task: validate a row, turn it into training text, score generations. `data.task` picks one.

A task module has SAMPLES (bundled sample file per data.config), `validate(value) -> dict`,
`format_row(row, eos_token) -> dict` (the row plus question, answer, prompt, completion, text) and
`score(rows, answers) -> dict` (task metrics of the answers written after `</think>`).
"""

from __future__ import annotations

import importlib
import unicodedata
from types import ModuleType
from typing import Any

from medical_r1 import UserError


class BadRow(UserError):
    """A row that fails validation; `reason` is the counter key used in stats.json."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def column(value: dict, name: str) -> str | None:
    """The key of `value` that holds column `name`: spelled exactly, else in any case (`QUESTION`, `question`);
    None when there is none. Two spellings that differ only in case, and neither exact, are a bad row."""
    if name in value:
        return name
    matches = [key for key in value if isinstance(key, str) and key.casefold() == name.casefold()]
    if len(matches) > 1:
        raise BadRow("ambiguous_column", f"field {name}: spelled {' and '.join(map(repr, matches))}; keep one")
    return matches[0] if matches else None


def text_field(value: dict, name: str) -> str:
    """Column `name` of a row, checked by `checked_text` (returned as it is); raises BadRow naming it."""
    key = column(value, name)
    if key is None:
        raise BadRow("missing_field", f"field {name}: missing (expected a non-empty string)")
    return checked_text(value[key], f"field {name}")


def checked_text(text: Any, label: str) -> str:
    """`text` if it is non-empty text; raises BadRow starting with `label`. Text with nothing visible (only spaces,
    zero-width or other format characters) is empty, and text that is not valid Unicode (a lone surrogate from a
    JSON escape) cannot be encoded by any tokenizer."""
    if not isinstance(text, str):
        raise BadRow("not_a_string", f"{label}: expected a non-empty string, got {type(text).__name__}")
    if not visible(text):
        raise BadRow("empty_field", f"{label}: empty (expected a non-empty string)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BadRow("not_encodable", f"{label}: not valid Unicode text ({err.reason} at character "
                                      f"{err.start})") from None
    return text


def visible(text: Any) -> str:
    """`text` without whitespace and invisible format characters (zero-width space, joiners, BOM, ...)."""
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c) != "Cf")


def get(name: str) -> ModuleType:
    """The module of task `name` (config.py has already checked that it exists)."""
    return importlib.import_module(f"{__name__}.{name}")
