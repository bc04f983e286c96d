"""Verifiable medical questions for reinforcement learning: an MCQ (MedQA, MedMCQA or PubMedQA shape, read by
mcq.py) whose answer is a letter, or an open-ended question with a short ground-truth answer (the shape of
FreedomIntelligence/medical-o1-verifiable-problem: `Open-ended Verifiable Question`, `Ground-True Answer`).

A Problem is what the rl stage prompts with and what a reward checks a completion against; `question_key` is how a
question is recognised in an evaluation set (case and whitespace ignored), so that no RL runs on the test set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medical_r1 import UserError
from medical_r1.data import dataset, prompts, sources
from medical_r1.data.tasks import BadRow, column, mcq, text_field

SAMPLES = {None: Path("data/sample/rl.jsonl")}
"""Our bundled verifiable questions (rl.source: sample)."""
OPEN_QUESTION, OPEN_ANSWER = "Open-ended Verifiable Question", "Ground-True Answer"


@dataclass(frozen=True)
class Problem:
    question: str
    """The question (for an MCQ without its options)."""
    options: dict[str, str] | None
    """Letter -> option text of an MCQ; None for an open-ended question."""
    gold: str
    """The right letter (MCQ) or the ground-truth answer text (open-ended)."""

    def prompt(self) -> str:
        """The R1 template the evaluation prompts with (MCQs with their options listed, as evaluate asks them)."""
        if self.options is None:
            return prompts.inference_prompt(self.question)
        return mcq.prompt(mcq.Item(self.question, self.options, self.gold, "rl"))


def validate(row: Any) -> dict:
    """One row of either shape -> a Problem as a plain dict (for dataset.clean); raises BadRow naming what is
    wrong."""
    if isinstance(row, dict) and column(row, OPEN_QUESTION) is not None:
        return asdict(Problem(text_field(row, OPEN_QUESTION).strip(), None, text_field(row, OPEN_ANSWER).strip()))
    try:
        item = mcq.adapt(row)
    except BadRow as bad:
        if bad.reason != "unknown_shape":
            raise
        raise BadRow("unknown_shape", f"not a verifiable question: expected an MCQ row (MedQA, MedMCQA or PubMedQA "
                                      f"fields) or `{OPEN_QUESTION}` + `{OPEN_ANSWER}`") from None
    return asdict(Problem(item.question, item.options, item.gold))


def load(rl, on_bad_row: str) -> tuple[list[Problem], dataset.CleanStats]:
    """The usable questions of rl.source and what cleaning them skipped (by reason) and dropped as duplicates."""
    hub = rl.source.startswith(sources.HUB_PREFIX)
    source, hub_config = sources.resolve_sample(rl.source, rl.config if hub else None, SAMPLES, "rl.config")
    records = sources.load_records(source, hub_config, rl.revision if hub else None, rl.split, "rl")
    rows, cleaned = dataset.clean(records, validate, on_bad_row)
    if not rows:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(cleaned.skipped.items())) or "none read"
        raise UserError(f"rl.source {rl.source!r}: no verifiable question ({reasons}); rows need an MCQ's options "
                        f"and answer, or `{OPEN_QUESTION}` and `{OPEN_ANSWER}`")
    return [Problem(**row) for row in rows], cleaned


def question_key(question: str) -> str:
    """A question as compared across sets: case folded, whitespace collapsed."""
    return " ".join(question.casefold().split())
