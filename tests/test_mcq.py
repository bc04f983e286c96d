import pytest

from medical_r1.data.tasks import mcq
from medical_r1.data.tasks import BadRow
from tests.conftest import small

OPTIONS = {"A": "Iron deficiency", "B": "Folate deficiency", "C": "Parvovirus B19 infection",
           "D": "Vitamin B12 deficiency"}
THINK = "Low reticulocytes point to marrow suppression.\n</think>\n"


@pytest.mark.parametrize("answer, letter, rule", [
    ("\\boxed{C}", "C", "boxed"),
    ("So the answer is $\\boxed{\\text{C}}$.", "C", "boxed"),
    ("Answer: C", "C", "stated"),
    ("The answer is C.", "C", "stated"),
    ("The correct answer is C) Parvovirus B19 infection.", "C", "stated"),
    ("I would choose option C.", "C", "stated"),
    ("Final answer: [C]", "C", "stated"),
    ("Answer - C", "C", "stated"),
    ("answer is b", "B", "stated"),                       # a lower-case letter with nothing after it
    ("Correct choice: D", "D", "stated"),
    ("So the best option is A, iron deficiency.", "A", "stated"),
    ("The answer should be (B).", "B", "stated"),
    ("**C.** Parvovirus B19 infection", "C", "bold"),
    ("**C**", "C", "bold"),
    ("C. Parvovirus B19 infection", "C", "listed"),
    ("(C) Parvovirus B19 infection is the cause.", "C", "listed"),
    ("It must be D) because of the neuropathy.", "D", "bracketed"),
    ("C", "C", "alone"),
    ("The most likely association is Parvovirus B19 infection.", "C", "option_text"),   # option text only
    ("The answer is a rare one: vitamin B12 deficiency.", "D", "option_text"),  # "a" is an article, not option A
    ("A 45-year-old with macrocytosis: vitamin B12 deficiency", "D", "option_text"),  # "A" opening a sentence
    ("I think the cause is iron deficiency.", "A", "option_text"),  # "I" is no option of four
    ("The answer is A. On reflection, the answer is C.", None, "ambiguous"),   # two letters by the deciding rule
    ("**A** or **B**", None, "ambiguous"),
    ("Either iron deficiency or folate deficiency.", None, "none"),  # two options named: no single choice
    ("I am not sure which one fits.", None, "none"),
    ("", None, "none"),
])
def test_read_answer_rules(answer, letter, rule):
    assert mcq.read_answer(THINK + answer, OPTIONS) == mcq.Reading(letter, rule)


def test_only_the_text_after_think_counts():
    assert mcq.read_answer("The answer is A? Or B?\n</think>\nThe answer is D.", OPTIONS) == mcq.Reading("D", "stated")
    # a chain cut off by the budget (or never closed) has no answer, whatever letter it was leaning to
    assert mcq.read_answer("The answer is C, so\n", OPTIONS) == mcq.Reading(None, "unclosed")


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


def test_score_is_pass_at_1_over_the_samples_with_no_letter_and_truncated_shares():
    items = [mcq.adapt({"question": "Q", "options": OPTIONS, "answer_idx": g}) for g in "AB"]
    generations = [["x</think>Answer: A", "x</think>Answer: C"],   # 1 of 2 right
                   ["x</think>no idea", "cut off mid-thought"]]      # no letter; the second never closed its chain
    finished = [[True, True], [True, False]]
    result = mcq.score(items, generations, finished, [10, 20, 30, 40])
    assert result == {"accuracy": 0.25, "no_letter": 0.5, "truncated": 0.25, "thinking_tokens": 25.0,
                      "questions": 2, "samples": 2}
    # a chain that ended with EOS before closing is not truncated, but has no answer either
    assert mcq.score(items[:1], [["never closed"]], [[True]], [5])["truncated"] == 0.0


def test_mcq_gold_letter_not_among_options_fails_evaluate(workdir):
    (workdir / "bad_mcq.jsonl").write_text('{"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "E"}\n')
    workdir.params(small({"eval.mcq": ["bad"], "eval.mcq_sets.bad": {"source": "bad_mcq.jsonl", "config": None,
                                                                     "split": "test", "revision": None, "size": None}}))
    workdir.run("prepare")
    assert workdir.error_line("evaluate_base") == (
        "error: bad_mcq.jsonl: row 1: gold answer 'E' is not among the options A, B "
        "(set data.on_bad_row=skip to skip and count such rows)")
