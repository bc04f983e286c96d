"""Bad input of every kind: one clear sentence and exit code 2, or a counted skip. Never a traceback.

Each case writes its files into a scratch working directory, sets params, runs prepare there as its command
does, and checks the exit code and the last line of stderr (or the counts in stats.json).
"""

import json
from dataclasses import dataclass, field

import pytest

from tests.conftest import small

GOOD = [{"Question": f"Question {i}?", "Complex_CoT": f"Reasoning {i}.", "Response": f"Answer {i}."}
        for i in range(30)]
NER = {"data.task": "cmeee_ner"}
OFFLINE = {"HF_HUB_OFFLINE": "1"}
GOOD_NER = [{"text": f"患者{i}岁，诊断为急性阑尾炎。", "entities": [
    {"start_idx": 7 + len(str(i)), "end_idx": 11 + len(str(i)), "type": "dis", "entity": "急性阑尾炎"}]} for i in range(30)]


def with_entity(**entity) -> list[dict]:
    """GOOD_NER whose first row's entity is changed as given."""
    return [{**GOOD_NER[0], "entities": [{**GOOD_NER[0]["entities"][0], **entity}]}] + GOOD_NER[1:]


def json_file(rows) -> bytes:
    return json.dumps(rows, ensure_ascii=False).encode()


