"""evaluate: one model (the base, or the tuned base + adapter) on the held-out rows, and MCQ when asked.

    python -m stages.evaluate base      # dvc.yaml: evaluate_base, rerun only when the base or eval.* change
    python -m stages.evaluate tuned     # dvc.yaml: evaluate, after train

Reads   params.yaml: data.task, data.on_bad_row, eval.*, train.load_in_4bit, train.max_seq_length;
        data/prepared/eval.jsonl, models/base/, eval.mcq.source when set;
        (data/sample/mcq.jsonl is the bundled one); tuned also models/adapter/ and evaluate_base's
        reports/eval/base/metrics.json and reports/eval/base/generations.jsonl
Writes  reports/eval/<model>/metrics.json   {"<model>": {...}}: eval_loss and perplexity (full text),
                                            response_loss, format_compliance, stop_rate, mean_generated_tokens,
                                            samples (questions generated for), and the task's scores: rouge_l
                                            (medical_cot) or ner_precision/recall/f1, ner_f1.<type>,
                                            ner_malformed_lines, ner_not_in_text (cmeee_ner); with
                                            eval.mcq.source: mcq_accuracy (overall and per source shape),
                                            mcq_no_letter, mcq_thinking_tokens, and what the MCQ file lost:
                                            mcq_rows_skipped, mcq_duplicates; prompts_cut (mcq_prompts_cut): prompts
                                            longer than train.max_seq_length - the budget, cut to their end
        reports/eval/<model>/perf.json      generation tokens/s and batch size (and MCQ tokens/s), peak memory
        reports/eval/<model>/generations.jsonl  what the model wrote: each sampled held-out question
                                            (prompt_set held_out), then each MCQ question with its gold and
                                            chosen letter (prompt_set mcq)
        tuned also:
        reports/eval/samples.jsonl          question, reference, base output, tuned output
        reports/eval/before_after.csv       the 0-1 scores (metrics.RATES present) of both, long form, for `dvc plots`
Same prompts and greedy decoding for both, through medical_r1/generation/inference.py: plain transformers whichever backend
trained the adapter, the adapter merged into float32 weights and kept as LoRA layers on 16-bit ones (a bf16 merge
rounds part of a small adapter away: medical_r1/generation/inference.py, load), the static-cache engine (a CUDA graph per decode step
on a GPU) unless eval.engine says `generate`.
"""

from __future__ import annotations

import sys

from medical_r1 import UserError, artifacts, config, files, runtime
from medical_r1.artifacts import ADAPTER, BASE, EVAL_ROWS, GENERATIONS, MODELS
from medical_r1.data import tasks
from medical_r1.data.tasks import mcq
from medical_r1.evaluation import scoring
from medical_r1.generation import inference
from medical_r1.model import base_model
from medical_r1.model.base_model import BaseModel


def main() -> None:
    name = sys.argv[1] if len(sys.argv) == 2 else None
    if name not in MODELS:
        raise UserError("usage: python -m stages.evaluate base|tuned")
    params = config.load()
    evaluate(name, params.eval, params.data.task, params.data.on_bad_row, params.train.load_in_4bit,
             params.train.max_seq_length)


def evaluate(name: str, evaluation, task_name: str, on_bad_row: str, load_in_4bit: bool, max_seq_length: int
             ) -> None:
    files.require_inputs([EVAL_ROWS.path, BASE.path / base_model.BASE_FILE], "prepare")
    if name == "tuned":
        files.require_inputs([ADAPTER.path / "adapter_config.json"], "train")
        artifacts.require_all(artifacts.EVAL_METRICS["base"], GENERATIONS["base"])
    artifacts.require_outputs_writable(artifacts.EVAL_STAGE[name])
    items, cleaned = scoring.load_mcq(evaluation.mcq, on_bad_row) if evaluation.mcq.source else (None, None)
    base = read_base() if name == "tuned" else None  # a bad MCQ file or base output fails before any model runs
    runtime.setup()
    rows = files.read_jsonl(EVAL_ROWS.path)
    model, tokenizer = inference.load(BaseModel.read(BASE.path), ADAPTER.path if name == "tuned" else None,
                                      load_in_4bit)
    scores, out = scoring.held_out(model, tokenizer, rows, tasks.get(task_name), evaluation, max_seq_length, name)
    perf = {"generation_tokens_per_second": out.tokens_per_second, "generation_batch_size": out.batch_size}
    generations = [{"prompt_set": "held_out", "generation": t} for t in out.texts]
    if items:
        mcq_scores, mcq_out = scoring.mcq_scores(model, tokenizer, items, evaluation, max_seq_length, name)
        scores |= mcq_scores | {"mcq_rows_skipped": sum(cleaned.skipped.values()),
                                "mcq_duplicates": cleaned.duplicates, "mcq_prompts_cut": mcq_out.prompts_cut}
        perf["mcq_generation_tokens_per_second"] = mcq_out.tokens_per_second
        generations += [{"prompt_set": "mcq", "question": item.question, "gold": item.gold,
                         "chosen": mcq.extract_letter(text, item.options), "generation": text}
                        for item, text in zip(items, mcq_out.texts)]
    artifacts.save_scores(name, scores)
    artifacts.save_eval_perf(name, perf | runtime.peak_memory())
    files.write_jsonl(GENERATIONS[name].path, generations)
    if base is not None:
        base_scores, base_texts = base
        files.write_csv(artifacts.BEFORE_AFTER.path, scoring.before_after(base_scores, scores))
        files.write_jsonl(artifacts.SAMPLES.path, scoring.side_by_side(rows, base_texts, out.texts))
    print(f"evaluate {name}: eval loss {scores['eval_loss']}, format compliance {scores['format_compliance']}")


def read_base() -> tuple[dict, list[str]]:
    """evaluate_base's scores and held-out generations, checked to be what evaluate_base writes."""
    scores = artifacts.load_scores("base")
    try:
        texts = [g["generation"] for g in files.read_jsonl(GENERATIONS["base"].path) if g["prompt_set"] == "held_out"]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{GENERATIONS['base'].path}: not what evaluate_base writes ({type(err).__name__}: {err}); "
                        "run evaluate_base again") from None
    return scores, texts


if __name__ == "__main__":
    files.run_stage(main)
