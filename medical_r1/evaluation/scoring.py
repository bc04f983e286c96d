"""Scoring one model: teacher-forced loss and generations on the held-out rows, scored by the task; the MCQ
questions, loaded and scored; both models side by side. Plain values in, plain values out (stages/evaluate.py reads
and writes the files)."""

from __future__ import annotations

from dataclasses import dataclass

from medical_r1 import UserError
from medical_r1.data import dataset, prompts, sources
from medical_r1.data.tasks import mcq
from medical_r1.evaluation import metrics
from medical_r1.generation import inference
from medical_r1.generation.sampling import Sampling, row_key


def held_out(model, tokenizer, rows: list[dict], task, evaluation, max_seq_length: int, label: str
             ) -> tuple[dict, inference.Generations]:
    """Loss on every held-out row, then generations for the first eval.num_samples of them, scored by the task."""
    template = len(tokenizer(prompts.inference_prompt(""))["input_ids"])
    if max_seq_length - evaluation.max_new_tokens < template:
        raise UserError(f"eval.max_new_tokens: {evaluation.max_new_tokens:,} leaves "
                        f"{max_seq_length - evaluation.max_new_tokens:,} of train.max_seq_length's {max_seq_length:,} "
                        f"tokens for a prompt, fewer than the template alone takes ({template:,}): every question "
                        "would be cut away; lower eval.max_new_tokens")
    losses = inference.teacher_forced_loss(model, tokenizer, rows, evaluation.batch_size, max_seq_length)
    sampled = rows[:evaluation.num_samples]
    out = inference.generate(model, tokenizer, [r["prompt"] for r in sampled], evaluation.max_new_tokens,
                             evaluation.batch_size, evaluation.engine, max_seq_length, f"evaluate {label}")
    answers = [prompts.split_generation(t).answer for t in out.texts]
    scores = metrics.held_out_scores(losses["full"], losses["response"], out.texts, out.stopped, out.new_tokens,
                                     out.prompts_cut)
    return scores | task.score(sampled, answers), out


def load_mcq(name: str, mcq_set, max_questions: int | None, on_bad_row: str
             ) -> tuple[list[mcq.Item], dataset.CleanStats]:
    """Set `name`'s questions to score (the first max_questions) and what cleaning them skipped (by reason) and
    dropped as duplicates. A set whose question count differs from its published size is refused."""
    param = f"eval.mcq_sets.{name}"
    hub = mcq_set.source.startswith(sources.HUB_PREFIX)
    source, hub_config = sources.resolve_sample(mcq_set.source, mcq_set.config if hub else None, mcq.SAMPLES,
                                                f"{param}.config")
    records = sources.load_records(source, hub_config, mcq_set.revision if hub else None, mcq_set.split, param)
    if mcq_set.size is not None and len(records) != mcq_set.size:
        raise UserError(f"{param}: {source} holds {len(records):,} questions where the published set has "
                        f"{mcq_set.size:,}; point {param}.source at the whole set (or set {param}.size to null)")
    rows, cleaned = dataset.clean(records, mcq.validate, on_bad_row, max_questions)
    if not rows:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(cleaned.skipped.items())) or "none read"
        raise UserError(f"{param}.source {mcq_set.source!r}: no usable question ({reasons}); fix the file or "
                        f"leave {name} out of eval.mcq")
    return [mcq.Item(**row) for row in rows], cleaned


def check_budget(model, protocol) -> None:
    """Refuse an MCQ budget the model's context cannot hold with a prompt (before anything is scored)."""
    context = inference.context_length(model)
    if protocol.max_new_tokens >= context:
        raise UserError(f"eval.mcq_protocol.max_new_tokens: must be below the model's context ({context:,} tokens, "
                        f"which also holds the prompt), got {protocol.max_new_tokens:,}")


@dataclass
class McqRun:
    scores: dict
    """The set's scores (mcq.score), with prompts_cut."""
    texts: list[list[str]]
    """Every question's generations (one, or the protocol's samples)."""
    tokens_per_second: float


def mcq_scores(model, tokenizer, items: list[mcq.Item], protocol, batch_size, engine: str, seed: int, label: str
               ) -> McqRun:
    """One set under the protocol: each question `samples` times (greedy: once), read and scored."""
    k = protocol.samples
    sampling = (Sampling(protocol.temperature, protocol.top_p) if protocol.decoding == "sampled" else None)
    keys = [row_key(seed, i, j) for i in range(len(items)) for j in range(k)] if sampling else None
    out = inference.generate(model, tokenizer, [mcq.prompt(item) for item in items for _ in range(k)],
                             protocol.max_new_tokens, batch_size, engine, inference.context_length(model), label,
                             sampling, keys)
    thinking = [len(tokenizer(prompts.split_generation(t).thinking, add_special_tokens=False)["input_ids"])
                for t in out.texts]
    texts = [out.texts[i:i + k] for i in range(0, len(out.texts), k)]
    finished = [out.stopped[i:i + k] for i in range(0, len(out.stopped), k)]
    return McqRun(mcq.score(items, texts, finished, thinking) | {"prompts_cut": out.prompts_cut // k}, texts,
                  out.tokens_per_second)


def before_after(base: dict, tuned: dict) -> list[dict]:
    """Both models' 0-1 rates in long form (for `dvc plots`)."""
    base, tuned = metrics.flatten(base), metrics.flatten(tuned)
    return [{"metric": key, "model": name, "value": scores[key]}
            for key in metrics.rate_keys(base) for name, scores in (("base", base), ("tuned", tuned))]


def side_by_side(rows: list[dict], base_texts: list[str], tuned_texts: list[str]) -> list[dict]:
    """The held-out questions with the reference and both models' generations."""
    return [{"question": r["question"], "reference": r["answer"], "base": b, "tuned": t}
            for r, b, t in zip(rows, base_texts, tuned_texts)]
