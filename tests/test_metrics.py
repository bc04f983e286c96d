import math

import pytest

from stages import metrics


@pytest.mark.parametrize("text, compliant", [
    ("I think it is X.\n</think>\nThe answer is X.", True),
    ("reasoning\n</think>\n   ", False),            # closed, but no answer
    ("reasoning that never closes", False),
    ("</think>A", True),
    ("", False),
])
def test_format_compliance_cases(text, compliant):
    assert metrics.format_compliant(text) is compliant


def test_format_compliance_share_and_stop_rate():
    texts = ["a</think>b", "a</think>", "a", "x</think> y"]
    assert metrics.format_compliance(texts) == 0.5
    assert metrics.stop_rate([True, False, False, False]) == 0.25
    assert metrics.format_compliance([]) == 0.0 and metrics.stop_rate([]) == 0.0


def test_rouge_l_known_pair():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 tokens: P = 5/5, R = 5/6, F1 = 10/11
    assert metrics.rouge_l(["the cat on the mat"], ["the cat sat on the mat"]) == pytest.approx(10 / 11)
    assert metrics.rouge_l(["completely different"], ["the cat sat"]) == 0.0
    assert metrics.rouge_l(["Same Words."], ["same words"]) == pytest.approx(1.0)


def test_rouge_l_scores_chinese_by_character():
    # LCS("急性阑尾炎", "阑尾炎") = 3 characters: P = 3/3, R = 3/5, F1 = 0.75
    assert metrics.rouge_l(["阑尾炎"], ["急性阑尾炎"]) == pytest.approx(0.75)


def test_perplexity():
    assert metrics.perplexity(0.0) == 1.0
    assert metrics.perplexity(math.log(4)) == pytest.approx(4.0)
    assert metrics.perplexity(100.0) == math.inf
