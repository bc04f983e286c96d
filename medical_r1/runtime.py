"""The machine a stage runs on: CUDA or CPU, the compute dtype, loading a model onto it, what makes its numbers
reproducible, and how much memory the stage peaked at."""

from __future__ import annotations

import random
import resource

from medical_r1 import UserError

CPU_THREADS = 2
"""Intra-op threads on a CPU whatever the machine has: parallel reductions split their work by thread count,
so a fixed count is part of computing the same bits everywhere (tiny models gain nothing from more)."""


def setup(seed: int | None = None) -> None:
    """Fix the CPU thread count (on a machine without CUDA) and, when given, seed every generator."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(CPU_THREADS)
    if seed is not None:
        seed_all(seed)


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU): the one place the pipeline seeds, called before each
    seeded draw (the tiny model, random weights, LoRA initialisation, a stage's start)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory() -> dict:
    """GPU peak allocated/reserved (GiB) on CUDA; the process's max RSS (GiB) on the CPU."""
    import torch

    if torch.cuda.is_available():
        return {"peak_gpu_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3)}
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def require_cuda_for_4bit(load_in_4bit: bool) -> None:
    if load_in_4bit and not cuda_available():
        raise UserError("train.load_in_4bit=true needs a CUDA GPU (bitsandbytes NF4); "
                        "set train.load_in_4bit=false to train in 16/32-bit on this machine")


def require_fp8_gpu() -> None:
    """FP8 matrix units: compute capability 8.9 or later (Ada, Hopper, Blackwell)."""
    import torch

    cuda = cuda_available()
    if not cuda or torch.cuda.get_device_capability() < (8, 9):
        has = device_name() if cuda else "no CUDA GPU"
        raise UserError(f"train.base_precision: fp8 needs a CUDA GPU with FP8 matrix units (compute capability 8.9 "
                        f"or later: Ada, Hopper, Blackwell); this machine has {has}; use bf16")


def compute_dtype():
    """bf16 on GPUs that have it, fp16 on older GPUs, fp32 on the CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def from_pretrained(weights: str, revision: str | None, trust_remote_code: bool, load_in_4bit: bool):
    """A causal LM with plain transformers, in the compute dtype on this machine's device (NF4 with double
    quantization when load_in_4bit, as QLoRA trains)."""
    require_cuda_for_4bit(load_in_4bit)
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {}
    if load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype())
    return AutoModelForCausalLM.from_pretrained(
        weights, revision=revision, dtype=compute_dtype(), trust_remote_code=trust_remote_code,
        device_map={"": 0} if cuda_available() else None, use_safetensors=True, **kwargs)
