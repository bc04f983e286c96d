"""The rl stage: rewards, verifiable rows, the rollout engines, and that GRPO learns."""

import contextlib
import json
import random
from pathlib import Path

import pytest

from medical_r1 import files
from medical_r1.data.tasks import BadRow, mcq, verifiable
from medical_r1.data.tasks.verifiable import Problem
from medical_r1.training import rewards
from tests.conftest import Workdir, copy_of, small

MCQ = Problem("Which drug?", {"A": "adrenaline", "B": "atropine", "C": "aspirin"}, "A")
OPEN = Problem("What is the most likely diagnosis?", None, "acute appendicitis")


@pytest.mark.parametrize("completion, problem, formatted, correct", [
    ("Anaphylaxis needs it.\n</think>\nThe answer is A.", MCQ, True, True),
    ("Anaphylaxis needs it.\n</think>\nThe answer is B.", MCQ, True, False),
    ("The answer is A.", MCQ, False, False),  # think never closed: no answer, whatever it says
    ("Reasoning.\n</think>\n", MCQ, False, False),  # closed, nothing after it
    ("Reasoning.\n</think>\nadrenaline", MCQ, True, True),  # the option's text alone
    ("Hmm.\n</think>\nA or B", MCQ, True, False),  # two letters: ambiguous
    ("Pain moved.\n</think>\nThe most likely diagnosis is Acute  Appendicitis.", OPEN, True, True),
    ("Pain moved.\n</think>\nAppendicitis.", OPEN, True, False),  # part of the gold answer is not the answer
    ("Pain moved.\n</think>\nacute appendicitis", OPEN, True, True),
    ("Pain moved.\n</think>\n" + ", ".join(["acute cholecystitis", "renal colic", "acute appendicitis", "ectopic "
                                            "pregnancy", "diverticulitis", "pancreatitis", "gastritis", "hepatitis",
                                            "pyelonephritis", "ovarian torsion", "mesenteric ischaemia", "sepsis",
                                            "peptic ulcer", "colitis", "bowel obstruction", "testicular torsion",
                                            "urinary tract infection", "constipation"]), OPEN, True, False),  # a list
    ("acute appendicitis", OPEN, False, False),
])
def test_a_reward_needs_the_format_and_the_answer(completion, problem, formatted, correct):
    assert rewards.verdict(completion, problem) == rewards.Verdict(formatted, correct)
    assert rewards.answer(completion, problem) == float(correct)


def test_verifiable_rows_of_every_shape():
    medqa = {"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "B"}
    medmcqa = {"question": "Q?", "opa": "x", "opb": "y", "opc": "z", "opd": "w", "cop": 2}
    pubmedqa = {"QUESTION": "Does it?", "CONTEXTS": ["Context."], "final_decision": "no"}
    opened = {"Open-ended Verifiable Question": " Q? ", "Ground-True Answer": " Heart failure "}
    assert Problem(**verifiable.validate(medqa)) == Problem("Q?", {"A": "x", "B": "y"}, "B")
    assert Problem(**verifiable.validate(medmcqa)).gold == "C"
    assert Problem(**verifiable.validate(pubmedqa)).options == {"A": "yes", "B": "no", "C": "maybe"}
    assert Problem(**verifiable.validate(opened)) == Problem("Q?", None, "Heart failure")
    assert Problem(**verifiable.validate(medqa)).prompt() == mcq.prompt(mcq.Item("Q?", medqa["options"], "B", "x"))
    with pytest.raises(BadRow, match="not a verifiable question"):
        verifiable.validate({"question": "Q?"})
    with pytest.raises(BadRow, match="Ground-True Answer: missing"):
        verifiable.validate({"Open-ended Verifiable Question": "Q?"})
    assert verifiable.question_key(" What  IS it?\n") == verifiable.question_key("what is it?")


def test_rl_drops_evaluation_questions_and_counts_them(trained, tmp_path):
    """RL rows that repeat an evaluated question (case and spacing aside) never reach GRPO."""
    workdir = copy_of(trained, tmp_path / "run")
    evaluated = [json.loads(line) for line in (workdir / "data/sample/mcq.jsonl").read_text().splitlines()][:3]
    rows = [{**evaluated[0], "question": evaluated[0]["question"].upper()},
            {"Open-ended Verifiable Question": "  " + evaluated[1]["question"], "Ground-True Answer": "x"},
            *[{"Open-ended Verifiable Question": f"Fresh question {i}?", "Ground-True Answer": "y"} for i in range(3)]]
    (workdir / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    workdir.params(small({"rl.source": "rl.jsonl", "rl.max_steps": 1}))
    workdir.run("rl")
    metrics = json.loads((workdir / "reports/rl/metrics.json").read_text())
    assert (metrics["in_eval"], metrics["problems"], metrics["steps"]) == (2, 3, 1)


def test_zero_steps_hand_the_sft_adapter_on_byte_for_byte(trained, tmp_path):
    workdir = copy_of(trained, tmp_path / "run")
    workdir.params(small({"rl.max_steps": 0}))
    workdir.run("rl")
    for path in (workdir / "models/adapter").iterdir():
        assert (workdir / "models/tuned" / path.name).read_bytes() == path.read_bytes()
    assert json.loads((workdir / "reports/rl/metrics.json").read_text()) == {"steps": 0}


def rollouts(workdir: Workdir, engine: str) -> list[list[int]]:
    """The completions one GRPO step rolls out (greedy) with `engine`, on the trained adapter."""
    from medical_r1 import config
    from medical_r1.model.base_model import BaseModel
    from medical_r1.training import grpo

    with contextlib.chdir(workdir.path):
        params = config.load("params.yaml", {"rl.temperature": 0, "rl.engine": engine, "rl.max_new_tokens": 24})
        session = grpo.setup(BaseModel.read("models/base"), Path("models/adapter"), False,
                             params.train.max_seq_length, params.rl, params.seed)
        problems = [Problem(**verifiable.validate(json.loads(line)))
                    for line in open("data/sample/rl.jsonl").read().splitlines()[:4]]
        trainer = grpo.grpo_trainer(session, problems, params.rl, params.seed, "scratch")
        return trainer._generate([p.prompt() for p in problems])[1]


def test_both_rollout_engines_give_the_same_greedy_completions(trained):
    static, generate = rollouts(trained, "static"), rollouts(trained, "generate")
    assert static == generate and all(static) and len(static) == 4


FORMAT_ROWS, RL_ROWS, HELD_OUT = 240, 64, 12
"""The learning test's SFT rows (the format, with a random letter), GRPO rows and held-out rows (right answer: A)."""


def choice_question(rng: random.Random, index: int) -> dict:
    words = rng.sample(["fever", "rash", "cough", "pain", "nausea", "fatigue", "wheeze", "oedema", "pallor"], 3)
    options = dict(zip("ABCD", rng.sample(["alpha", "beta", "gamma", "delta", "omega", "sigma"], 4)))
    return {"question": f"Case {index}: {' and '.join(words)}. Which one?", "options": options, "answer_idx": "A"}


@pytest.fixture(scope="module")
def taught_the_format(tmp_path_factory) -> Workdir:
    """The tiny model after SFT on MCQs whose answers are letters drawn at random: it writes the R1 format and picks
    each letter about as often."""
    workdir = Workdir(tmp_path_factory.mktemp("learning"))
    rng = random.Random(0)
    sft = []
    for i in range(FORMAT_ROWS):
        item = mcq.adapt(choice_question(rng, i))  # the question as mcq.prompt asks it, with a random letter
        sft.append({"Question": f"{item.question}\n\nOptions:\n" + "\n".join(
                        f"{k}. {v}" for k, v in item.options.items()) + f"\n\n{mcq.INSTRUCTION}",
                    "Complex_CoT": "Let me think.", "Response": f"The answer is {rng.choice('ABCD')}."})
    (workdir / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft))
    always_a = [choice_question(rng, FORMAT_ROWS + i) for i in range(RL_ROWS + HELD_OUT)]
    (workdir / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in always_a[:RL_ROWS]))
    (workdir / "held_out.jsonl").write_text("".join(json.dumps(r) + "\n" for r in always_a[RL_ROWS:]))
    workdir.params(small({"data.source": "sft.jsonl", "data.max_rows": None, "data.eval_rows": 4,
                          "train.max_steps": 150, "train.per_device_train_batch_size": 4, "train.save_steps": 150,
                          "rl.source": "rl.jsonl", "eval.mcq": []}))
    workdir.reproduce("prepare", "train")
    return workdir


