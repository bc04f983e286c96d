"""Bad input of every kind: one clear sentence and exit code 2, or a counted skip. Never a traceback.

Each case writes its files into a scratch working directory, sets params, runs prepare there as its command
does, and checks the exit code and the last line of stderr (or the counts in stats.json).
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest
import yaml

from medical_r1.evaluation.metrics import flatten
from tests.conftest import REPO, copy_of, small, stage_env

GOOD = [{"Question": f"Question {i}?", "Complex_CoT": f"Reasoning {i}.", "Response": f"Answer {i}."}
        for i in range(30)]
NER = {"data.task": "cmeee_ner"}
OFFLINE = {"HF_HUB_OFFLINE": "1"}
GOOD_NER = [{"text": f"患者{i}岁，诊断为急性阑尾炎。", "entities": [
    {"start_idx": 7 + len(str(i)), "end_idx": 11 + len(str(i)), "type": "dis", "entity": "急性阑尾炎"}]}
            for i in range(30)]


def with_entity(**entity) -> list[dict]:
    """GOOD_NER whose first row's entity is changed as given."""
    return [{**GOOD_NER[0], "entities": [{**GOOD_NER[0]["entities"][0], **entity}]}] + GOOD_NER[1:]


def json_file(rows) -> bytes:
    return json.dumps(rows, ensure_ascii=False).encode()


def csv_file(*lines: str) -> bytes:
    return ("Question,Complex_CoT,Response\n" + "".join(f'"Question {i}?","Reasoning {i}.","Answer {i}."\n'
                                                         for i in range(30)) + "".join(lines)).encode()


MCQ_GOOD = [{"question": f"Which option is number {i}?", "options": {"A": f"number {i}", "B": "another"},
             "answer_idx": "A"} for i in range(4)]
MCQ = {"eval.mcq": ["file"], "eval.mcq_sets.file": {"source": "mcq.jsonl", "config": None, "split": "test",
                                                     "revision": None, "size": None},
       "eval.num_samples": 2, "eval.max_new_tokens": 8, "eval.mcq_protocol.max_new_tokens": 8}
LONG = [{**g, "Question": g["Question"] + " word" * 3000} for g in GOOD]


HEADER = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
"""A safetensors header promising 16 bytes of data."""


