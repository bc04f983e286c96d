"""check: every param validated, and the optimizer and learning-rate schedule built once, before any other stage runs.

    python -m stages.check

Reads   params.yaml: every key (medical_r1/config.py's rules), then train.optim, train.lr_scheduler_type and
        train.lr_scheduler_kwargs built on a dummy parameter, as the trainer will build them
Writes  reports/check.json   that the params passed: the same bytes every time, so no stage after it reruns because
                             it ran. DVC deletes a stage's outputs just before running it, so a value refused inside
                             train, rl or evaluate would cost their earlier outputs. prepare depends on this file, so
                             this stage runs before every other, and again whenever a param changes; its one output is
                             persisted (DVC leaves it in place), so a refusal here stops `dvc repro` / `dvc exp run`
                             with every earlier output where it was.
"""

from __future__ import annotations

from medical_r1 import artifacts, config, files
from medical_r1.training import finetune


def main() -> None:
    params = config.load()
    finetune.check_optimizer(params.train)
    artifacts.CHECKED.write_json({"params": "valid", "optimizer": "builds", "schedule": "builds"})
    print("check: params.yaml holds valid params, and the optimizer and schedule build")


if __name__ == "__main__":
    files.run_stage(main)
