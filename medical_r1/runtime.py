"""The machine a stage runs on: CUDA or CPU, the compute dtype, what makes its numbers reproducible, and how much
memory the stage peaked at (loading a model in a precision: model/precision.py)."""

from __future__ import annotations

import random
import resource

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

    return torch.cuda.get_device_name(torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"


def device_map() -> dict | None:
    """Load a model whole onto this process's GPU (a data-parallel worker's own), or leave it on the CPU."""
    import torch

    return {"": torch.cuda.current_device()} if torch.cuda.is_available() else None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def compute_dtype():
    """bf16 on GPUs that have it, fp16 on older GPUs, fp32 on the CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