def symlink_loop(path):
    path.symlink_to(path.name)


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
    stage: str = "prepare"
    """The stage that must fail (or succeed), after the stages in `before`."""
    before: tuple = ()
    files: dict = field(default_factory=dict)
    """Other files to write first: path -> bytes (or a callable that makes the path)."""
    damage: dict = field(default_factory=dict)
    """Files to overwrite after the stages in `before` ran: path -> a function of their bytes."""
    metrics: dict | None = None
    """Expected values in reports/eval/base/metrics.json (stage evaluate_base, succeeding)."""


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
    Case("hub_model_offline", "model.name 'unsloth/DeepSeek-R1-Distill-Llama-8B': not a local directory, and its "
         "tokenizer could not be loaded from the hub",
         jsonl(GOOD), params={"model.name": "unsloth/DeepSeek-R1-Distill-Llama-8B"}, env=OFFLINE),
    Case("too_few_rows_for_eval", "only 3 usable rows, but data.eval_rows is 4", jsonl(GOOD[:3]),
         params={"data.max_rows": None}),
    Case("max_seq_length_below_template", "train.max_seq_length (64) is below the template's own length",
         jsonl(GOOD), params={"train.max_seq_length": 64, "eval.max_new_tokens": 16}),
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

    # round two: params that config did not bound
    Case("learning_rate_infinite", "train.learning_rate: must be a finite number, got inf",
         params={"train.learning_rate": float("inf")}),
    Case("learning_rate_nan", "train.learning_rate: must be a finite number, got nan",
         params={"train.learning_rate": float("nan")}),
    Case("learning_rate_negative", "train.learning_rate: must be > 0, got -0.0002",
         params={"train.learning_rate": -2e-4}),
    Case("seed_too_large", "seed: must be an integer in 0..4294967295, got 4294967296", params={"seed": 2**32}),
    Case("seed_negative", "seed: must be an integer in 0..4294967295, got -1", params={"seed": -1}),
    Case("unknown_optimizer", "train.optim: must be auto or an optimizer transformers knows",
         params={"train.optim": "adamw_fastest"}),
    Case("unknown_scheduler", "train.lr_scheduler_type: must be a schedule transformers knows",
         params={"train.lr_scheduler_type": "cosine_fast"}),
    Case("negative_warmup", "train.warmup_steps: must be >= 0, got -1", params={"train.warmup_steps": -1}),
    Case("negative_weight_decay", "train.weight_decay: must be >= 0, got -0.1", params={"train.weight_decay": -0.1}),
    Case("lora_alpha_zero", "lora.alpha: must be > 0, got 0", params={"lora.alpha": 0}),
    Case("duplicate_target_modules", "lora.target_modules: must be a non-empty list of distinct names",
         params={"lora.target_modules": ["q_proj", "q_proj"]}),
    Case("tiny_heads_do_not_divide_width", "model.tiny.hidden_size: must be a multiple of "
         "model.tiny.num_attention_heads (3)", params={"model.tiny.num_attention_heads": 3,
                                                      "model.tiny.num_key_value_heads": 1}),
    Case("tiny_kv_heads_do_not_divide_heads", "model.tiny.num_key_value_heads: must be a divisor of "
         "model.tiny.num_attention_heads (4), got 3", params={"model.tiny.num_key_value_heads": 3}),
    Case("tiny_vocabulary_below_the_byte_alphabet", "model.tiny.vocab_size: must be >= 261",
         params={"model.tiny.vocab_size": 100}),
    Case("mcq_budget_zero", "eval.mcq_protocol.max_new_tokens: must be > 0, got 0",
         params={"eval.mcq_protocol.max_new_tokens": 0}),
    Case("mcq_budget_past_the_model", "eval.mcq_protocol.max_new_tokens: must be below the model's context (2,048 "
         "tokens, which also holds the prompt), got 4,096", params={"eval.mcq_protocol.max_new_tokens": 4096},
         stage="evaluate_base", before=("prepare",)),
    Case("mcq_unknown_set", "eval.mcq: must be a list of distinct names from eval.mcq_sets",
         params={"eval.mcq": ["sample", "usmle"]}),
    Case("mcq_set_of_another_size", "eval.mcq_sets.file: mcq.jsonl holds 4 questions where the published set has "
         "1,273; point eval.mcq_sets.file.source at the whole set (or set eval.mcq_sets.file.size to null)",
         params={**MCQ, "eval.mcq_sets.file": {**MCQ["eval.mcq_sets.file"], "size": 1273}}, stage="evaluate_base",
         before=("prepare",),
         files={"mcq.jsonl": jsonl(MCQ_GOOD)}),
    Case("generation_budget_above_the_model", "eval.max_new_tokens: must be below train.max_seq_length (2048)",
         params={"eval.max_new_tokens": 4096}),
    Case("mcq_max_questions_zero", "eval.mcq_protocol.max_questions: must be null (all questions) or >= 1, got 0",
         params={"eval.mcq_protocol.max_questions": 0}),
    Case("max_rows_zero", "data.max_rows: must be null or more than data.eval_rows (4), got 0",
         params={"data.max_rows": 0}),
    # params checked against the model before any weights load, and a run that diverges
    Case("lora_rank_above_the_layer_width", "lora.r: 4096 is more than k_proj's width (64)",
         params={"lora.r": 4096}, stage="train", before=("prepare",)),
    Case("unknown_target_module", "lora.target_modules: attn_proj is not a linear layer of this model",
         params={"lora.target_modules": ["q_proj", "attn_proj"]}, stage="train", before=("prepare",)),
    Case("fp8_base_without_fp8_matrix_units", "train.base_precision: fp8 needs a CUDA GPU with FP8 matrix units "
         "(compute capability 8.9 or later: Ada, Hopper, Blackwell); this machine has no CUDA GPU; use bf16",
         params={"train.base_precision": "fp8"}, stage="train", before=("prepare",)),
    Case("fp8_base_on_the_hf_backend", "train.base_precision: must be bf16 unless train.backend is unsloth",
         params={"train.base_precision": "fp8", "train.backend": "hf"}),
    Case("diverging_run_fails_instead_of_reporting_a_loss", "train diverged at step",
         params={"train.learning_rate": 1e8, "train.warmup_steps": 0, "train.max_steps": 4, "train.backend": "hf"},
         stage="train", before=("prepare",)),
    # rows
    Case("csv_unquoted_comma_is_a_bad_row", "rows.csv: row 32: 4 fields, but the header has 3",
         csv_file("What now?,Think.,Take aspirin 20, then rest\n"), "csv"),
    Case("csv_missing_field_is_a_bad_row", "rows.csv: row 32: 2 fields, but the header has 3",
         csv_file("What now?,Think.\n"), "csv"),
    Case("csv_bad_rows_skipped_and_counted", data=csv_file("What now?,Think.,Take aspirin 20, then rest\n",
                                                           "What now?,Think.\n"),
         suffix="csv", params={"data.on_bad_row": "skip"}, skipped={"wrong_field_count": 2}),
    Case("csv_field_over_the_csv_module_limit", data=csv_file(f'"Q?","{"long " * 40000}","A."\n'), suffix="csv",
         skipped={}),
    Case("csv_quote_left_open", "rows.csv: not readable as CSV from line 32 on (unexpected end of data)",
         csv_file('What now?,Think.,"Take aspirin\n', "Q2?,C2,R2\n"), "csv"),
    Case("zero_width_response_is_empty", "row 1: field Response: empty",
         jsonl([{**GOOD[0], "Response": "\u200b\u200d\ufeff"}] + GOOD)),
    Case("upper_case_columns", data=jsonl([{k.upper(): v for k, v in g.items()} for g in GOOD]), skipped={}),
    Case("lone_surrogate_cannot_be_encoded", "row 1: field Question: not valid Unicode text",
         b'{"Question": "\\ud800 pain?", "Complex_CoT": "c", "Response": "r"}\n' + jsonl(GOOD)),
    Case("cmeee_offsets_of_the_wrong_type", "row 1: field entities[0]: start_idx and end_idx must be integers",
         json_file(with_entity(start_idx="9")), "json", NER),
    Case("cmeee_type_of_the_wrong_type", "row 1: field entities[0]: type and entity must be strings",
         json_file(with_entity(type=["dis"])), "json", NER),
    Case("cmeee_wrong_types_skipped_and_counted", data=json_file(
        GOOD_NER + with_entity(start_idx="9")[:1] + with_entity(type=["dis"])[:1]), suffix="json",
         params={**NER, "data.on_bad_row": "skip"}, skipped={"not_an_integer": 1, "not_a_string": 1}),
    Case("mcq_rows_all_bad", "eval.mcq_sets.file.source 'mcq.jsonl': no usable question (1 gold_not_an_option, 1 "
         "unknown_shape)", params={**MCQ, "data.on_bad_row": "skip"}, stage="evaluate_base", before=("prepare",),
         files={"mcq.jsonl": jsonl([{**MCQ_GOOD[0], "answer_idx": "E"}, {"stem": "Q?"}])}),
    Case("mcq_skips_and_duplicates_counted", params={**MCQ, "data.on_bad_row": "skip"}, stage="evaluate_base",
         before=("prepare",), files={"mcq.jsonl": jsonl(MCQ_GOOD + MCQ_GOOD[:2] + [{"stem": "?"}])},
         metrics={"mcq.file.rows_skipped": 1, "mcq.file.duplicates": 2, "mcq.file.questions": 4}),
    Case("prompts_longer_than_the_model_are_cut_and_counted", data=jsonl(LONG),
         params={"train.max_seq_length": 1024, "eval.num_samples": 2, "eval.max_new_tokens": 8},
         stage="evaluate_base", before=("prepare",), metrics={"prompts_cut": 2, "samples": 2}),
    # reinforcement learning: refused before any work, nothing written
    Case("rl_unknown_reward", "rl.reward: must be one of answer; got 'style'", params={"rl.reward": "style"},
         stage="rl"),
    Case("rl_one_generation_per_question", "rl.num_generations: must be >= 2 (GRPO compares each question's",
         params={"rl.num_generations": 1}, stage="rl"),
    Case("rl_budget_past_the_training_length", "rl.max_new_tokens: must be below train.max_seq_length (2048)",
         params={"rl.max_new_tokens": 4096}, stage="rl"),
    Case("rl_rows_without_a_verifiable_answer", "rl.source 'rl.jsonl': no verifiable question (2 unknown_shape)",
         params={"rl.source": "rl.jsonl", "data.on_bad_row": "skip"}, stage="rl", before=("prepare", "train"),
         files={"rl.jsonl": jsonl([{"question": "What is it?"}, {"Question": "Why?", "Response": "Because."}])}),
    Case("rl_rows_all_in_the_eval_set", "all 40 questions are in the evaluation sets",
         params={"rl.source": "data/sample/mcq.jsonl"}, stage="rl", before=("prepare", "train")),
    Case("rl_prompts_leave_no_room_for_the_budget", "rl.max_new_tokens: no RL prompt leaves room for 2,000 new tokens",
         params={"rl.max_new_tokens": 2000}, stage="rl", before=("prepare", "train")),
    # files that are cut off or of the wrong kind, and params that only a build can refuse
    Case("truncated_local_weights", "mymodel/model.safetensors: truncated or padded",
         params={"model.name": "./mymodel"}, files={"mymodel/config.json": b"{}", "mymodel/model.safetensors": (
             len(HEADER).to_bytes(8, "little") + HEADER + b"1234")}),
    Case("garbage_local_weights", "mymodel/model.safetensors: not a safetensors file",
         params={"model.name": "./mymodel"}, files={"mymodel/config.json": b"{}",
                                                     "mymodel/model.safetensors": b"<html>not found</html>"}),
    Case("truncated_base_weights", "models/base/model.safetensors: truncated or padded (1,",
         stage="train", before=("prepare",), damage={"models/base/model.safetensors": lambda b: b[:len(b) // 2]}),
    Case("truncated_adapter", "models/tuned/adapter_model.safetensors: truncated or padded (",
         stage="evaluate", before=("prepare", "train", "rl", "evaluate_base"),
         damage={"models/tuned/adapter_model.safetensors": lambda b: b[:-100]}),
    Case("half_written_adapter_config", "models/tuned/adapter_config.json: not a complete JSON file",
         stage="evaluate", before=("prepare", "train", "rl", "evaluate_base"),
         damage={"models/tuned/adapter_config.json": lambda b: b[:len(b) // 2]}),
    Case("optimizer_without_its_package", "train.optim 'galore_adamw': cannot be built on this machine",
         params={"train.optim": "galore_adamw"}, stage="check"),
    Case("schedule_without_its_arguments", "train.lr_scheduler_type 'cosine_with_min_lr' with "
         "train.lr_scheduler_kwargs {}: cannot be built", params={"train.lr_scheduler_type": "cosine_with_min_lr"},
         stage="check"),
    Case("warmup_stable_decay_without_its_arguments", "train.lr_scheduler_type 'warmup_stable_decay'",
         params={"train.lr_scheduler_type": "warmup_stable_decay"}, stage="check"),
    Case("schedule_with_its_arguments", params={"train.lr_scheduler_type": "cosine_with_min_lr",
                                                "train.lr_scheduler_kwargs": {"min_lr_rate": 0.1}}, stage="check"),
    Case("budget_leaves_no_room_for_the_prompt", "eval.max_new_tokens: 2,040 leaves 8 of train.max_seq_length's "
         "2,048 tokens for a prompt", params={"eval.max_new_tokens": 2040}, stage="evaluate_base",
         before=("prepare",)),
    # files and order
    Case("train_before_prepare", "data/prepared/train.jsonl: missing; it is written by prepare", stage="train"),
    Case("evaluate_before_prepare", "data/prepared/eval.jsonl: missing; it is written by prepare",
         stage="evaluate_base"),
    Case("evaluate_tuned_without_an_adapter", "models/tuned/adapter_config.json: missing; it is written by rl",
         stage="evaluate", before=("prepare",)),
    Case("model_directory_without_weights", "model.name 'mymodel': no weights in this directory",
         params={"model.name": "mymodel"}, files={"mymodel/config.json": b"{}", "mymodel/tokenizer.json": b"{}"}),
    Case("missing_model_directory", "model.name './models/nowhere': no such directory",
         params={"model.name": "./models/nowhere"}),
    Case("source_is_a_directory", "rows.jsonl: a directory, not a file of rows",
         params={"data.source": "rows.jsonl"}, files={"rows.jsonl/part-0.jsonl": jsonl(GOOD)}),
    Case("source_is_a_symlink_loop", "loop.jsonl: a symbolic link to nothing (or a loop of links)",
         params={"data.source": "loop.jsonl"}, files={"loop.jsonl": symlink_loop}),
    Case("source_is_a_pipe", "fifo.jsonl: not a regular file", params={"data.source": "fifo.jsonl"},
         files={"fifo.jsonl": os.mkfifo}),
    Case("reports_is_a_file", "reports: a file where a folder must be (to write reports/prepare/stats.json)",
         files={"reports": b"not a folder"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(workdir, case):
    params = small(case.params)
    if case.data is not None:
        path = workdir / f"rows.{case.suffix}"
        path.write_bytes(case.data)
        params.setdefault("data.source", path.name)
    for name, content in case.files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        content(workdir / name) if callable(content) else (workdir / name).write_bytes(content)
    workdir.params(params)
    for stage in case.before:
        workdir.run(stage, env=case.env)
    for name, damage in case.damage.items():
        (workdir / name).write_bytes(damage((workdir / name).read_bytes()))
    before = snapshot(workdir)
    if case.message is not None:
        last = workdir.error_line(case.stage, env=case.env)
        assert last.startswith("error: ") and case.message in last, last
        assert snapshot(workdir) == before, "a failing stage changed outputs"
        return
    workdir.run(case.stage, env=case.env)
    if case.metrics is not None:
        scores = flatten(json.loads((workdir / "reports/eval/base/metrics.json").read_text())["base"])
        assert {k: scores[k] for k in case.metrics} == case.metrics
    elif case.stage == "prepare":
        stats = json.loads((workdir / "reports/prepare/stats.json").read_text())
        assert stats["skipped_by_reason"] == case.skipped
        assert stats["rows_skipped"] == sum(case.skipped.values())


OUTPUTS = ("data/prepared", "models/base", "models/adapter", "models/tuned", "reports")


def snapshot(workdir) -> dict:
    """Every output file (and folder) and its bytes (models/checkpoints is no output: train's resume state)."""
    found = {}
    for top in OUTPUTS:
        root = workdir / top
        if root.is_file():
            found[top] = root.read_bytes()
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            found[str(path.relative_to(workdir.path))] = path.read_bytes() if path.is_file() else b"<dir>"
    return found


def test_the_suite_states_its_case_count():
    """README "Reliability" states how many cases this file holds."""
    readme = (REPO / "README.md").read_text()
    assert f"lists the {len(CASES)} cases" in readme


@pytest.mark.slow
def test_an_adapter_trained_on_another_base_is_refused(trained, tmp_path):
    """prepare run again with another seed: the adapter in models/tuned belongs to the old base, and evaluate, export
    and ask say so instead of scoring another model."""
    workdir = copy_of(trained, tmp_path / "run")
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    (workdir / "params.yaml").write_text(yaml.safe_dump({**params, "seed": 7}))
    workdir.run("prepare")
    before = snapshot(workdir)
    assert "models/tuned: trained on another base than models/base" in workdir.error_line("evaluate")
    for module, *args in (["stages.export"], ["stages.ask", "Why?"]):
        out = subprocess.run([sys.executable, "-m", module, *args], cwd=workdir.path, env=stage_env(),
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 2 and "trained on another base" in out.stderr.strip().splitlines()[-1], out.stderr
    assert snapshot(workdir) == before


def ask(workdir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.ask", *args], cwd=workdir.path, env=stage_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("args, sentence", [
    (["--file", "{tmp}/binary.bin"], "--file {tmp}/binary.bin: not UTF-8 text"),
    (["--file", "{tmp}/blank.txt"], "--file {tmp}/blank.txt: no question in it"),
    ([""], "question: empty"),
    (["  "], "question: empty"),
    (["--max-new-tokens", "0", "Why?"], "--max-new-tokens: must be in 1..2047, got 0"),
    (["--temperature", "nan", "Why?"], "--temperature: must be a finite number >= 0, got nan"),
    (["--temperature", "inf", "Why?"], "--temperature: must be a finite number >= 0, got inf"),
    (["--max-new-tokens", "2000", "why " * 200], "question: "),
])
def test_ask_refuses_what_it_cannot_answer_in_one_sentence(trained, tmp_path, args, sentence):
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    out = ask(trained, *(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    sentence = sentence.replace("{tmp}", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {sentence}"), last


@pytest.mark.slow
def test_ctrl_c_ends_a_stage_in_one_line(trained, tmp_path):
    workdir = copy_of(trained, tmp_path / "run")
    stage = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=workdir.path, env=stage_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(12)  # imports done, training under way
    stage.send_signal(signal.SIGINT)
    _, err = stage.communicate(timeout=120)
    assert stage.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert any(line.startswith("interrupted: ") for line in err.splitlines()), err[-3000:]  # after the progress bar
