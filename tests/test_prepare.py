import json
import shutil

import pytest

from medical_r1.data import dataset, sources
from medical_r1.data.sources import Record, SourceError
from medical_r1.data.tasks import medical_cot
from tests.conftest import REPO, small

GOOD = {"Question": "Q1?", "Complex_CoT": "Because.", "Response": "A1."}
DEMO = REPO.parent / "shared" / "data" / "medical-o1" / "demo_data.json"


def rows(n, start=0):
    return [{"Question": f"Question {i}?", "Complex_CoT": f"Reasoning {i}.", "Response": f"Answer {i}."}
            for i in range(start, start + n)]


def write_jsonl(path, items):
    path.write_text("".join((json.dumps(i) if not isinstance(i, str) else i) + "\n" for i in items))
    return path


def test_bad_file_fails_with_file_row_and_field(workdir):
    bad = write_jsonl(workdir / "bad.jsonl", rows(3) + [{**GOOD, "Complex_CoT": "  "}] + rows(30, 3))
    workdir.params(small({"data.source": str(bad)}))
    result = workdir.run("prepare", check=False, own_process=True)  # the command line itself, as a user runs it
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: row 4: field Complex_CoT: empty (expected a non-empty string) "
        "(set data.on_bad_row=skip to skip and count such rows)"]


def test_skip_counts_bad_rows_by_reason(workdir):
    items = (rows(30) + [{**GOOD, "Complex_CoT": ""}, "{not json", {"Question": "Q", "Response": "R"},
                         {**GOOD, "Response": 7}] + rows(2))  # the last two duplicate rows 0 and 1
    workdir.params(small({"data.source": str(write_jsonl(workdir / "mixed.jsonl", items))}))
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("on_bad_row: error",
                                                                                      "on_bad_row: skip"))
    workdir.run("prepare")
    stats = json.loads((workdir / "reports/prepare/stats.json").read_text())
    assert stats["skipped_by_reason"] == {"empty_field": 1, "malformed_json": 1, "missing_field": 1,
                                          "not_a_string": 1}
    assert (stats["rows_read"], stats["rows_skipped"], stats["duplicates"], stats["rows_kept"]) == (36, 4, 2, 30)
    assert stats["train_rows"] + stats["eval_rows"] == 30


def test_prepare_outputs_use_the_models_own_eos_and_tokenizer(workdir):
    workdir.params(small())
    workdir.run("prepare")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workdir / "models/base")
    assert tokenizer.pad_token != tokenizer.eos_token
    train = [json.loads(line) for line in (workdir / "data/prepared/train.jsonl").open()]
    assert all(r["text"].endswith(tokenizer.eos_token) and r["text"].startswith(r["prompt"]) for r in train)
    ids = tokenizer(train[0]["text"])["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id
    stats = json.loads((workdir / "reports/prepare/stats.json").read_text())
    lengths = [len(tokenizer(r["text"])["input_ids"]) for r in train]
    assert stats["tokens"]["max"] >= max(lengths) and stats["tokens"]["p50"] > 50
    assert (stats["train_rows"], stats["eval_rows"]) == (36, 4)


def test_lower_case_columns_and_exact_case_preferred():
    assert medical_cot.validate({"question": "q", "complex_cot": "c", "response": "r"})["question"] == "q"
    both = {"question": "mcq stem", "Question": "cot question", "Complex_CoT": "c", "Response": "r"}
    assert medical_cot.validate(both)["question"] == "cot question"


def test_split_is_deterministic_and_disjoint():
    data = [medical_cot.validate(r) for r in rows(50)]
    train_a, eval_a = dataset.split(data, 10, seed=3407)
    train_b, eval_b = dataset.split(data, 10, seed=3407)
    _, eval_c = dataset.split(data, 10, seed=1)
    assert (train_a, eval_a) == (train_b, eval_b)
    assert eval_a != eval_c
    assert len(eval_a) == 10 and not {r["question"] for r in eval_a} & {r["question"] for r in train_a}


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_local_file_formats(tmp_path, suffix):
    data, path = rows(5), tmp_path / f"rows{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(data))
    elif suffix == ".jsonl":
        write_jsonl(path, data)
    elif suffix == ".csv":
        import csv

        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(data[0]))
            writer.writeheader()
            writer.writerows(data)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(data), path)
    records = sources.load_records(str(path))
    assert [medical_cot.validate(r.value)["answer"] for r in records] == [f"Answer {i}." for i in range(5)]


