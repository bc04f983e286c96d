import pytest

from medical_r1.data.tasks import mcq
from medical_r1.data.tasks import BadRow
from tests.conftest import small

OPTIONS = {"A": "Iron deficiency", "B": "Folate deficiency", "C": "Parvovirus B19 infection",
           "D": "Vitamin B12 deficiency"}
THINK = "Low reticulocytes point to marrow suppression.\n</think>\n"


@pytest.mark.parametrize("answer, letter", [
    ("Answer: C", "C"),
    ("The answer is C.", "C"),
    ("The correct answer is C) Parvovirus B19 infection.", "C"),
    ("**C.** Parvovirus B19 infection", "C"),
    ("**C**", "C"),
    ("C. Parvovirus B19 infection", "C"),
    ("C", "C"),
    ("(C) Parvovirus B19 infection is the cause.", "C"),
    ("I would choose option C.", "C"),
    ("Final answer: [C]", "C"),
    ("The most likely association is Parvovirus B19 infection.", "C"),
    ("answer is b", "B"),
    ("Correct choice: D", "D"),
    ("So the best option is A, iron deficiency.", "A"),
    ("It must be D) because of the neuropathy.", "D"),
    ("The answer should be (B).", "B"),
    ("I am not sure which one fits.", None),
    ("", None),
    ("Either iron deficiency or folate deficiency.", None),  # two options named: no single choice
])
def test_extract_letter(answer, letter):
    assert mcq.extract_letter(THINK + answer, OPTIONS) == letter


def test_extract_letter_ignores_letters_inside_the_reasoning():
    assert mcq.extract_letter("Maybe A? Or B?\n</think>\nThe answer is D.", OPTIONS) == "D"


def test_adapt_medqa_medmcqa_pubmedqa():
    medqa = mcq.adapt({"question": "Q?", "options": OPTIONS, "answer_idx": "C", "answer": OPTIONS["C"]})
    assert (medqa.gold, medqa.source, list(medqa.options)) == ("C", "medqa", list("ABCD"))
    medmcqa = mcq.adapt({"question": "Q?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 2})
    assert (medmcqa.gold, medmcqa.options["C"], medmcqa.source) == ("C", "y", "medmcqa")
    choices = mcq.adapt({"question": "Q?", "choices": ["w", "x"], "answer": 1})
    assert choices.gold == "B"
    pubmed = mcq.adapt({"QUESTION": "Does X help?", "CONTEXTS": ["Trial showed benefit."], "final_decision": "yes"})
    assert (pubmed.gold, pubmed.options, pubmed.source) == ("A", {"A": "yes", "B": "no", "C": "maybe"}, "pubmedqa")
    assert pubmed.question.startswith("Trial showed benefit.")


@pytest.mark.parametrize("row, reason", [
    ({"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "E"}, "gold_not_an_option"),
    ({"question": "Q?", "opa": "x", "opb": "y", "cop": 7}, "gold_not_an_option"),
    ({"QUESTION": "Q?", "CONTEXTS": [], "final_decision": "perhaps"}, "gold_not_an_option"),
    ({"question": " ", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}, "empty_field"),
    ({"stem": "Q?"}, "unknown_shape"),
    ({"question": "\ud800 Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}, "not_encodable"),
    ({"question": "\u200b", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}, "empty_field"),
    ({"question": "Q?", "options": {"A": None, "B": "y"}, "answer_idx": "B"}, "not_a_string"),
    ({"question": "Q?", "options": {"A": ["x"], "B": "y"}, "answer_idx": "B"}, "not_a_string"),
    ({"question": "Q?", "choices": ["x", "y"], "answer": True}, "gold_not_an_option"),
])
def test_bad_mcq_rows(row, reason):
    with pytest.raises(BadRow) as err:
        mcq.adapt(row)
    assert err.value.reason == reason


def test_prompt_lists_options_in_the_r1_template():
    text = mcq.prompt(mcq.adapt({"question": "Q?", "options": OPTIONS, "answer_idx": "C"}))
    assert "### Question:\nQ?\n\nOptions:\nA. Iron deficiency\n" in text and text.endswith("<think>\n")


def test_score():
    items = [mcq.adapt({"question": "Q", "options": OPTIONS, "answer_idx": g}) for g in "ABC"] + [
        mcq.adapt({"QUESTION": "Q", "CONTEXTS": [], "final_decision": "no"})]
    generations = ["x</think>Answer: A", "x</think>Answer: C", "x</think>no idea", "x</think>B"]
    result = mcq.score(items, generations, [10, 20, 30, 40])
    assert result == {"mcq_accuracy": 0.5, "mcq_accuracy.medqa": pytest.approx(1 / 3, abs=1e-4),
                      "mcq_accuracy.pubmedqa": 1.0, "mcq_no_letter": 0.25, "mcq_thinking_tokens": 25.0}


def test_mcq_gold_letter_not_among_options_fails_evaluate(workdir):
    (workdir / "bad_mcq.jsonl").write_text('{"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "E"}\n')
    workdir.params(small({"eval.mcq.source": "bad_mcq.jsonl"}))
    workdir.run("prepare")
    assert workdir.error_line("evaluate_base") == (
        "error: bad_mcq.jsonl: row 1: gold answer 'E' is not among the options A, B "
        "(set data.on_bad_row=skip to skip and count such rows)")
