"""Medical multiple-choice questions: MedQA, MedMCQA and PubMedQA rows in one shape, and reading the answer.

Each row is adapted to (question, lettered options, gold letter); the prompt is the R1 template with the
options listed; the chosen letter is read from the text after `</think>`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from medical_r1.data import prompts
from medical_r1.data.tasks import BadRow, checked_text

SAMPLES = {None: Path("data/sample/mcq.jsonl")}
"""The bundled MCQ sample (eval.mcq.source: sample)."""
LETTERS = "ABCDEFGHIJ"
INSTRUCTION = "Answer with the letter of the correct option."


@dataclass(frozen=True)
class Item:
    question: str
    options: dict[str, str]
    """Letter -> option text, in order."""
    gold: str
    """The correct letter."""
    source: str
    """medqa | medmcqa | pubmedqa: which shape the row had."""


def adapt(row: Any) -> Item:
    """One MCQ row of any supported shape -> Item; raises BadRow naming what is wrong."""
    if not isinstance(row, dict):
        raise BadRow("not_an_object", f"expected an object, got {type(row).__name__}")
    if "final_decision" in row:
        nested = row.get("context") if isinstance(row.get("context"), dict) else {}
        contexts = row.get("CONTEXTS") or nested.get("contexts") or []
        context = " ".join(map(str, contexts)) if isinstance(contexts, list) else str(contexts)
        question = str(row.get("QUESTION") or row.get("question") or "")
        options = {"A": "yes", "B": "no", "C": "maybe"}
        gold = {"yes": "A", "no": "B", "maybe": "C"}.get(str(row["final_decision"]).lower())
        return _checked((context + "\n\n" + question).strip(), options, gold, "pubmedqa")
    if isinstance(row.get("options"), dict):
        options = {str(k).strip().upper(): v for k, v in row["options"].items()}
        gold = row.get("answer_idx") or next((k for k, v in options.items() if v == row.get("answer")), None)
        return _checked(row.get("question"), options, gold, "medqa")
    if "opa" in row or isinstance(row.get("choices"), list):
        texts = [row[k] for k in ("opa", "opb", "opc", "opd", "ope") if k in row] or row["choices"]
        options = dict(zip(LETTERS, texts))
        index = row.get("cop", row.get("answer"))
        is_index = isinstance(index, int) and not isinstance(index, bool)
        gold = LETTERS[index] if is_index and 0 <= index < len(options) else index
        return _checked(row.get("question"), options, gold, "medmcqa")
    raise BadRow("unknown_shape", "not an MCQ row: expected MedQA (options + answer_idx), MedMCQA (opa..opd + cop, "
                                  "or choices + answer) or PubMedQA (QUESTION + final_decision) fields")


def validate(row: Any) -> dict:
    """`adapt` as a plain dict (for dataset.clean); Item(**d) turns it back."""
    return asdict(adapt(row))


def _checked(question: Any, options: dict[str, Any], gold: Any, source: str) -> Item:
    question = checked_text(question, "field question")
    options = {letter: checked_text(str(text) if isinstance(text, (int, float)) and not isinstance(text, bool)
                                    else text, f"option {letter}") for letter, text in options.items()}
    if len(options) < 2:
        raise BadRow("too_few_options", f"expected at least 2 options, got {len(options)}")
    if not isinstance(gold, str) or gold.strip().upper() not in options:
        raise BadRow("gold_not_an_option", f"gold answer {gold!r} is not among the options {', '.join(options)}")
    return Item(question.strip(), options, gold.strip().upper(), source)


def prompt(item: Item) -> str:
    listed = "\n".join(f"{letter}. {text}" for letter, text in item.options.items())
    return prompts.inference_prompt(f"{item.question}\n\nOptions:\n{listed}\n\n{INSTRUCTION}")


def _patterns(letters: str) -> list[re.Pattern]:
    L = f"[{letters}]"
    return [re.compile(p, re.IGNORECASE if i < 2 else 0) for i, p in enumerate([
        rf"(?:answer|option|choice)\s*(?:is|would be|should be|:|=)?\s*(?:option\s*)?[\(\[]?\**({L})\b(?![a-z])",
        rf"(?:^|\n)\s*(?:final answer|answer)\s*[:\-]\s*\**[\(\[]?({L})\b",
        rf"\*\*\s*[\(\[]?({L})[\)\].:]?\s*\**",
        rf"(?:^|\n)\s*[\(\[]?({L})[\)\].:](?:\s|$)",
        rf"[\(\[]({L})[\)\]]",
        rf"(?:^|\s)({L})\)",
        rf"^\s*({L})\s*$",
    ])]


def extract_letter(generation: str, options: dict[str, str]) -> str | None:
    """The option the model chose, from the text after `</think>` (all of it if the tag never closed)."""
    split = prompts.split_generation(generation)
    answer = split.answer if split.closed_think else split.thinking
    letters = "".join(options)
    for pattern in _patterns(letters):
        found = pattern.search(answer)
        if found:
            return found.group(1).upper()
    named = [letter for letter, text in options.items() if text and text.lower() in answer.lower()]
    return named[0] if len(named) == 1 else None


def score(items: list[Item], generations: list[str], thinking_tokens: list[int]) -> dict:
    """Accuracy overall and per source, the share with no readable letter, mean thinking tokens."""
    chosen = [extract_letter(g, item.options) for g, item in zip(generations, items)]
    correct = [c == item.gold for c, item in zip(chosen, items)]
    by_source = defaultdict(list)
    for item, ok in zip(items, correct):
        by_source[item.source].append(ok)
    return {"mcq_accuracy": round(mean(correct), 4) if correct else 0.0,
            **{f"mcq_accuracy.{src}": round(mean(oks), 4) for src, oks in sorted(by_source.items())},
            "mcq_no_letter": round(mean(c is None for c in chosen), 4) if chosen else 0.0,
            "mcq_thinking_tokens": round(mean(thinking_tokens), 1) if thinking_tokens else 0.0}