def jsonl(rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


@dataclass
class Case:
    name: str
    message: str | None = None
    """Expected in the one-line error; None when the stage must succeed."""
    data: bytes | None = None
    """Written to rows.<suffix> and used as data.source."""
    suffix: str = "jsonl"
    params: dict = field(default_factory=dict)
    skipped: dict | None = None
    """Expected stats.json skipped_by_reason (with data.on_bad_row=skip)."""
    env: dict = field(default_factory=dict)
    """Environment of the run (the hub cases: HF_HUB_OFFLINE=1, as on a machine without network)."""


CASES = [
    Case("malformed_jsonl_line", "rows.jsonl: row 3: not valid JSON", jsonl(GOOD[:2] + [b'{"Question": '] + GOOD[2:])),
    Case("malformed_jsonl_line_skipped", data=jsonl(GOOD[:2] + [b"{oops"] + GOOD[2:]),
         params={"data.on_bad_row": "skip"}, skipped={"malformed_json": 1}),
    Case("empty_file", "rows.jsonl: the file is empty", b""),
    Case("whitespace_only_file", "rows.json: the file is empty", b"  \n\n", suffix="json"),
    Case("missing_column", "rows.jsonl: row 1: field Complex_CoT: missing (expected a non-empty string)",
         jsonl([{"Question": "q", "Response": "r"}] + GOOD)),
    Case("empty_field", "row 31: field Response: empty (expected a non-empty string)",
         jsonl(GOOD + [{**GOOD[0], "Response": ""}])),
    Case("whitespace_only_field", "row 1: field Question: empty", jsonl([{**GOOD[0], "Question": " \t\n"}] + GOOD)),
    Case("non_string_field", "row 1: field Complex_CoT: expected a non-empty string, got list",
         jsonl([{**GOOD[0], "Complex_CoT": ["a", "b"]}] + GOOD)),
    Case("row_not_an_object", "row 1: expected an object with Question, Complex_CoT, Response, got str",
         b'"just a string"\n' + jsonl(GOOD)),
    Case("bad_rows_skipped_and_counted", data=jsonl(GOOD + [{**GOOD[0], "Response": ""}, {"Question": "q"},
                                                        {**GOOD[1], "Question": 3}, b"\xff\xfe bad bytes"]),
         params={"data.on_bad_row": "skip"},
         skipped={"empty_field": 1, "missing_field": 1, "not_a_string": 1, "not_utf8": 1}),
    Case("non_utf8_jsonl_line", "rows.jsonl: row 2: not UTF-8", jsonl(GOOD[:1] + [b'{"Question": "\xff"}'] + GOOD)),
    Case("non_utf8_json_file", "rows.json: not UTF-8 text (bad byte at offset 1)", b"[\xff]", suffix="json"),
    Case("invalid_json_file", "rows.json: not valid JSON (Expecting value at line 1, column 2)", b"[,]", suffix="json"),
    Case("json_not_a_list", "rows.json: expected a JSON list of rows, got a dict", b'{"rows": 1}', suffix="json"),
    Case("corrupt_parquet", "rows.parquet: not a readable parquet file", b"PAR1 not really", suffix="parquet"),
    Case("unknown_source_scheme", "data.source 's3://bucket/rows.jsonl': unknown scheme",
         params={"data.source": "s3://bucket/rows.jsonl"}),
    Case("missing_local_file", "missing.jsonl: no such file", params={"data.source": "missing.jsonl"}),
    Case("config_with_local_file", "data.config 'en': only hub sources (hf:...) have configs",
         jsonl(GOOD), params={"data.config": "en"}),
    Case("hub_dataset_offline", "hf:FreedomIntelligence/medical-o1-reasoning-SFT (config en): not reachable",
         params={"data.source": "hf:FreedomIntelligence/medical-o1-reasoning-SFT", "data.config": "en"},
         env=OFFLINE),
    Case("hub_model_offline", "model.name 'unsloth/DeepSeek-R1-Distill-Llama-8B': could not load its tokenizer",
         jsonl(GOOD), params={"model.name": "unsloth/DeepSeek-R1-Distill-Llama-8B"}, env=OFFLINE),
    Case("too_few_rows_for_eval", "only 3 usable rows, but data.eval_rows is 4", jsonl(GOOD[:3]),
         params={"data.max_rows": None}),
    Case("max_seq_length_below_template", "train.max_seq_length (64) is below the template's own length",
         jsonl(GOOD), params={"train.max_seq_length": 64}),
    Case("long_rows_skipped_and_counted", data=jsonl(GOOD[:10] + [{**g, "Complex_CoT": "very long " * 400}
                                                                   for g in GOOD[10:20]] + GOOD[20:]),
         params={"data.on_long_row": "skip", "train.max_seq_length": 512}, skipped={"too_long": 10}),
    Case("unknown_param_key", "train.max_stepz: unknown key; did you mean train.max_steps?",
         params={"train.max_stepz": 3}),
    Case("wrong_param_type", "train.learning_rate: expected float, got str 'fast'",
         params={"train.learning_rate": "fast"}),
    Case("negative_steps", "train.max_steps: must be > 0, got -5", params={"train.max_steps": -5}),
    Case("lora_rank_zero", "lora.r: must be > 0, got 0", params={"lora.r": 0}),
    Case("batch_zero", "train.per_device_train_batch_size: must be > 0, got 0",
         params={"train.per_device_train_batch_size": 0}),
    Case("unknown_backend", "train.backend: must be one of unsloth, hf; got 'vllm'", params={"train.backend": "vllm"}),
    Case("unknown_sample_config", "data.config 'fr': the bundled sample has no such config; choose en, zh",
         params={"data.config": "fr"}),
    Case("cmeee_span_out_of_range", "rows.json: row 1: field entities[0]: span [8, 40] is outside the text (0..13; "
         "end_idx is inclusive)", json_file(with_entity(end_idx=40)), "json", NER),
    Case("cmeee_exclusive_end", "row 1: field entities[0]: text[8:13+1] is '急性阑尾炎。', not the entity '急性阑尾炎' "
         "(end_idx is inclusive)", json_file(with_entity(end_idx=13)), "json", NER),
    Case("cmeee_unknown_type", "row 1: field entities[0]: type 'disease' is not a CMeEE type (dis, sym, pro, equ, "
         "dru, ite, bod, dep, mic)", json_file(with_entity(type="disease")), "json", NER),
    Case("cmeee_test_split_without_gold", "row 1: field entities: missing (expected a list; the CMeEE test split",
         json_file([{"text": "患者无不适。"}] + GOOD_NER), "json", NER),
    Case("cmeee_bad_rows_skipped_and_counted", data=json_file(
        GOOD_NER + with_entity(end_idx=40)[:1] + with_entity(type="x")[:1] + with_entity(entity="阑尾炎")[:1]),
         suffix="json", params={**NER, "data.on_bad_row": "skip"},
         skipped={"span_out_of_range": 1, "unknown_type": 1, "span_text_mismatch": 1}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(workdir, case):
    params = small(case.params)
    if case.data is not None:
        path = workdir / f"rows.{case.suffix}"
        path.write_bytes(case.data)
        params.setdefault("data.source", path.name)
    workdir.params(params)
    if case.message is None:
        workdir.run("prepare", env=case.env)
        stats = json.loads((workdir / "reports/prepare/stats.json").read_text())
        assert stats["skipped_by_reason"] == case.skipped
        assert stats["rows_skipped"] == sum(case.skipped.values())
    else:
        last = workdir.error_line("prepare", env=case.env)
        assert last.startswith("error: ") and case.message in last, last
