"""Every file a stage writes or reads, declared once: its path, its format, the stage that writes it and the stages
that read it, with one typed load/save each.

Stages name artifacts from here, never by a path of their own; dvc.yaml and export/dvc.yaml declare the same files,
and tests/test_artifacts.py checks each stage's deps and outs there against `writer` and `readers` here. Paths are
relative to the repository root, where DVC runs every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medical_r1 import UserError, files

Kind = Literal["out", "uncached", "metric", "plot", "part", "source"]
"""How dvc.yaml declares it: a cached output, an output DVC does not cache, a metric or plot (uncached), a file
inside an output folder that a stage depends on alone, or a file of the repository a stage reads."""
MODELS = ("base", "tuned")
"""The two models evaluation scores."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    """Relative to the repository root."""
    writer: str | None
    """The dvc.yaml stage that writes it (None: a bundled file of the repo)."""
    readers: tuple[str, ...]
    """The stages whose dvc.yaml deps list it."""
    kind: Kind
    """How dvc.yaml declares it."""

    def require(self) -> None:
        """Stop before any work when the artifact another stage writes is missing."""
        files.require_inputs([self.path], self.writer or "the repository")

    def read_json(self) -> Any:
        return files.read_json(self.path)

    def write_json(self, value: Any) -> None:
        files.write_json(self.path, value)


def _declare(path: str, writer: str | None, readers: tuple[str, ...] = (), kind: Kind = "out") -> Artifact:
    return Artifact(Path(path), writer, readers, kind)


EVALUATORS = ("evaluate_base", "evaluate")
CHECKED = _declare("reports/check.json", "check", ("prepare",), "uncached")
"""check's record that params.yaml passed: always the same bytes, persisted (stages/check.py says why)."""
SAMPLE = _declare("data/sample", None, ("prepare",), "source")
MCQ_SAMPLE = _declare("data/sample/mcq.jsonl", None, ("rl", *EVALUATORS), "source")
RL_SAMPLE = _declare("data/sample/rl.jsonl", None, ("rl",), "source")
# The folders of local sources DVC watches, per params section (data/local/README.md):
LOCAL_TRAIN = _declare("data/local/train", None, ("prepare",), "source")
LOCAL_RL = _declare("data/local/rl", None, ("rl",), "source")
LOCAL_EVAL = _declare("data/local/eval", None, ("rl", *EVALUATORS), "source")
PREPARED = _declare("data/prepared", "prepare", ("train",))
EVAL_ROWS = _declare("data/prepared/eval.jsonl", "prepare", ("rl", *EVALUATORS, "export"), "part")
TRAIN_ROWS = PREPARED.path / "train.jsonl"
BASE = _declare("models/base", "prepare", ("train", "rl", *EVALUATORS, "export"))
PREPARE_STATS = _declare("reports/prepare/stats.json", "prepare", ("report",), "metric")

ADAPTER = _declare("models/adapter", "train", ("rl",))
"""The SFT adapter."""
CHECKPOINTS = Path("models/checkpoints")
"""Where an incomplete training run keeps its checkpoints (git-ignored, not a DVC output)."""
TRAIN_METRICS = _declare("reports/train/metrics.json", "train", ("report",), "metric")
TRAIN_PERF = _declare("reports/train/perf.json", "train", ("report",), "metric")
RUN_INFO = _declare("reports/train/run.json", "train", ("report", "export"))
TRAIN_STEPS = _declare("reports/train/steps.csv", "train", ("report",), "plot")
EVAL_LOSS = _declare("reports/train/eval_loss.csv", "train", ("report",), "plot")
STEP_TIMES = _declare("reports/train/step_times.csv", "train", ("report",), "plot")

TUNED = _declare("models/tuned", "rl", ("evaluate", "export"))
"""The adapter evaluate, export and ask use: SFT's after rl.max_steps GRPO steps (SFT's own when 0)."""
RL_METRICS = _declare("reports/rl/metrics.json", "rl", ("report",), "metric")
RL_PERF = _declare("reports/rl/perf.json", "rl", ("report",), "metric")
RL_STEPS = _declare("reports/rl/steps.csv", "rl", ("report",), "plot")

EVAL_STAGE = {"base": "evaluate_base", "tuned": "evaluate"}
EVAL_METRICS = {"base": _declare("reports/eval/base/metrics.json", "evaluate_base", ("evaluate", "report", "export"),
                                 "metric"),
                "tuned": _declare("reports/eval/tuned/metrics.json", "evaluate", ("report", "export"), "metric")}
