"""Claiming GPUs for a stage when several experiments share one machine: DVC schedules no GPUs, so each stage locks
free GPU ids itself (one lock file per id) and sees only those through CUDA_VISIBLE_DEVICES, until it exits.

    export MEDICAL_R1_GPUS=0,1,2,3          # the GPU ids the stages may claim
    dvc queue start -j 4                    # each experiment's stages claim train/eval num_processes ids

Without MEDICAL_R1_GPUS nothing is claimed: a stage sees whatever CUDA_VISIBLE_DEVICES says. The locks are flock()
locks, which the OS drops when the last process holding the lock file open is gone, a killed one included: a crashed
stage never leaves an id claimed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import IO

from medical_r1 import UserError

POOL_ENV = "MEDICAL_R1_GPUS"
LOCKS_ENV = "MEDICAL_R1_GPU_LOCKS"
WAIT_ENV = "MEDICAL_R1_GPU_WAIT"
DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "medical-r1-gpu-locks"
"""Shared by every DVC queue worker on the machine."""
DEFAULT_WAIT_SECONDS = 3600.0


@dataclasses.dataclass(frozen=True)
class Claim:
    """The GPU ids a process holds, and the open lock files that hold them (closing the last copy frees an id)."""

    ids: list[str]
    lock_files: list[IO[str]]

    def release(self) -> None:
        for lock_file in self.lock_files:
            lock_file.close()


def parse_pool(text: str) -> list[str]:
    """`0, 1,2` -> ["0", "1", "2"]."""
    return checked_pool([part.strip() for part in text.split(",")])


def checked_pool(pool: list[str]) -> list[str]:
    if any(not gpu.strip() for gpu in pool) or len(set(pool)) < len(pool):
        raise UserError(f"{POOL_ENV}={','.join(pool)} must list distinct GPU ids separated by commas")
    return pool


def claim(count: int, pool: list[str], lock_dir: Path, wait_seconds: float, poll_seconds: float = 0.5) -> Claim:
    """Lock `count` ids of `pool`, the first free ones in pool order, waiting up to `wait_seconds` for enough."""
    checked_pool(pool)
    if not 1 <= count <= len(pool):
        raise UserError(f"a stage must claim 1 to {len(pool)} of the GPUs {POOL_ENV}={','.join(pool)} lists, "
                        f"not {count}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        taken, held = [], []
        for gpu in pool:
            if len(taken) == count:
                break
            lock_file = open(lock_dir / f"gpu-{gpu}.lock", "a+", encoding="utf-8")  # noqa: SIM115 - it holds the lock
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.close()
                held.append(gpu)
                continue
            # A launcher's children (exec'd without closing fds) then keep holding the lock should this process die.
            os.set_inheritable(lock_file.fileno(), True)
            lock_file.truncate(0)
            lock_file.write(f"{os.getpid()} {os.getcwd()}\n")  # for humans: correctness rests on flock alone
            lock_file.flush()
            taken.append((gpu, lock_file))
        if len(taken) == count:
            return Claim([gpu for gpu, _ in taken], [lock_file for _, lock_file in taken])
        for _, lock_file in taken:
            lock_file.close()
        if time.monotonic() >= deadline:
            holders = ", ".join(f"{gpu} {holder(lock_dir / f'gpu-{gpu}.lock')}" for gpu in held)
            raise UserError(f"a stage asked for {count} of the GPUs {','.join(pool)} ({POOL_ENV}) but after waiting "
                            f"{wait_seconds:g} s ({WAIT_ENV}) these were still held: {holders}")
        time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))


def holder(lock_path: Path) -> str:
    """Who holds a lock, as its holder wrote it."""
    try:
        pid, _, cwd = lock_path.read_text(encoding="utf-8").strip().partition(" ")
    except OSError:
        pid = cwd = ""
    return f"by pid {pid} in {cwd}" if pid else "by a process that has not written its pid yet"


@contextlib.contextmanager
def claimed(count: int, environ: MutableMapping[str, str] = os.environ) -> Iterator[Claim | None]:
    """Claim `count` GPUs of the pool in $MEDICAL_R1_GPUS and show the stage only those (CUDA_VISIBLE_DEVICES) until
    the block ends; call it before torch initialises CUDA, which reads CUDA_VISIBLE_DEVICES once. Without a pool: None,
    and nothing changes."""
    pool_text = environ.get(POOL_ENV, "").strip()
    if not pool_text:
        yield None
        return
    pool = parse_pool(pool_text)
    try:
        wait_seconds = float(environ.get(WAIT_ENV) or DEFAULT_WAIT_SECONDS)
    except ValueError:
        raise UserError(f"{WAIT_ENV}={environ[WAIT_ENV]} is not a number of seconds") from None
    gpus = claim(count, pool, Path(environ.get(LOCKS_ENV) or DEFAULT_LOCK_DIR), wait_seconds)
    previous = environ.get("CUDA_VISIBLE_DEVICES")
    try:
        environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus.ids)
        print(f"gpus: claimed {','.join(gpus.ids)} (pool {','.join(pool)})", file=sys.stderr, flush=True)
        yield gpus
    finally:
        gpus.release()
        if previous is None:
            environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            environ["CUDA_VISIBLE_DEVICES"] = previous
