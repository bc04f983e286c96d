"""CMeEE-V2 NER: inclusive spans, the target format, strict scoring, and the task through the stages."""

import json

import pytest

from medical_r1.data.tasks import BadRow, cmeee_ner
from tests.conftest import REPO, evaluation, small

# 右0 肺1 上2 叶3 肺4 癌5 伴6 咳7 嗽8 ，9 咳10 嗽11 加12 重13 。14
TEXT = "右肺上叶肺癌伴咳嗽，咳嗽加重。"
NESTED = {"text": TEXT, "entities": [
    {"start_idx": 0, "end_idx": 5, "type": "dis", "entity": "右肺上叶肺癌"},
    {"start_idx": 0, "end_idx": 3, "type": "bod", "entity": "右肺上叶"},
    {"start_idx": 7, "end_idx": 8, "type": "sym", "entity": "咳嗽"},
    {"start_idx": 10, "end_idx": 11, "type": "sym", "entity": "咳嗽"},
]}


def formatted(row: dict) -> dict:
    return cmeee_ner.format_row(cmeee_ner.validate(row), "<eos>")


def test_inclusive_end_on_nested_entities():
    row = cmeee_ner.validate(NESTED)
    assert row["entities"] == [[0, 5, "dis", "右肺上叶肺癌"], [0, 3, "bod", "右肺上叶"], [7, 8, "sym", "咳嗽"],
                               [10, 11, "sym", "咳嗽"]]
    assert all(TEXT[s:e + 1] == name for s, e, _, name in row["entities"])
    exclusive = {**NESTED, "entities": [{**NESTED["entities"][1], "end_idx": 4}]}  # Python-style end
    with pytest.raises(BadRow, match=r"text\[0:4\+1\] is '右肺上叶肺', not the entity '右肺上叶'"):
        cmeee_ner.validate(exclusive)


def test_target_lists_each_pair_once_in_order_and_none_when_empty():
    row = formatted(NESTED)
    assert row["answer"] == "dis\t右肺上叶肺癌\nbod\t右肺上叶\nsym\t咳嗽"
    assert row["completion"] == "\n</think>\ndis\t右肺上叶肺癌\nbod\t右肺上叶\nsym\t咳嗽<eos>"
    assert TEXT in row["prompt"] and row["text"] == row["prompt"] + row["completion"]
    assert formatted({"text": "一般情况可。", "entities": []})["answer"] == "无"


def test_gold_as_prediction_scores_one_on_the_bundled_sample():
    rows = [formatted(r) for r in json.loads((REPO / "data/sample/cmeee_ner.json").read_text())]
    scores = cmeee_ner.score(rows, [r["answer"] for r in rows])
    assert scores["ner_precision"] == scores["ner_recall"] == scores["ner_f1"] == 1.0
    assert all(scores[f"ner_f1.{t}"] == 1.0 for t in cmeee_ner.TYPES)
    assert scores["ner_malformed_lines"] == scores["ner_not_in_text"] == 0.0


def test_partial_prediction_scores_hand_computed_values():
    # dis exact (1 TP); bod 右肺 is a wrong span (1 FP); sym 咳嗽 maps to both places (2 TP);
    # 阿司匹林 is not in the text (1 FP); one malformed line. TP 3, predicted 5, gold 4.
    answer = "dis\t右肺上叶肺癌\nbod\t右肺\nsym\t咳嗽\nsym\t咳嗽\nfoo bar\ndru\t阿司匹林"
    scores = cmeee_ner.score([formatted(NESTED)], [answer])
    assert scores["ner_precision"] == 0.6 and scores["ner_recall"] == 0.75
    assert scores["ner_f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35, abs=1e-4)
    assert (scores["ner_f1.dis"], scores["ner_f1.sym"], scores["ner_f1.bod"], scores["ner_f1.dru"]) == (1, 1, 0, 0)
    assert scores["ner_malformed_lines"] == round(1 / 6, 4)
    assert scores["ner_not_in_text"] == 0.25


def test_malformed_lines_and_unclosed_answers_are_counted_not_fatal():
    pairs, malformed = cmeee_ner.parse("dis 右肺上叶肺癌\nunknown\t咳嗽\ndis\t\n\n无\nsym\t咳嗽")
    assert pairs == [("sym", "咳嗽")] and malformed == 3
    assert cmeee_ner.score([formatted(NESTED)], [""])["ner_recall"] == 0.0


def test_occurrences_include_overlapping_ones():
    assert cmeee_ner.occurrences("咳咳咳", "咳咳") == [0, 1]


@pytest.mark.slow
def test_chinese_cot_rows_run_prepare_train_evaluate(workdir):
    """data.config=zh on the bundled sample: Chinese rows in the medical-o1 columns."""
    workdir.params(small({"data.config": "zh", "eval.num_samples": 2, "eval.max_new_tokens": 16}))
    workdir.reproduce("prepare", "train", "rl", "evaluate_base", "evaluate")
    stats = json.loads((workdir / "reports/prepare/stats.json").read_text())
    assert stats["rows_read"] == 120  # the bundled Chinese sample
    train_rows = [json.loads(line) for line in (workdir / "data/prepared/train.jsonl").read_text().splitlines()]
    assert "最可能的诊断是" in train_rows[0]["answer"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workdir / "models/base")
    lengths = [len(tokenizer(r["text"])["input_ids"]) for r in train_rows]
    assert stats["tokens"]["max"] >= max(lengths) and tokenizer.decode(
        tokenizer(train_rows[0]["text"], add_special_tokens=False)["input_ids"]) == train_rows[0]["text"]
    scores = evaluation(workdir)
    assert scores["tuned.eval_loss"] < scores["base.eval_loss"] and 0 <= scores["tuned.rouge_l"] <= 1