def held_out_accuracy(workdir: Workdir, adapter: str) -> float:
    """Share of right answers over 8 sampled completions (temperature 1) of each held-out question."""
    from medical_r1.generation import inference, sampling
    from medical_r1.model.base_model import BaseModel

    with contextlib.chdir(workdir.path):
        model, tokenizer = inference.load(BaseModel.read("models/base"), Path(adapter), False)
        problems = [Problem(**verifiable.validate(json.loads(line)))
                    for line in open("held_out.jsonl").read().splitlines()]
    prompts = [p.prompt() for p in problems for _ in range(8)]
    keys = [sampling.row_key(1, i, 0) for i in range(len(prompts))]
    out = inference.generate(model, tokenizer, prompts, 24, 32, "static", 2048, "held out",
                             sampling.Sampling(1.0, 1.0), keys)
    return sum(rewards.answer(text, problems[i // 8]) for i, text in enumerate(out.texts)) / len(prompts)


@pytest.mark.slow
def test_grpo_learns_the_answer_that_is_always_right(taught_the_format, tmp_path):
    """Every question's right answer is A; after SFT the model picks letters at random. GRPO's reward rises, the
    adapter moves, and held-out questions of the task are answered A far more often than before."""
    workdir = copy_of(taught_the_format, tmp_path / "run")
    workdir.params(small({"data.source": "sft.jsonl", "data.max_rows": None, "data.eval_rows": 4,
                          "train.max_steps": 150, "train.per_device_train_batch_size": 4, "train.save_steps": 150,
                          "rl.source": "rl.jsonl", "eval.mcq": [], "rl.max_steps": 16, "rl.prompts_per_step": 4,
                          "rl.num_generations": 8, "rl.max_new_tokens": 24, "rl.learning_rate": 5e-4}))
    workdir.run("rl")
    steps = files.read_csv(workdir / "reports/rl/steps.csv")
    first, last = steps[0]["reward"], sum(r["reward"] for r in steps[-4:]) / 4  # step 1 samples the SFT policy
    before, after = held_out_accuracy(workdir, "models/adapter"), held_out_accuracy(workdir, "models/tuned")
    print(f"reward {first:.3f} -> {last:.3f}; held-out accuracy {before:.3f} -> {after:.3f}")
    assert 0.1 < first < 0.5 and last > first + 0.3
    assert (workdir / "models/tuned/adapter_model.safetensors").read_bytes() != \
        (workdir / "models/adapter/adapter_model.safetensors").read_bytes()
    assert 0.1 < before < 0.5 and after > before + 0.3