def test_a_local_source_outside_its_watched_folder_is_noted(tmp_path, monkeypatch, capsys):
    """DVC sees edits only to local sources in data/local/<section>/ (or the bundled data/sample): any other local
    path is read, with one line saying so; a watched one reads silently."""
    monkeypatch.chdir(tmp_path)
    for folder, param in (("data/local/train", "data"), ("data/local/eval", "eval.mcq_sets.medqa")):
        (tmp_path / folder).mkdir(parents=True)
        write_jsonl(tmp_path / folder / "rows.jsonl", rows(2))
        assert len(sources.load_records(f"{folder}/rows.jsonl", param=param)) == 2
        assert capsys.readouterr().out == ""
    write_jsonl(tmp_path / "rows.jsonl", rows(2))
    (tmp_path / "data/sample").mkdir()
    write_jsonl(tmp_path / "data/sample/medical_cot.jsonl", rows(2))
    assert len(sources.load_records("data/sample/medical_cot.jsonl", param="data")) == 2
    assert capsys.readouterr().out == ""  # prepare depends on data/sample; rl only on its two files there
    assert len(sources.load_records("data/sample/medical_cot.jsonl", param="rl")) == 2
    assert len(sources.load_records("data/local/train/rows.jsonl", param="rl")) == 2
    assert len(sources.load_records("rows.jsonl", param="eval.mcq_sets.medqa")) == 2
    noted = capsys.readouterr().out.splitlines()
    assert noted == [
        "note: rl.source data/sample/medical_cot.jsonl lies outside data/local/rl/, so DVC will not see an edit to "
        "it; keep it in data/local/rl/, or after an edit run `dvc repro --force rl`",
        "note: rl.source data/local/train/rows.jsonl lies outside data/local/rl/, so DVC will not see an edit to it; "
        "keep it in data/local/rl/, or after an edit run `dvc repro --force rl`",
        "note: eval.mcq_sets.medqa.source rows.jsonl lies outside data/local/eval/, so DVC will not see an edit to "
        "it; keep it in data/local/eval/, or after an edit run `dvc repro --force rl evaluate_base evaluate`"]


def test_hub_loader_reads_a_local_dataset_folder_with_configs(tmp_path):
    for config, lang in (("en", "en"), ("zh", "zh")):
        (tmp_path / config).mkdir()
        write_jsonl(tmp_path / config / "train.jsonl", [{**r, "Question": f"{lang}: {r['Question']}"} for r in rows(3)])
    (tmp_path / "README.md").write_text(
        "---\nconfigs:\n- config_name: en\n  data_files: en/train.jsonl\n"
        "- config_name: zh\n  data_files: zh/train.jsonl\n---\n")
    records = sources.load_records(f"hf:{tmp_path}", "zh")
    assert [r.value["Question"][:3] for r in records] == ["zh:"] * 3
    assert records[0].origin == f"hf:{tmp_path} (config zh)"


def test_unknown_hub_config_is_named(tmp_path):
    (tmp_path / "en").mkdir()
    write_jsonl(tmp_path / "en" / "train.jsonl", rows(3))
    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: en\n  data_files: en/train.jsonl\n---\n")
    with pytest.raises(SourceError) as err:
        sources.load_records(f"hf:{tmp_path}", "fr")
    assert "(config fr): BuilderConfig 'fr' not found. Available: ['en']" in str(err.value)


def test_record_errors_become_bad_rows():
    records = [Record("f.jsonl", 1, None, "not UTF-8 (bad byte at column 3)", "not_utf8"), Record("f.jsonl", 2, GOOD)]
    kept, stats = dataset.clean(records, medical_cot.validate, "skip")
    assert len(kept) == 1 and stats.skipped == {"not_utf8": 1}


@pytest.mark.skipif(not DEMO.exists(), reason="shared demo data not present")
def test_real_demo_rows_prepare(workdir):
    shutil.copy(DEMO, workdir / "demo.json")
    workdir.params(small({"data.source": "demo.json", "data.max_rows": None}))
    workdir.run("prepare")
    stats = json.loads((workdir / "reports/prepare/stats.json").read_text())
    assert stats["rows_read"] == 198 and stats["rows_kept"] + stats["duplicates"] == 198
    assert stats["tokens"]["p50"] > 300


def test_a_row_of_an_unforeseen_shape_is_a_bad_row_not_a_traceback():
    def validate(value):
        return {"question": value["Question"].strip()}  # a str method on whatever the row holds

    records = [Record("f.jsonl", 1, {"Question": ["a", "list"]}), Record("f.jsonl", 2, {"Question": "Q?"})]
    kept, stats = dataset.clean(records, validate, "skip")
    assert kept == [{"question": "Q?"}] and stats.skipped == {"wrong_type": 1}
    with pytest.raises(dataset.DataError, match=r"^f.jsonl: row 1: a field has an unexpected type or shape "
                                                r"\(AttributeError"):
        dataset.clean(records, validate, "error")


def test_a_rerun_overwrites_the_outputs_of_the_last_run(workdir):
    workdir.params(small())
    workdir.run("prepare")
    first = (workdir / "data/prepared/train.jsonl").read_bytes()
    workdir.run("prepare")  # as `dvc repro --force prepare`: every output already there
    assert (workdir / "data/prepared/train.jsonl").read_bytes() == first
