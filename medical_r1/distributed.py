"""Data parallelism for the train and evaluate stages: with num_processes above 1 a stage starts itself again under
torchrun (`python -m torch.distributed.run`), one process per GPU (NCCL), or per CPU process with gloo, which runs
the same code path on a machine without GPUs.

    dvc exp run -S train.num_processes=auto -S eval.num_processes=auto    # every visible GPU
    dvc exp run -S train.num_processes=2                                  # 2 GPUs (or 2 CPU processes)

Training is DDP through the trainer (accelerate underneath); evaluation hands each process whole batches of the plan
one process would run and gathers the results in their original order, so its files are byte-identical to one
process. Only the first process (rank 0) writes outputs. The stage's first process claims its GPUs (gpus.py) before
any CUDA work; the workers inherit them through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, Callable

from medical_r1 import UserError, gpus

PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when its parent dies."""


def processes(requested: int | str, param: str) -> int:
    """`requested` (a count or `auto`) as a process count this machine can run: `auto` is every GPU the stage may
    use (MEDICAL_R1_GPUS's pool, else the visible GPUs), 1 without a GPU; a count must not exceed them (on a machine
    without GPUs: its CPU cores, one gloo process each)."""
    available, what, gpus_there = devices()
    if requested == "auto":
        return available if gpus_there else 1
    if requested > available:
        raise UserError(f"{param}: {requested} processes, but this machine has {available} {what}; set {param} to "
                        f"at most {available} (or auto)")
    return requested


def devices() -> tuple[int, str, bool]:
    """How many processes can run side by side, what they run on, and whether that is GPUs. Counting GPUs does not
    initialise CUDA."""
    pool = os.environ.get(gpus.POOL_ENV, "").strip()
    if pool:
        return len(gpus.parse_pool(pool)), f"GPUs in {gpus.POOL_ENV}", True
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), "visible GPUs", True
    return os.cpu_count() or 1, "CPU cores (no GPU)", False


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """Whether this process writes the stage's outputs (the only one, or rank 0)."""
    return rank() == 0


def in_worker() -> bool:
    """Whether this process is one of torchrun's workers (not the stage's first process)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def run(module: str, count: int, work: Callable[[], None]) -> None:
    """`work()` in one process, or in `count` processes of `python -m <module>` (with this process's arguments)
    under torchrun; in the stage's first process after claiming its GPUs (gpus.claimed)."""
    if in_worker():
        die_with_parent()
        init()
        try:
            work()
        finally:
            import torch.distributed as dist

            dist.destroy_process_group()
        return
    with gpus.claimed(count) as claim:
        if count == 1:
            work()
            return
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={count}",
                   "-m", module, *sys.argv[1:]]
        keep = [f.fileno() for f in claim.lock_files] if claim else []  # the workers hold the GPUs too
        waiting = {"OMP_WAIT_POLICY": "PASSIVE"}  # CPU processes sharing cores: idle threads must not spin on them
        finished = subprocess.run(command, pass_fds=keep, env=waiting | os.environ, preexec_fn=die_with_parent)
        if finished.returncode:
            raise UserError(f"{module}: a process of {count} failed (exit code {finished.returncode}); its error is "
                            "above, and nothing of this run is recorded")


def die_with_parent() -> None:
    """Have Linux kill this process when its parent dies: torchrun starts its workers in sessions of their own, so
    without this a killed stage (kill -9, a crashed DVC) would leave them training and writing."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def init() -> None:
    """This worker's device (its LOCAL_RANK's GPU) and the process group: NCCL between GPUs, gloo on CPUs."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    else:  # the trainer loads a checkpoint's optimizer to its device, `cpu:<rank>`, a tag torch.load cannot place
        torch.serialization.register_package(
            99, lambda storage: None, lambda storage, location: storage if location.startswith("cpu:") else None)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def mine(items: list) -> list:
    """This process's share of `items`: every world_size-th from its rank (all of them in one process)."""
    return items[rank()::world_size()] if active() else items


def gathered(mine: dict[int, Any]) -> dict[int, Any]:
    """Every process's {index: result} in one dict, on every process."""
    if not active():
        return mine
    import torch.distributed as dist

    parts: list[dict[int, Any]] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, mine)
    return {index: result for part in parts for index, result in part.items()}


def agreed(value):
    """Rank 0's `value` on every process (a choice that depends on a process's free memory must be one)."""
    if not active():
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def total(count) -> int:
    """The sum over the processes of a count (an int, or a one-element tensor on this process's device)."""
    if not active():
        return int(count)
    import torch
    import torch.distributed as dist

    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    summed = torch.tensor(int(count), dtype=torch.long, device=device)
    dist.all_reduce(summed)
    return int(summed.item())


def slowest(seconds: float) -> float:
    """The longest of the processes' times: the wall time of work they did side by side."""
    return max(gathered({rank(): seconds}).values())
