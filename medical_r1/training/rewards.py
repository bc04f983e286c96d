"""What a GRPO completion earns: plain functions of (completion text, problem), tested in tests/test_rl.py.

`REWARDS` names the rewards `rl.reward` may choose (config.py derives the allowed values from it). Every reward is
gated on the R1 format: `</think>` closed and an answer after it; the format alone earns nothing, so the policy
cannot raise its reward by formatting. `formatted` is logged beside the reward, never added to it.

Extension point: a learned verifier (a model that judges whether an open answer means the gold one) is a function
of the same signature added to REWARDS; the normalised match below is the rule-based verifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medical_r1.data import prompts
from medical_r1.data.tasks import mcq
from medical_r1.data.tasks.verifiable import Problem

LIST_ALLOWANCE = 24
"""Words an open answer may hold beyond the gold answer's own and still be read as naming it (longer answers that
contain the gold text are lists of candidates, not an answer)."""
ARTICLES = {"a", "an", "the"}


@dataclass(frozen=True)
class Verdict:
    formatted: bool
    """`</think>` closed and a non-empty answer after it."""
    correct: bool
    """The answer after `</think>` is the gold one (the MCQ's letter by mcq.RULES; open: `names`)."""


def normalise(text: str) -> list[str]:
    """Words of `text`: case folded, punctuation and articles dropped."""
    return [w for w in re.sub(r"[^\w\s]", " ", text.casefold()).split() if w not in ARTICLES]


def names(answer: str, gold: str) -> bool:
    """Whether an open answer names the gold answer: its normalised words appear in order, whole, in an answer no
    more than LIST_ALLOWANCE words longer than the gold."""
    said, wanted = normalise(answer), normalise(gold)
    if not wanted or len(said) > len(wanted) + LIST_ALLOWANCE:
        return False
    return any(said[i:i + len(wanted)] == wanted for i in range(len(said) - len(wanted) + 1))


def verdict(completion: str, problem: Problem) -> Verdict:
    split = prompts.split_generation(completion)
    formatted = split.closed_think and bool(split.answer)
    if not formatted:
        return Verdict(False, False)
    if problem.options is not None:
        return Verdict(True, mcq.read_answer(completion, problem.options).letter == problem.gold)
    return Verdict(True, names(split.answer, problem.gold))


def answer(completion: str, problem: Problem) -> float:
    """1 for the right answer after a closed `</think>`, else 0."""
    return float(verdict(completion, problem).correct)


REWARDS = {"answer": answer}
"""rl.reward -> the function that scores a completion."""
