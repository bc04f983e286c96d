"""The activation-memory estimate against the peaks measured on the H200, and the `auto` decision."""

import json
from types import SimpleNamespace

import pytest

from medical_r1.model import backends, memory
from tests.conftest import REPO

LLAMA_8B = SimpleNamespace(**json.loads((REPO / "models/configs/DeepSeek-R1-Distill-Llama-8B/config.json").read_text()))
TOLERANCE = 0.12
"""The estimate is within 12% of every measured peak below."""


def loaded_gib(four_bit: bool, lora_parameters: int) -> float:
    """The 8B model on the GPU before the first step: weights (NF4 for the decoder's linear layers: 4 bits plus
    the block scales), the LoRA weights in float32, their gradients and 8-bit Adam states."""
    c = LLAMA_8B
    kv = c.num_key_value_heads * c.hidden_size // c.num_attention_heads
    linear = c.num_hidden_layers * (c.hidden_size * (2 * c.hidden_size + 2 * kv)
                                    + 3 * c.hidden_size * c.intermediate_size)
    other = 2 * c.vocab_size * c.hidden_size
    weights = linear * (0.5 + 4 / 64 if four_bit else 2) + other * 2
    return (weights + lora_parameters * (4 + 4 + 2)) / 2**30


def bench(name: str) -> dict:
    return json.loads((REPO / "reports/bench" / name).read_text())


def measured_points():
    """(what, backend, tokens in the micro-batch, loaded GiB, measured peak GiB) from the committed results."""
    points = []
    for name, backend, four_bit in (("unsloth-bf16-nogc-b8.json", "unsloth", False),
                                    ("unsloth-bf16-nogc-b16.json", "unsloth", False),
                                    ("unsloth-bf16-nogc-b32.json", "unsloth", False),
                                    ("unsloth-4bit.json", "unsloth", True), ("hf-bf16-nogc-b8.json", "hf", False)):
        result = bench(name)
        loaded = loaded_gib(four_bit, result["lora_parameters"])
        # the length probes run one row at a time without recomputation (their slope is the no-recompute one)
        points += [(f"{name} probe {p['max_seq_length']}", backend, p["max_seq_length"], loaded,
                    p["peak_reserved_gib"]) for p in result["seq_probes"]]
        if not result["params"]["gradient_checkpointing"]:
            tokens = result["params"]["per_device_train_batch_size"] * result["data"]["tokens_per_row_p95"]
            points.append((f"{name} training", backend, tokens, loaded, result["peak_gpu_allocated_gib"]))
    return points


@pytest.mark.parametrize("what, backend, tokens, loaded, measured", measured_points(), ids=lambda v: str(v))
def test_estimate_matches_measured_peak(what, backend, tokens, loaded, measured):
    estimate = memory.estimated_peak_gib(backends.get(backend).activation_bytes_per_token(LLAMA_8B), tokens, loaded)
    assert abs(estimate - measured) <= TOLERANCE * measured, f"{what}: estimated {estimate:.1f}, measured {measured}"


def test_auto_turns_recomputation_off_only_when_the_estimate_fits():
    h200 = 139.8
    loaded = loaded_gib(False, bench("unsloth-bf16.json")["lora_parameters"])
    per_token = backends.get("unsloth").activation_bytes_per_token(LLAMA_8B)
    fits = memory.estimated_peak_gib(per_token, 8 * 2048, loaded)
    too_big = memory.estimated_peak_gib(per_token, 64 * 2048, loaded)
    assert memory.choose_checkpointing("auto", fits, h200) is False
    assert memory.choose_checkpointing("auto", too_big, h200) is True
    assert memory.choose_checkpointing("auto", fits, 24.0) is True  # the same batch on a 24 GiB card
    assert memory.choose_checkpointing("auto", None, None) is False  # CPU
    assert memory.choose_checkpointing("on", None, None) is True and memory.choose_checkpointing("off", 1e9, 1) is False