EVAL_PERF = {"base": _declare("reports/eval/base/perf.json", "evaluate_base", ("report",), "metric"),
             "tuned": _declare("reports/eval/tuned/perf.json", "evaluate", ("report",), "metric")}
GENERATIONS = {"base": _declare("reports/eval/base/generations.jsonl", "evaluate_base", ("evaluate",)),
               "tuned": _declare("reports/eval/tuned/generations.jsonl", "evaluate")}
SAMPLES = _declare("reports/eval/samples.jsonl", "evaluate", ("report",))
BEFORE_AFTER = _declare("reports/eval/before_after.csv", "evaluate", (), "plot")

REPORT = _declare("reports/report.md", "report")
FIGURES = _declare("reports/figures", "report", (), "plot")

EXPORT = _declare("models/export", "export", (), "uncached")  # 16 GB for the 8B, written on demand
EXPORT_METRICS = _declare("reports/export/metrics.json", "export", (), "metric")

BENCH_RESULTS = Path("reports/bench")
"""Benchmark results (bench/dvc.yaml, `python -m stages.bench`): one JSON per measured run, and their charts."""

ALL = [CHECKED, SAMPLE, MCQ_SAMPLE, RL_SAMPLE, LOCAL_TRAIN, LOCAL_RL, LOCAL_EVAL, PREPARED, EVAL_ROWS, BASE,
       PREPARE_STATS, ADAPTER, TRAIN_METRICS, TRAIN_PERF, RUN_INFO, TRAIN_STEPS, EVAL_LOSS, STEP_TIMES, TUNED,
       RL_METRICS, RL_PERF, RL_STEPS, *EVAL_METRICS.values(), *EVAL_PERF.values(), *GENERATIONS.values(), SAMPLES,
       BEFORE_AFTER, REPORT, FIGURES, EXPORT, EXPORT_METRICS]
"""Every declared artifact (tests/test_artifacts.py checks that none is left out)."""


def written_by(stage: str) -> list[Artifact]:
    """The outputs dvc.yaml declares for the stage."""
    return [a for a in ALL if a.writer == stage and a.kind != "part"]


def read_by(stage: str) -> list[Artifact]:
    return [a for a in ALL if stage in a.readers]


def require_all(*artifacts: Artifact) -> None:
    for artifact in artifacts:
        artifact.require()


def require_outputs_writable(stage: str) -> None:
    """Stop before any work when one of the stage's outputs could not be written (files.require_writable)."""
    outputs = written_by(stage)
    files.require_writable([a.path for a in outputs if a.path.suffix],
                           [a.path for a in outputs if not a.path.suffix] + ([CHECKPOINTS] if stage == "train" else []))


def save_scores(model: str, scores: dict) -> None:
    """reports/eval/<model>/metrics.json as {"<model>": {...}}: `dvc metrics show` then names each key base.* or
    tuned.*, so two experiments' and two models' scores line up in one table."""
    EVAL_METRICS[model].write_json({model: scores})


def load_scores(model: str) -> dict:
    """The scores evaluate wrote for `model`, checked to have its shape."""
    try:
        return EVAL_METRICS[model].read_json()[model]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{EVAL_METRICS[model].path}: not what {EVAL_STAGE[model]} writes ({type(err).__name__}: "
                        f"{err}); run {EVAL_STAGE[model]} again") from None


def save_eval_perf(model: str, perf: dict) -> None:
    EVAL_PERF[model].write_json({model: perf})


def load_eval_perf(model: str) -> dict:
    return EVAL_PERF[model].read_json()[model]


def save_run_info(device: str, weights: str, gradient_checkpointing: bool, optim: str, packing: bool,
                  processes: int, rows_per_step: int) -> None:
    """What a training run resolved at run time: the device, `weights` (random or pretrained), whether activations
    were recomputed, the optimizer, whether rows were packed (as the trainer ran: Unsloth unpacks where it cannot
    pack), the data-parallel processes and the rows each optimizer step sees (per device x accumulation x
    processes)."""
    RUN_INFO.write_json({"device": device, "weights": weights, "gradient_checkpointing": gradient_checkpointing,
                         "optim": optim, "packing": packing, "processes": processes,
                         "rows_per_step": rows_per_step})


def load_run_info() -> dict:
    return RUN_INFO.read_json()
