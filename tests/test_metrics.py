import math

import pytest

from medical_r1.evaluation import metrics


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
    assert metrics.perplexity(100.0) is None  # past 1e21: JSON null, never Infinity


def test_a_non_finite_result_is_refused_with_its_key(tmp_path):
    from medical_r1 import UserError, files

    with pytest.raises(UserError, match=r"metrics.json: tuned.eval_loss is not a finite number"):
        files.write_json(tmp_path / "metrics.json", {"tuned": {"samples": 4, "eval_loss": float("nan")}})
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("logs, diverged", [({"loss": float("nan"), "learning_rate": 1e-3}, True),
                                             ({"loss": 2.0, "grad_norm": float("inf")}, True),
                                             ({"eval_loss": float("nan")}, True),
                                             ({"loss": 2.0, "grad_norm": 1.5, "learning_rate": 1e-3}, False)])
def test_a_non_finite_loss_or_gradient_is_divergence(logs, diverged):
    from medical_r1.training import steplog

    message = steplog.divergence(7, logs)
    assert (message is not None) == diverged
    if diverged:
        assert message.startswith("train diverged at step 7 (") and "lower train.learning_rate" in message
