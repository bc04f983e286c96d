"""ask: answer medical questions with the tuned model, its thinking streamed as it comes, then its answer.

    python -m stages.ask "A 62-year-old smoker has painless jaundice and weight loss. Most likely diagnosis?"
    python -m stages.ask --file questions.txt             # one question per line
    python -m stages.ask                                  # interactive: a question per line; an empty line ends
    python -m stages.ask --model models/export "..."     # the merged model of the export instead of base + adapter
    python -m stages.ask --hide-thinking --max-new-tokens 1024 --temperature 0.6 "..."

Reads   params.yaml: train.load_in_4bit, train.max_seq_length, eval.max_new_tokens (the default budget);
        models/base/ + models/tuned/ (as evaluate loads them), or with --model a merged model's folder: the export,
        models/export/ (python -m stages.export), whose root is the merged model (or any transformers model folder)
Greedy unless --temperature is above 0. The prompt is the R1 inference prompt the model was trained with; the
thinking is dimmed on a terminal (between [thinking] and [answer] markers elsewhere), and the answer follows
`</think>`. Not medical advice.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from medical_r1 import UserError, config, files, runtime
from medical_r1.artifacts import BASE, EXPORT, TUNED
from medical_r1.data import prompts
from medical_r1.generation import inference, streaming
from medical_r1.model import base_model
from medical_r1.model.base_model import BaseModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", help="the question (none: read questions from stdin)")
    parser.add_argument("--file", type=Path, help="a file with one question per line")
    parser.add_argument("--model", type=Path, help=f"a merged model's folder, e.g. the export, {EXPORT.path} "
                                                    f"(default: {BASE.path} + {TUNED.path})")
    parser.add_argument("--max-new-tokens", type=int, help="generation budget (default: eval.max_new_tokens)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (default) answers greedily")
    parser.add_argument("--hide-thinking", action="store_true", help="print the answer only")
    args = parser.parse_args()
    params = config.load()
    budget = params.eval.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens
    if not 0 < budget < params.train.max_seq_length:
        raise UserError(f"--max-new-tokens: must be in 1..{params.train.max_seq_length - 1}, got {budget}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UserError(f"--temperature: must be a finite number >= 0, got {args.temperature}")
    if args.question is not None and not args.question.strip():
        raise UserError("question: empty; ask a question, or give none to type questions one per line")
    asked = list(questions(args.question, args.file)) if args.question or args.file else None
    model, tokenizer = load(args.model, params.train.load_in_4bit)
    for question in asked if asked is not None else questions(None, None):
        answer(model, tokenizer, question, budget, args.temperature, args.hide_thinking,
               params.train.max_seq_length)


def load(merged: Path | None, load_in_4bit: bool):
    """The model `--model` names (a merged model's folder, e.g. the export), else the base with the adapter."""
    runtime.setup()
    if merged is not None:
        files.require_inputs([merged / "config.json"], "python -m stages.export")
        model = BaseModel(str(merged), None, str(merged))
        base_model.require_weights(model, "run `python -m stages.export` again")
        return inference.load(model, None, False)
    files.require_inputs([BASE.path / base_model.BASE_FILE], "prepare")
    files.require_inputs([TUNED.path / "adapter_config.json"], "rl")
    base_model.require_adapter(TUNED.path, BASE.path, "train and rl")
    return inference.load(BaseModel.read(BASE.path), TUNED.path, load_in_4bit)


def questions(question: str | None, file: Path | None):
    """The questions to answer: the argument, the file's non-empty lines, or stdin's lines until an empty one."""
    if question:
        yield question
    elif file is not None:
        if not file.is_file():
            raise UserError(f"--file {file}: no such file")
        try:
            lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise UserError(f"--file {file}: not UTF-8 text; give a text file, one question per line") from None
        if not lines:
            raise UserError(f"--file {file}: no question in it (every line is empty)")
        yield from lines
    else:
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                print("question> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line.strip():
                return
            yield line.strip()


def answer(model, tokenizer, question: str, budget: int, temperature: float, hide_thinking: bool,
           max_length: int) -> None:
    """Generate with streaming; the text is printed as it arrives, split at `</think>`."""
    import torch

    encoded = tokenizer(prompts.inference_prompt(question))["input_ids"]
    if len(encoded) > max_length - budget:
        raise UserError(f"question: {len(encoded):,} tokens with the template, more than the {max_length - budget:,} "
                        f"that fit before {budget:,} new tokens (train.max_seq_length {max_length:,}); shorten it or "
                        "lower --max-new-tokens")
    ids = torch.tensor([encoded])
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    printer = streaming.ThinkingPrinter(hide_thinking, sys.stdout.isatty())
    with torch.no_grad():
        model.generate(input_ids=ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device),
                       max_new_tokens=budget, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       streamer=streaming.streamer(tokenizer, printer), **sampling)
    printer.finish()


if __name__ == "__main__":
    files.run_stage(main)
