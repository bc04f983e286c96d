"""The R1 medical template: training text, inference prompt, and splitting a generation.

The training text is the inference prompt followed by the reasoning, `</think>`, the answer and the
tokenizer's EOS token; without EOS the tuned model never learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = (
    "Below is an instruction that describes a task, paired with an input that provides further context.\n"
    "Write a response that appropriately completes the request.\n"
    "Before answering, think carefully about the question and create a step-by-step chain of thoughts "
    "to ensure a logical and accurate response."
)
INSTRUCTION = (
    "You are a medical expert with advanced knowledge in clinical reasoning, diagnostics, and treatment "
    "planning.\nPlease answer the following medical question."
)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

PROMPT = HEADER + "\n\n### Instruction:\n" + INSTRUCTION + "\n\n### Question:\n{question}\n\n### Response:\n" + THINK_OPEN + "\n"


def inference_prompt(question: str) -> str:
    """What the model sees at inference: everything up to and including `<think>\\n`."""
    return PROMPT.format(question=question)


def completion(reasoning: str, answer: str, eos_token: str) -> str:
    """What the model should write after the prompt."""
    return f"{reasoning}\n{THINK_CLOSE}\n{answer}{eos_token}"


def training_text(question: str, reasoning: str, answer: str, eos_token: str) -> str:
    """The full formatted row the model is trained on, ending with EOS."""
    return inference_prompt(question) + completion(reasoning, answer, eos_token)


@dataclass(frozen=True)
class Generation:
    thinking: str
    """Text before `</think>` (all of it when the tag never closes)."""
    answer: str
    """Text after `</think>`, stripped; empty when the tag never closes."""
    closed_think: bool
    """Whether the model wrote `</think>`."""


def split_generation(text: str) -> Generation:
    """Split what the model wrote after the prompt into its reasoning and its answer."""
    thinking, tag, answer = text.partition(THINK_CLOSE)
    return Generation(thinking.strip(), answer.strip() if tag else "", bool(tag))
