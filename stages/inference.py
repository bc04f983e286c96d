"""Running a (tuned or base) model: teacher-forced loss and batched greedy generation."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Generations:
    texts: list[str]
    """What the model wrote after each prompt (special tokens removed)."""
    stopped: list[bool]
    """Whether each generation ended with EOS within the budget."""
    new_tokens: list[int]
    """Tokens generated per prompt, EOS included."""
    seconds: float
    """Wall time of all generate() calls."""

    @property
    def tokens_per_second(self) -> float:
        return round(sum(self.new_tokens) / self.seconds, 1)


def teacher_forced_loss(model, tokenizer, rows: list[dict], batch_size: int, max_length: int) -> dict:
    """Mean per-token NLL on the full text and on the completion part only (token-weighted)."""
    import torch

    device = next(model.parameters()).device
    totals = {"full": [0.0, 0], "response": [0.0, 0]}
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        enc = tokenizer([r["text"] for r in batch], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length, add_special_tokens=True).to(device)
        prompt_lengths = [len(tokenizer(r["prompt"])["input_ids"]) for r in batch]
        with torch.no_grad():
            logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[:, :-1].float()
        targets = enc.input_ids[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        real = enc.attention_mask[:, 1:].bool()
        positions = torch.arange(targets.shape[1], device=device).unsqueeze(0)
        response = real & (positions >= torch.tensor(prompt_lengths, device=device).unsqueeze(1) - 1)
        for key, mask in (("full", real), ("response", response)):
            totals[key][0] += nll[mask].sum().item()
            totals[key][1] += int(mask.sum())
    return {key: total / max(count, 1) for key, (total, count) in totals.items()}


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> Generations:
    """Greedy generation in left-padded batches."""
    import torch

    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    out = Generations([], [], [], 0.0)
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True).to(device)
        began = time.perf_counter()
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.seconds += time.perf_counter() - began
        for row in ids[:, enc.input_ids.shape[1]:].tolist():
            length = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
            out.stopped.append(tokenizer.eos_token_id in row)
            out.new_tokens.append(length)
            out.texts.append(tokenizer.decode(row[:length], skip_special_tokens=True))
    tokenizer.padding_side = "right"
    return out
