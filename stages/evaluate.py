"""evaluate: one model (the base, or the tuned base + adapter) on the held-out rows and the MCQ sets of eval.mcq.

    python -m stages.evaluate base      # dvc.yaml: evaluate_base, rerun only when the base or eval.* change
    python -m stages.evaluate tuned     # dvc.yaml: evaluate, after train
    dvc exp run -S eval.num_processes=2 # the batches shared by 2 processes (GPUs), the same files as one writes

Reads   params.yaml: seed (sampled MCQ decoding), data.task, data.on_bad_row, eval.*, train.load_in_4bit,
        train.max_seq_length; data/prepared/eval.jsonl, models/base/, each eval.mcq set's source (ours:
        data/sample/mcq.jsonl; local ones DVC watches: data/local/eval/); tuned also models/tuned/ and
        evaluate_base's reports/eval/base/metrics.json and reports/eval/base/generations.jsonl
Writes  reports/eval/<model>/metrics.json   {"<model>": {...}}: eval_loss and perplexity (full text),
                                            response_loss, format_compliance, stop_rate, mean_generated_tokens,
                                            samples (questions generated for), prompts_cut (held-out prompts longer
                                            than train.max_seq_length - the budget, cut to their end), and the
                                            task's scores: rouge_l (medical_cot) or ner_precision/recall/f1,
                                            ner_f1.<type>, ner_malformed_lines, ner_not_in_text (cmeee_ner); per
                                            MCQ set, mcq.<set>: accuracy (pass@1), no_letter, truncated,
                                            thinking_tokens, questions, samples, prompts_cut, rows_skipped,
                                            duplicates
        reports/eval/<model>/perf.json      generation tokens/s and batch size, MCQ tokens/s per set, peak memory
                                            (the first process's), processes; tuned: the adapter's decoding route
                                            (merged or lora) and merge error
        reports/eval/<model>/generations.jsonl  what the model wrote: each sampled held-out question
                                            (prompt_set held_out), then every MCQ generation with its set, gold,
                                            sample number, chosen letter and the rule that read it (prompt_set mcq)
        tuned also:
        reports/eval/samples.jsonl          question, reference, base output, tuned output
        reports/eval/before_after.csv       both models' 0-1 scores (metrics.rate_keys), long form, for `dvc plots`
Same prompts and decoding for both, through medical_r1/generation/inference.py: plain transformers whichever backend
trained the adapter, the adapter merged where the merge keeps its effect and else run beside the base
(medical_r1/model/lora_decoding.py), the static-cache engine (a CUDA graph per decode step on a GPU) unless
eval.engine says `generate`.
"""

from __future__ import annotations

import sys

from medical_r1 import UserError, artifacts, config, distributed, files, runtime
from medical_r1.artifacts import BASE, EVAL_ROWS, GENERATIONS, MODELS, TUNED
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
    processes = distributed.processes(params.eval.num_processes, "eval.num_processes")
    mcq_sets, base = inputs(name, params.eval, params.data.on_bad_row)
    distributed.run("stages.evaluate", processes, lambda: evaluate(
        name, mcq_sets, base, params.eval, params.data.task, params.train.load_in_4bit, params.train.max_seq_length,
        params.seed))


def inputs(name: str, evaluation, on_bad_row: str) -> tuple[dict, tuple[dict, list[str]] | None]:
    """The MCQ sets to score and, for tuned, evaluate_base's results: checked before any model loads."""
    files.require_inputs([EVAL_ROWS.path, BASE.path / base_model.BASE_FILE], "prepare")
    if name == "tuned":
        files.require_inputs([TUNED.path / "adapter_config.json"], "rl")
        base_model.require_adapter(TUNED.path, BASE.path, "train and rl")
        artifacts.require_all(artifacts.EVAL_METRICS["base"], GENERATIONS["base"])
    artifacts.require_outputs_writable(artifacts.EVAL_STAGE[name])
    protocol = evaluation.mcq_protocol
    mcq_sets = {set_name: scoring.load_mcq(set_name, evaluation.mcq_sets[set_name], protocol.max_questions,
                                           on_bad_row) for set_name in evaluation.mcq}
    return mcq_sets, read_base() if name == "tuned" else None


def evaluate(name: str, mcq_sets: dict, base: tuple[dict, list[str]] | None, evaluation, task_name: str,
             load_in_4bit: bool, max_seq_length: int, seed: int) -> None:
    """Score the model in this process (one of eval.num_processes, which share its batches); the first writes."""
    protocol = evaluation.mcq_protocol
    runtime.setup()
    rows = files.read_jsonl(EVAL_ROWS.path)
    perf = {}
    if name == "tuned":
        model, tokenizer, route = inference.load_tuned(BaseModel.read(BASE.path), TUNED.path, load_in_4bit)
        perf["adapter"] = {"path": route.path, "merge_error": route.merge_error}
    else:
        model, tokenizer = inference.load(BaseModel.read(BASE.path), None, load_in_4bit)
    if mcq_sets:
        scoring.check_budget(model, protocol)
    scores, out = scoring.held_out(model, tokenizer, rows, tasks.get(task_name), evaluation, max_seq_length, name)
    perf |= {"generation_tokens_per_second": out.tokens_per_second, "generation_batch_size": out.batch_size}
    generations = [{"prompt_set": "held_out", "generation": t} for t in out.texts]
    for set_name, (items, cleaned) in mcq_sets.items():
        run = scoring.mcq_scores(model, tokenizer, items, protocol, evaluation.batch_size, evaluation.engine, seed,
                                 f"evaluate {name} {set_name}")
        scores.setdefault("mcq", {})[set_name] = run.scores | {"rows_skipped": sum(cleaned.skipped.values()),
                                                               "duplicates": cleaned.duplicates}
        perf.setdefault("mcq_tokens_per_second", {})[set_name] = run.tokens_per_second
        generations += [{"prompt_set": "mcq", "set": set_name, "question": item.question, "gold": item.gold,
                         "sample": j, **answer_fields(mcq.read_answer(text, item.options)), "generation": text}
                        for item, texts in zip(items, run.texts) for j, text in enumerate(texts)]
    if not distributed.is_main():
        return
    perf["processes"] = distributed.world_size()
    artifacts.save_scores(name, scores)
    artifacts.save_eval_perf(name, perf | runtime.peak_memory())
    files.write_jsonl(GENERATIONS[name].path, generations)
    if base is not None:
        base_scores, base_texts = base
        files.write_csv(artifacts.BEFORE_AFTER.path, scoring.before_after(base_scores, scores))
        files.write_jsonl(artifacts.SAMPLES.path, scoring.side_by_side(rows, base_texts, out.texts))
    print(f"evaluate {name}: eval loss {scores['eval_loss']}, format compliance {scores['format_compliance']}"
          + "".join(f", {n} accuracy {s['accuracy']}" for n, s in scores.get("mcq", {}).items()))


def answer_fields(reading: mcq.Reading) -> dict:
    return {"chosen": reading.letter, "rule": reading.rule}


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
