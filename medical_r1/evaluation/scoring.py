"""Scoring one model: teacher-forced loss and generations on the held-out rows, scored by the task; the MCQ
questions, loaded and scored; both models side by side. Plain values in, plain values out (stages/evaluate.py reads
and writes the files)."""

from __future__ import annotations

from medical_r1 import UserError
from medical_r1.data import dataset, prompts, sources
from medical_r1.data.tasks import mcq
from medical_r1.evaluation import metrics
from medical_r1.generation import inference


def held_out(model, tokenizer, rows: list[dict], task, evaluation, max_seq_length: int, label: str
             ) -> tuple[dict, inference.Generations]:
    """Loss on every held-out row, then generations for the first eval.num_samples of them, scored by the task."""
    losses = inference.teacher_forced_loss(model, tokenizer, rows, evaluation.batch_size, max_seq_length)
    sampled = rows[:evaluation.num_samples]
    out = inference.generate(model, tokenizer, [r["prompt"] for r in sampled], evaluation.max_new_tokens,
                             evaluation.batch_size, evaluation.engine, max_seq_length, f"evaluate {label}")
    answers = [prompts.split_generation(t).answer for t in out.texts]
    scores = metrics.held_out_scores(losses["full"], losses["response"], out.texts, out.stopped, out.new_tokens,
                                     out.prompts_cut)
    return scores | task.score(sampled, answers), out


def load_mcq(mcq_config, on_bad_row: str) -> tuple[list[mcq.Item], dataset.CleanStats]:
    """The questions to score and what cleaning them skipped (by reason) and dropped as duplicates."""
    source, hub_config = sources.resolve_sample(mcq_config.source, mcq_config.config, mcq.SAMPLES, "eval.mcq.config")
    records = sources.load_records(source, hub_config, None, mcq_config.split, "eval.mcq")
    rows, cleaned = dataset.clean(records, mcq.validate, on_bad_row, mcq_config.max_rows)
    if not rows:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(cleaned.skipped.items())) or "none read"
        raise UserError(f"eval.mcq.source {mcq_config.source!r}: no usable question ({reasons}); fix the file or "
                        "set eval.mcq.source to null")
    return [mcq.Item(**row) for row in rows], cleaned


def mcq_scores(model, tokenizer, items: list[mcq.Item], evaluation, max_seq_length: int, label: str
               ) -> tuple[dict, inference.Generations]:
    """MCQ scores over all questions, and the generations they were drawn from."""
    out = inference.generate(model, tokenizer, [mcq.prompt(item) for item in items],
                             evaluation.mcq.max_new_tokens, evaluation.batch_size, evaluation.engine, max_seq_length,
                             f"evaluate {label} MCQ")
    thinking = [len(tokenizer(prompts.split_generation(t).thinking, add_special_tokens=False)["input_ids"])
                for t in out.texts]
    return mcq.score(items, out.texts, thinking), out


def before_after(base: dict, tuned: dict) -> list[dict]:
    """Both models' 0-1 rates in long form (for `dvc plots`)."""
    return [{"metric": key, "model": name, "value": scores[key]}
            for key in metrics.RATES if key in base for name, scores in (("base", base), ("tuned", tuned))]


def side_by_side(rows: list[dict], base_texts: list[str], tuned_texts: list[str]) -> list[dict]:
    """The held-out questions with the reference and both models' generations."""
    return [{"question": r["question"], "reference": r["answer"], "base": b, "tuned": t}
            for r, b, t in zip(rows, base_texts, tuned_texts)]
