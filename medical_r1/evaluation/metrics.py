"""Scores for generations and losses. Plain values in, plain values out."""

from __future__ import annotations

import math
import re
from statistics import mean

from medical_r1.data.prompts import split_generation

RATES = ("format_compliance", "stop_rate", "rouge_l", "ner_f1")
"""The 0-1 quality scores drawn together as before/after bars, where a run has them (with each MCQ set's
accuracy, `mcq.<set>.accuracy`)."""
LOSSES = ("eval_loss", "response_loss")
"""Teacher-forced losses on the held-out rows: the whole text, and the response alone."""

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: the keys `dvc metrics show` prints."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def rate_keys(flat_scores: dict) -> list[str]:
    """The 0-1 rates of one model's flattened scores: RATES present, then each MCQ set's accuracy."""
    return [name for name in RATES if name in flat_scores] + [
        key for key in flat_scores if key.startswith("mcq.") and key.endswith(".accuracy")]


def format_compliant(text: str) -> bool:
    """The generation closes `</think>` and then gives a non-empty answer."""
    generation = split_generation(text)
    return generation.closed_think and bool(generation.answer)


def format_compliance(texts: list[str]) -> float:
    """Share of generations that are format compliant."""
    return mean(format_compliant(t) for t in texts) if texts else 0.0


def stop_rate(stopped: list[bool]) -> float:
    """Share of generations that ended with EOS before the token budget ran out."""
    return mean(stopped) if stopped else 0.0


class _MixedScriptTokenizer:
    """Words for Latin text, single characters for CJK (rouge-score's default drops non-ASCII)."""

    def tokenize(self, text: str) -> list[str]:
        spaced = _CJK.sub(lambda m: f" {m.group(0)} ", text.lower())
        return re.findall(r"[\w\u3400-\u9fff\uf900-\ufaff]+", spaced)


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 of each prediction against its reference (rouge-score's LCS)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_MixedScriptTokenizer())
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return mean(scores) if scores else 0.0


def perplexity(loss: float) -> float | None:
    """exp(loss); None (JSON null) past 1e21, where it says nothing a loss of 50 does not."""
    return math.exp(loss) if loss < 50 else None


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def precision_recall_f1(true_positives: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Micro precision, recall and F1 from counts; 0 where a denominator is 0."""
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def held_out_scores(full_loss: float, response_loss: float, texts: list[str], stopped: list[bool],
                    new_tokens: list[int], prompts_cut: int) -> dict:
    """What evaluate reports for every task on the held-out rows, by the names `dvc metrics` shows (the task's own
    scores follow them)."""
    return {"eval_loss": round(full_loss, 5), "perplexity": rounded(perplexity(full_loss), 4),
            "response_loss": round(response_loss, 5), "format_compliance": round(format_compliance(texts), 4),
            "stop_rate": round(stop_rate(stopped), 4), "mean_generated_tokens": round(mean(new_tokens), 1),
            "samples": len(texts), "prompts_cut": prompts_cut}
