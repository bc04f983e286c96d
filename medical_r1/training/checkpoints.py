"""Resuming training: where a run keeps its checkpoints, and which one may continue it.

Checkpoints are not a DVC output (an output DVC must keep between runs, `persist`, would keep train out of
the run-cache). Each run writes them to models/checkpoints/<fingerprint>/, a git-ignored folder named by a
fingerprint of what the run depends on (seed, lora.*, train.* except bookkeeping knobs, the prepared training
rows, the base model's identity, the code under medical_r1/ and stages/). After the trainer has written `checkpoint-N/`, a
callback adds `resume.json` (atomically) with the fingerprint and the step log so far. A directory without it
(killed mid-save), with another fingerprint, or at the run's last step (resuming there would train one step
more) is never loaded. A finished run deletes its folder, and a run that starts from step 0 deletes every
folder there: checkpoints exist only while a run is incomplete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from medical_r1 import UserError, distributed, files

MARKER = "resume.json"
BOOKKEEPING = ("resume", "logging_steps", "save_steps", "num_processes")
"""train.* knobs left out of the fingerprint: how a run is recorded, and its process count, which resume.json
records so that a run at another count is refused rather than started over."""


CODE = (Path(__file__).parents[1], Path(__file__).parents[2] / "stages")
"""Our code: the library and the entry points."""


def fingerprint(seed: int, lora, train, train_rows_file: Path, base_dir: Path) -> str:
    """What a run computes from: seed, lora.*, train.* (bookkeeping aside), its rows, its base model, our code."""
    train = {k: v for k, v in asdict(train).items() if k not in BOOKKEEPING}
    digest = hashlib.sha256(json.dumps({"seed": seed, "lora": asdict(lora), "train": train},
                                       sort_keys=True).encode())
    digest.update(Path(train_rows_file).read_bytes())
    for name in ("base.json", "config.json"):
        if (base_dir / name).is_file():
            digest.update((base_dir / name).read_bytes())
    for source in sorted(p for folder in CODE for p in folder.rglob("*.py")):  # new code starts a new run
        digest.update(source.read_bytes())
    return digest.hexdigest()


def run_dir(root: Path, run_fingerprint: str) -> Path:
    """Where the run with this fingerprint keeps its checkpoints."""
    return root / run_fingerprint[:16]


def step_of(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


def find_resumable(directory: Path, run_fingerprint: str, max_steps: int) -> Path | None:
    """The newest complete checkpoint of this run before its last step, if any."""
    candidates = sorted((p for p in directory.glob("checkpoint-*")
                         if p.name.rsplit("-", 1)[-1].isdigit() and step_of(p) < max_steps),
                        key=step_of, reverse=True)
    for path in candidates:
        marker = path / MARKER
        if marker.is_file() and files.read_json(marker).get("fingerprint") == run_fingerprint:
            return path
    return None


def require_same_processes(checkpoint: Path, processes: int) -> None:
    """A checkpoint continues only at the process count that wrote it (its data order and RNG states are per
    process)."""
    wrote = files.read_json(checkpoint / MARKER).get("processes", 1)
    if wrote != processes:
        raise UserError(f"{checkpoint} was written by {wrote} process{'es' * (wrote > 1)}: continue it with "
                        f"train.num_processes={wrote}, or set train.resume=never to start over at {processes}")


def clear(directory: Path) -> None:
    """Drop checkpoints: all runs' before a run starts from step 0, its own once it has finished."""
    shutil.rmtree(directory, ignore_errors=True)


def marker_writer(run_fingerprint: str, log, processes: int):
    """A TrainerCallback writing resume.json into each checkpoint once the trainer has saved it (rank 0)."""
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            saved = log.state()
            if distributed.is_main():
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                files.write_json(path / MARKER, {"fingerprint": run_fingerprint, "step": state.global_step,
                                                 "processes": processes, **saved})

    return MarkComplete()
