"""Printing a generation as it streams: the thinking dimmed (or hidden, or marked when not a terminal), then the
answer after `</think>` (stages/ask.py)."""

from __future__ import annotations

import sys

from medical_r1.data import prompts

DIM, RESET = "\033[2m", "\033[0m"


def streamer(tokenizer, printer: ThinkingPrinter):
    from transformers import TextStreamer

    class Stream(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            printer.write(text)

    return Stream(tokenizer, skip_prompt=True, skip_special_tokens=True)


class ThinkingPrinter:
    """Prints streamed text, the thinking dimmed (or hidden, or marked when not a terminal), then the answer."""

    def __init__(self, hide_thinking: bool, terminal: bool):
        self.hide, self.terminal, self.thinking, self.held = hide_thinking, terminal, True, ""
        self.emit("" if hide_thinking else (DIM if terminal else "[thinking]\n"))

    def emit(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def write(self, text: str) -> None:
        if not self.thinking:
            return self.emit(text)
        self.held += text
        before, tag, after = self.held.partition(prompts.THINK_CLOSE)
        if tag:
            self.thinking = False
            self.emit(("" if self.hide else before) + (RESET if self.terminal and not self.hide else "")
                      + "\n[answer]\n" + after.lstrip("\n"))
            return
        keep = len(prompts.THINK_CLOSE) - 1  # a tag may arrive split over two pieces
        if not self.hide:
            self.emit(self.held[:-keep] if len(self.held) > keep else "")
        self.held = self.held[-keep:] if len(self.held) > keep else self.held

    def finish(self) -> None:
        if self.thinking:
            self.emit(("" if self.hide else self.held) + (RESET if self.terminal and not self.hide else "")
                      + "\n[no answer: the model did not close its thinking within the budget]\n")
        else:
            self.emit("\n")
