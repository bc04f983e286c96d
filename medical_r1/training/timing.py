"""Callbacks of the one fit() that measure a run without changing it: a step timer (steady-state tokens/s, step
time and peak memory between two steps) and a GPU kernel profiler (time by kernel kind, host syncs per step)."""

from __future__ import annotations

import collections
import re
import time

from medical_r1 import runtime


def steady_state(marks: dict[int, tuple[float, int]], first: int, last: int) -> dict:
    """Tokens/s and step time over steps first+1..last, from (seconds, tokens seen) marked at those two steps."""
    (start, tokens_start), (end, tokens_end) = marks[first], marks[last]
    steps, tokens = last - first, tokens_end - tokens_start
    return {"measured_steps": steps, "tokens_per_second": round(tokens / (end - start), 1),
            "step_seconds": round((end - start) / steps, 4), "measured_tokens": tokens}


def step_timer(log, first: int, last: int):
    """Marks the time and the step log's token count at the end of steps `first` and `last` (its `.marks`), waiting
    for the GPU there and nowhere else, so the steps between run as training runs them; the peak memory of the
    steps between (its `.peak`: counters reset at `first`, read at `last`, before any evaluation or saving)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks, self.peak = {}, {}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step not in (first, last):
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks[state.global_step] = (time.perf_counter(), int(log.tokens))
            if state.global_step == first and torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            if state.global_step == last:
                self.peak = runtime.peak_memory()

    return StepTimer()


KERNEL_KINDS = {
    "attention": re.compile(r"flash|fmha|attention|attn", re.I),
    "matmul (GEMM)": re.compile(r"gemm|gemv|cutlass|xmma|nvjet|cublas", re.I),
    "cross-entropy": re.compile(r"cross_entropy|logsumexp|log_softmax", re.I),
    "optimizer": re.compile(r"adam|optimizer|multi_tensor|foreach", re.I),
    "copies and casts": re.compile(r"memcpy|memset|copy|cast|convert", re.I),
}
"""Kernel name patterns, tried in order; every other kernel (norms, RoPE, SwiGLU, LoRA glue) is `elementwise`."""


def kernel_breakdown(events, steps: int) -> dict:
    """GPU kernel time per step, its share by kernel kind and the 10 costliest kernels, from profiler averages
    (objects with `key` and `self_device_time_total` in microseconds)."""
    kinds, kernels = {kind: 0.0 for kind in (*KERNEL_KINDS, "elementwise")}, []
    for event in events:
        micros = event.self_device_time_total
        if micros <= 0:
            continue
        kind = next((k for k, pattern in KERNEL_KINDS.items() if pattern.search(event.key)), "elementwise")
        kinds[kind] += micros
        kernels.append((micros, event.key))
    total = sum(kinds.values())
    return {"gpu_ms_per_step": round(total / steps / 1000, 2),
            "share": {kind: round(micros / total, 4) for kind, micros in kinds.items()},
            "top_kernels": [{"kernel": name[:100], "share": round(micros / total, 4)}
                            for micros, name in sorted(kernels, reverse=True)[:10]]}


def kernel_profiler(start_step: int, steps: int):
    """Profiles the GPU kernels of the `steps` optimizer steps after `start_step` (its `.breakdown` after) and
    counts the host syncs in them: every operation that makes the CPU wait for the GPU, by the innermost Python
    line that asked for it (torch.cuda.set_sync_debug_mode; an explicit torch.cuda.synchronize() counts at
    torch's own line). Only logs that fall in the profiled steps are counted: profile at least logging_steps
    steps to see them."""
    import warnings

    import torch
    from transformers import TrainerCallback

    class KernelProfile(TrainerCallback):
        def __init__(self):
            self.breakdown = None
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            self.syncs = warnings.catch_warnings(record=True)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == start_step:
                self.profiler.start()
                self.caught = self.syncs.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
            elif state.global_step == start_step + steps:
                torch.cuda.set_sync_debug_mode("default")
                self.syncs.__exit__(None, None, None)
                torch.cuda.synchronize()
                self.profiler.stop()
                self.breakdown = kernel_breakdown(self.profiler.key_averages(), steps) | {
                    "host_syncs_per_step": sync_sites(self.caught, steps)}

    return KernelProfile()


def sync_sites(caught: list, steps: int) -> dict[str, float]:
    """Synchronizing operations per step by the line that asked for them (site-packages/ and the repo stripped)."""
    counts = collections.Counter(f"{w.filename.split('site-packages/')[-1].split('/medical_r1/')[-1]}:{w.lineno}"
                                 for w in caught if "synchronizing" in str(w.message))
    return {where: round(count / steps, 2) for where, count in counts.most_common()}
