"""Medical chain-of-thought rows (Question, Complex_CoT, Response), as in medical-o1-reasoning-SFT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medical_r1.data import prompts
from medical_r1.evaluation import metrics
from medical_r1.data.tasks import BadRow, text_field

FIELDS = {"Question": "question", "Complex_CoT": "reasoning", "Response": "answer"}
SAMPLES = {None: Path("data/sample/medical_cot.jsonl"), "en": Path("data/sample/medical_cot.jsonl"),
           "zh": Path("data/sample/medical_cot_zh.jsonl")}
"""The bundled sample per data.config, mirroring the hub's en and zh configs."""


def validate(value: Any) -> dict[str, str]:
    """The row's three fields as {question, reasoning, answer}; raises BadRow naming the field.

    Column names match in any case (QUESTION, complex_cot, ...); the exact spelling wins when both exist, as in
    files that carry an MCQ `question` beside the CoT `Question`.
    """
    if not isinstance(value, dict):
        raise BadRow("not_an_object", f"expected an object with {', '.join(FIELDS)}, got {type(value).__name__}")
    return {name: text_field(value, column).strip() for column, name in FIELDS.items()}


def format_row(row: dict[str, str], eos_token: str) -> dict[str, str]:
    """A validated row plus its inference prompt, target completion and full training text."""
    prompt = prompts.inference_prompt(row["question"])
    completion = prompts.completion(row["reasoning"], row["answer"], eos_token)
    return {**row, "prompt": prompt, "completion": completion, "text": prompt + completion}


def score(rows: list[dict], answers: list[str]) -> dict:
    """ROUGE-L of each answer against the row's reference answer."""
    return {"rouge_l": round(metrics.rouge_l(answers, [r["answer"] for r in rows]), 4)}
