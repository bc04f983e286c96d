"""Medical multiple-choice questions: MedQA, MedMCQA and PubMedQA rows in one shape, and reading the answer.

Each row is adapted to (question, lettered options, gold letter); the prompt is the R1 template with the
options listed; the chosen letter is read from the text after `</think>` by RULES (docs/tasks.md lists them).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from medical_r1.data import prompts
from medical_r1.data.tasks import BadRow, checked_text

SAMPLES = {None: Path("data/sample/mcq.jsonl")}
"""Our bundled MCQ sample (an eval.mcq_sets entry with source: sample)."""
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


RULES = (
    ("boxed", r"\\boxed\{\s*(?:\\text\{)?\s*\(?({L})\b"),
    ("stated", r"(?i:answer|option|choice)\s*(?i:is|would be|should be|:|=|-)?\s*(?i:option\s*)?[\(\[]?\**"
               r"(?:({L})\b|({l})(?=$|[.,;:)\]*]))"),
    ("bold", r"\*\*\s*[\(\[]?({L})(?:[\)\].:]|\s*\*\*)"),
    ("listed", r"(?:^|\n)\s*[\(\[]?({L})[\)\].:](?:\s|$)"),
    ("bracketed", r"[\(\[]({L})[\)\]]|(?:^|\s)({L})\)"),
    ("alone", r"^\W*({L})\W*$"),
)
"""How the chosen letter is read from the answer (the text after `</think>`), tried in this order; the first rule
that matches decides, and if it matches two different letters the answer is ambiguous (no letter). `{L}` stands for
the question's option letters, `{l}` for them in lower case (read only when nothing follows but punctuation)."""


@dataclass(frozen=True)
class Reading:
    letter: str | None
    """The chosen option, or None."""
    rule: str
    """What decided: a RULES name, `option_text` (exactly one option's text named), or why there is no letter:
    `unclosed` (no `</think>`: a chain cut off by the budget, or never closed), `ambiguous`, `none`."""


def read_answer(generation: str, options: dict[str, str]) -> Reading:
    """The option the model chose: only the text after `</think>` counts; there the letter by RULES, else the one
    option whose text the answer names (case-insensitive, whole words)."""
    split = prompts.split_generation(generation)
    if not split.closed_think:
        return Reading(None, "unclosed")
    letters = "".join(options)
    for name, pattern in RULES:
        regex = re.compile(pattern.replace("{L}", f"[{letters}]").replace("{l}", f"[{letters.lower()}]"))
        found = {letter.upper() for match in regex.finditer(split.answer) for letter in match.groups() if letter}
        if len(found) == 1:
            return Reading(found.pop(), name)
        if found:
            return Reading(None, "ambiguous")
    named = [letter for letter, text in options.items()
             if re.search(rf"(?<!\w){re.escape(text.strip())}(?!\w)", split.answer, re.IGNORECASE)]
    return Reading(named[0], "option_text") if len(named) == 1 else Reading(None, "none")


def extract_letter(generation: str, options: dict[str, str]) -> str | None:
    return read_answer(generation, options).letter


def score(items: list[Item], generations: list[list[str]], finished: list[list[bool]],
          thinking_tokens: list[int]) -> dict:
    """One set's scores: accuracy (pass@1: the mean over every question's samples), the shares of answers with no
    letter and of truncated chains (no `</think>` when the budget ran out), mean thinking tokens."""
    chosen = [[extract_letter(g, item.options) for g in samples] for item, samples in zip(items, generations)]
    flat = [c == item.gold for item, letters in zip(items, chosen) for c in letters]
    truncated = [not prompts.split_generation(g).closed_think and not done
                 for samples, ends in zip(generations, finished) for g, done in zip(samples, ends)]
    return {"accuracy": round(mean(flat), 4), "no_letter": round(mean(c is None for cs in chosen for c in cs), 4),
            "truncated": round(mean(truncated), 4), "thinking_tokens": round(mean(thinking_tokens), 1),
            "questions": len(items), "samples": len(generations[0])}
