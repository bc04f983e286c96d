"""rl: GRPO on verifiable medical answers after SFT, continuing the SFT adapter (medical_r1/training/grpo.py).

    python -m stages.rl
    dvc exp run -S rl.max_steps=20           # reruns rl and what follows it; evaluate_base stays
    dvc exp run -S rl.max_steps=0            # SFT alone: the SFT adapter handed on unchanged

Reads   params.yaml: seed, rl.*, train.load_in_4bit, train.max_seq_length,
        data.on_bad_row, eval.mcq, eval.mcq_sets; the rl.source rows (ours: data/sample/rl.jsonl; local ones DVC
        watches: data/local/rl/), and the questions of data/prepared/eval.jsonl and of the eval.mcq sets (ours:
        data/sample/mcq.jsonl; data/local/eval/), which are dropped from the RL rows; models/base/, models/adapter/
Writes  models/tuned/              the adapter evaluate, export and ask use (PEFT format) + tokenizer: the SFT adapter
                                   after rl.max_steps GRPO steps, byte for byte the SFT adapter when rl.max_steps is 0
        reports/rl/metrics.json    steps; problems (RL questions used), rows_read, rows_skipped, duplicates,
                                   in_eval (dropped: in an evaluation set), too_long (prompt + budget past
                                   train.max_seq_length); reward at the first and the last step; accuracy,
                                   format_rate, completion_length, truncated share (and kl with rl.beta > 0) at the
                                   last
        reports/rl/perf.json       seconds; rollout, reward and update seconds; rollout share; rollout new tokens/s;
                                   peak memory
        reports/rl/steps.csv       per step: reward, accuracy, format_rate, completion_length, truncated, kl, loss
"""

from __future__ import annotations

import shutil
import tempfile

from medical_r1 import UserError, artifacts, config, files, gpus, runtime
from medical_r1.artifacts import ADAPTER, BASE, EVAL_ROWS, TUNED
from medical_r1.data.tasks import verifiable
from medical_r1.data.tasks.verifiable import Problem
from medical_r1.evaluation import scoring
from medical_r1.model import base_model
from medical_r1.model.base_model import BaseModel
from medical_r1.training import finetune, grpo


def main() -> None:
    params = config.load()
    files.require_inputs([EVAL_ROWS.path, BASE.path / base_model.BASE_FILE], "prepare")
    files.require_inputs([ADAPTER.path / "adapter_config.json"], "train")
    base_model.require_adapter(ADAPTER.path, BASE.path, "train")
    artifacts.require_outputs_writable("rl")
    if params.rl.max_steps == 0:
        hand_on_sft()
        return
    with gpus.claimed(1):  # the policy and its rollouts run on the GPU
        train_with_grpo(params.rl, params.eval.mcq, params.eval.mcq_sets, params.data.on_bad_row,
                        params.train.load_in_4bit, params.train.max_seq_length, params.seed)


def train_with_grpo(rl, mcq: list[str], mcq_sets: dict, on_bad_row: str, load_in_4bit: bool, max_seq_length: int,
                    seed: int) -> None:
    """GRPO from the SFT adapter; models/tuned and the rl reports."""
    base = BaseModel.read(BASE.path)
    problems, stats = load_problems(rl, mcq, mcq_sets, on_bad_row)
    problems, stats["too_long"] = fitting(problems, base, rl.max_new_tokens, max_seq_length)
    session = grpo.setup(base, ADAPTER.path, load_in_4bit, max_seq_length, rl, seed)
    with tempfile.TemporaryDirectory() as scratch:
        seconds = grpo.fit(session, problems, rl, seed, scratch)
    finetune.save_adapter(session.model, session.tokenizer, TUNED.path, BASE.path)
    metrics, perf = grpo.summarize(session.log, len(problems), seconds)
    artifacts.RL_METRICS.write_json(metrics | stats)
    artifacts.RL_PERF.write_json(perf | runtime.peak_memory())
    files.write_csv(artifacts.RL_STEPS.path, session.log.rows)
    print(f"rl: reward {metrics.get('reward_first')} -> {metrics.get('reward_final')} in {metrics['steps']} steps "
          f"on {len(problems)} questions, {perf['seconds']} s ({perf['rollout_share']:.0%} of it in rollouts)")


def hand_on_sft() -> None:
    """rl.max_steps 0: models/tuned is the SFT adapter, byte for byte."""
    with files.replaced_dir(TUNED.path) as work_dir:
        shutil.copytree(ADAPTER.path, work_dir, dirs_exist_ok=True)
    artifacts.RL_METRICS.write_json({"steps": 0})
    artifacts.RL_PERF.write_json({"seconds": 0.0})
    files.write_csv(artifacts.RL_STEPS.path, [])
    print("rl: rl.max_steps is 0; the SFT adapter is handed on unchanged")


def load_problems(rl, mcq: list[str], mcq_sets: dict, on_bad_row: str) -> tuple[list[Problem], dict]:
    """The usable rl.source questions that no evaluation set holds (the first rl.max_rows), and the counts of what
    was dropped on the way."""
    rows, cleaned = verifiable.load(rl, on_bad_row)
    evaluated = evaluation_questions(mcq, mcq_sets, on_bad_row)
    kept = [p for p in rows if verifiable.question_key(p.question) not in evaluated]
    if not kept:
        raise UserError(f"rl.source {rl.source!r}: all {len(rows):,} questions are in the evaluation sets (the "
                        f"held-out rows, eval.mcq: {', '.join(mcq) or 'none'}); RL on them would train on the test "
                        "set: point rl.source at other questions")
    problems = kept[:rl.max_rows] if rl.max_rows is not None else kept
    return problems, {"problems": len(problems), "rows_read": cleaned.rows_read,
                      "rows_skipped": sum(cleaned.skipped.values()), "duplicates": cleaned.duplicates,
                      "in_eval": len(rows) - len(kept)}


def evaluation_questions(mcq: list[str], mcq_sets: dict, on_bad_row: str) -> set[str]:
    """Every question evaluate scores (held-out rows and all of each eval.mcq set), as verifiable.question_key."""
    questions = [row["question"] for row in files.read_jsonl(EVAL_ROWS.path)]
    for name in mcq:
        items, _ = scoring.load_mcq(name, mcq_sets[name], None, on_bad_row)
        questions += [item.question for item in items]
    return set(map(verifiable.question_key, questions))


def fitting(problems: list[Problem], base: BaseModel, budget: int, max_seq_length: int) -> tuple[list[Problem], int]:
    """The problems whose prompt + the completion budget fit train.max_seq_length, and how many did not."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.tokenizer)
    fits = [p for p in problems if len(tokenizer(p.prompt())["input_ids"]) + budget <= max_seq_length]
    if not fits:
        raise UserError(f"rl.max_new_tokens: no RL prompt leaves room for {budget:,} new tokens within "
                        f"train.max_seq_length ({max_seq_length:,}); lower the budget or raise the length")
    return fits, len(problems) - len(fits)


if __name__ == "__main__":
    files.run_stage(main)
