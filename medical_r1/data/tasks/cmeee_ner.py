"""Chinese medical named entities (CMeEE-V2): rows, the instruction and target format, and strict scoring.

A CMeEE row is {"text", "entities": [{"start_idx", "end_idx", "type", "entity"}]} with an inclusive end:
text[start_idx:end_idx + 1] == entity. Entities may nest and overlap.
The model is asked for one entity per line, `type<TAB>entity`, ordered by position, each (type, string)
once, and `无` when there is none; its thinking block stays empty. The output carries no offsets, so a
predicted (type, string) stands for every place the string occurs in the text; scoring is strict
entity-level micro precision/recall/F1 on (start, end, type) against the gold spans.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from medical_r1.data import prompts
from medical_r1.evaluation import metrics
from medical_r1.data.tasks import BadRow, column, text_field

TYPES = {"dis": "疾病", "sym": "临床表现", "pro": "医疗程序", "equ": "医疗设备", "dru": "药物",
         "ite": "医学检验项目", "bod": "身体", "dep": "科室", "mic": "微生物类"}
NONE = "无"
SAMPLES = {None: Path("data/sample/cmeee_ner.json")}
INSTRUCTION = ("请抽取下面医学文本中的实体。实体类型：" + "，".join(f"{k}（{v}）" for k, v in TYPES.items())
               + f"。每行输出一个实体，格式为“类型<TAB>实体”，按出现顺序排列；没有实体时输出“{NONE}”。")

Span = tuple[int, int, str]
"""(start, inclusive end, type)."""


def validate(value: Any) -> dict:
    """{passage, entities: [[start, end, type, entity], ...]}; raises BadRow naming the field."""
    if not isinstance(value, dict):
        raise BadRow("not_an_object", f"expected an object with text and entities, got {type(value).__name__}")
    text = text_field(value, "text")  # offsets count from its first character: not stripped
    entities = value.get(column(value, "entities"))
    if not isinstance(entities, list):
        raise BadRow("missing_field", "field entities: missing (expected a list; the CMeEE test split has no "
                                      "gold entities and cannot be trained or scored on)")
    spans = {_checked_entity(text, i, e) for i, e in enumerate(entities)}
    return {"passage": text, "entities": [list(e) for e in sorted(spans, key=lambda e: (e[0], -e[1], e[2]))]}


def _checked_entity(text: str, index: int, entity: Any) -> tuple[int, int, str, str]:
    where = f"field entities[{index}]"
    if not isinstance(entity, dict) or not all(k in entity for k in ("start_idx", "end_idx", "type", "entity")):
        raise BadRow("missing_field", f"{where}: expected an object with start_idx, end_idx, type, entity")
    start, end, kind, name = (entity[k] for k in ("start_idx", "end_idx", "type", "entity"))
    if not isinstance(kind, str) or not isinstance(name, str):
        raise BadRow("not_a_string", f"{where}: type and entity must be strings, got {type(kind).__name__} and "
                                     f"{type(name).__name__}")
    if kind not in TYPES:
        raise BadRow("unknown_type", f"{where}: type {kind!r} is not a CMeEE type ({', '.join(TYPES)})")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in (start, end)):
        raise BadRow("not_an_integer", f"{where}: start_idx and end_idx must be integers, got {start!r} and {end!r}")
    if not 0 <= start <= end < len(text):
        raise BadRow("span_out_of_range", f"{where}: span [{start}, {end}] is outside the text "
                                          f"(0..{len(text) - 1}; end_idx is inclusive)")
    if text[start:end + 1] != name:
        raise BadRow("span_text_mismatch", f"{where}: text[{start}:{end}+1] is {text[start:end + 1]!r}, not the "
                                           f"entity {name!r} (end_idx is inclusive)")
    return start, end, kind, name


def target(entities: list[list]) -> str:
    """The answer the model learns: `type<TAB>entity` lines in order of position, each pair once."""
    pairs = list(dict.fromkeys((kind, name) for _, _, kind, name in entities))
    return "\n".join(f"{kind}\t{name}" for kind, name in pairs) or NONE


def format_row(row: dict, eos_token: str) -> dict:
    """A validated row plus its instruction, target answer, prompt, completion and full training text."""
    question = f"{INSTRUCTION}\n\n文本：{row['passage']}"
    answer = target(row["entities"])
    prompt = prompts.inference_prompt(question)
    completion = prompts.completion("", answer, eos_token)
    return {**row, "question": question, "answer": answer, "prompt": prompt, "completion": completion,
            "text": prompt + completion}


def parse(answer: str) -> tuple[list[tuple[str, str]], int]:
    """(type, entity) pairs from the answer's lines, and how many non-empty lines were malformed."""
    pairs, malformed = [], 0
    for line in answer.splitlines():
        line = line.strip()
        if not line or line == NONE:
            continue
        kind, tab, name = line.partition("\t")
        if tab and kind.strip() in TYPES and name.strip():
            pairs.append((kind.strip(), name.strip()))
        else:
            malformed += 1
    return pairs, malformed


def occurrences(text: str, name: str) -> list[int]:
    """Every start index of `name` in `text`, overlapping ones included."""
    found, start = [], text.find(name)
    while start != -1:
        found.append(start)
        start = text.find(name, start + 1)
    return found


def predicted_spans(text: str, pairs: list[tuple[str, str]]) -> tuple[set[Span], list[tuple[str, str]]]:
    """Each pair mapped to all its occurrences in the text; also the pairs whose string occurs nowhere."""
    spans, missing = set(), []
    for kind, name in pairs:
        starts = occurrences(text, name)
        if not starts:
            missing.append((kind, name))
        spans |= {(s, s + len(name) - 1, kind) for s in starts}
    return spans, missing


def score(rows: list[dict], answers: list[str]) -> dict:
    """Strict micro P/R/F1 over all rows, F1 per type, and the shares of malformed lines and unfound strings."""
    true_pos, predicted, gold = Counter(), Counter(), Counter()
    lines = malformed_lines = pairs_total = missing_total = 0
    for row, answer in zip(rows, answers):
        pairs, malformed = parse(answer)
        unique = list(dict.fromkeys(pairs))
        spans, missing = predicted_spans(row["passage"], unique)
        gold_spans = {(s, e, kind) for s, e, kind, _ in row["entities"]}
        for counter, found in ((true_pos, spans & gold_spans), (predicted, spans), (gold, gold_spans)):
            counter.update(kind for _, _, kind in found)
        predicted.update(kind for kind, _ in missing)  # a string found nowhere is one false positive
        lines, malformed_lines = lines + len(pairs) + malformed, malformed_lines + malformed
        pairs_total, missing_total = pairs_total + len(unique), missing_total + len(missing)
    p, r, f1 = metrics.precision_recall_f1(sum(true_pos.values()), sum(predicted.values()), sum(gold.values()))
    per_type = {f"ner_f1.{kind}": round(metrics.precision_recall_f1(true_pos[kind], predicted[kind], gold[kind])[2], 4)
                for kind in TYPES}
    return {"ner_precision": round(p, 4), "ner_recall": round(r, 4), "ner_f1": round(f1, 4), **per_type,
            "ner_malformed_lines": round(malformed_lines / lines, 4) if lines else 0.0,
            "ner_not_in_text": round(missing_total / pairs_total, 4) if pairs_total else 0.0}
