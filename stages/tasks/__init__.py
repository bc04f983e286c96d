"""Per task: validate a row, turn it into training text, score generations. `data.task` picks one.

A task module has SAMPLES (bundled sample file per data.config), `validate(value) -> dict`,
`format_row(row, eos_token) -> dict` (the row plus question, answer, prompt, completion, text) and
`score(rows, answers) -> dict` (task metrics of the answers written after `</think>`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from stages import UserError


class BadRow(UserError):
    """A row that fails validation; `reason` is the counter key used in stats.json."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def get(name: str) -> ModuleType:
    """The module of task `name` (config.py has already checked that it exists)."""
    return importlib.import_module(f"stages.tasks.{name}")
