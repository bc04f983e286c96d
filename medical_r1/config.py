"""params.yaml -> typed, validated config sections. The only module that reads params.yaml.

The section dataclasses (medical_r1/sections.py) say what each knob is; Params below gathers them and checks the
bounds a type cannot state (`rules`). They hold no values. Every value, defaults
included, comes from params.yaml (composed from conf/config.yaml + a recipe by `dvc exp run`), so there is
one set of defaults. A missing or unknown key, a wrong type or a value out of range fails with one sentence
naming the key:
    train.max_stepz: unknown key; did you mean train.max_steps?
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medical_r1.schema import ConfigError, build, set_dotted, transformers_names, value_at
from medical_r1.sections import (BenchConfig, DataConfig, EvalConfig, LoraConfig, ModelConfig, RlConfig,
                                 TrainConfig)

PARAMS_FILE = Path("params.yaml")
CONF = Path(__file__).resolve().parents[1] / "conf"
"""Every knob and its only default (config.yaml), and the named recipes (recipe/*.yaml)."""

@dataclass
class Params:
    seed: int
    """Seed for the split, the tiny model, random weights, LoRA init and data order."""
    data: DataConfig
    """Where the rows come from and how they are cleaned and split (prepare)."""
    model: ModelConfig
    """The base model (prepare writes it, train and evaluate load it)."""
    lora: LoraConfig
    """The adapter (train)."""
    train: TrainConfig
    """The trainer (train; max_seq_length also prepare and evaluate, load_in_4bit also evaluate)."""
    rl: RlConfig
    """Reinforcement learning on verifiable answers after SFT (rl)."""
    eval: EvalConfig
    """Scoring base and tuned (evaluate_base, evaluate)."""
    bench: BenchConfig
    """What the benchmark measures around the recipe (stages/bench.py, bench/dvc.yaml; never part of `dvc repro`)."""

    def __post_init__(self):  # rules() lists the "> 0" checks first: later rules may divide by those values
        for key, value, valid, expected in rules(self):
            if not valid:
                raise ConfigError(f"{key}: must be {expected}, got {value!r}")


SEED_RANGE = 2**32
"""numpy seeds must be below 2**32 (torch accepts more; the pipeline seeds both)."""
BPE_ALPHABET = 256 + 5
"""A byte-level BPE holds the 256 byte symbols and our 5 special tokens before it learns any merge."""
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""A Llama-family decoder layer's linear layers."""


POSITIVE = ("data.eval_rows", "lora.r", "lora.alpha", "train.max_seq_length", "train.per_device_train_batch_size",
            "train.gradient_accumulation_steps", "train.max_steps", "train.learning_rate", "train.logging_steps",
            "train.save_steps", "eval.num_samples", "eval.max_new_tokens", "eval.mcq_protocol.max_new_tokens",
            "eval.mcq_protocol.samples", "model.tiny.*",
            "rl.prompts_per_step", "rl.max_new_tokens", "rl.learning_rate",
            "bench.skip_steps", "bench.measure_steps", "bench.memory_budget_gib", "bench.peak_tflops",
            "bench.generate.*")
"""Params that must be > 0 (`section.*`: every field of the section)."""


def rules(p: Params) -> list[tuple[str, Any, bool, str]]:
    """(key, value, whether it is valid, what it must be) for every param whose type alone does not bound it."""
    keys = [f"{key[:-2]}.{f.name}" for key in POSITIVE if key.endswith(".*")
            for f in dataclasses.fields(value_at(p, key[:-2]))]
    positive = [(key, value_at(p, key)) for key in [k for k in POSITIVE if not k.endswith(".*")] + keys]
    positive += [(key, value) for key, value in (("eval.batch_size", p.eval.batch_size),
                                                 ("train.num_processes", p.train.num_processes),
                                                 ("eval.num_processes", p.eval.num_processes)) if value != "auto"]
    tiny, train, protocol, rl = p.model.tiny, p.train, p.eval.mcq_protocol, p.rl
    return [
        *((key, value, value > 0, "> 0") for key, value in positive),
        ("seed", p.seed, 0 <= p.seed < SEED_RANGE, f"an integer in 0..{SEED_RANGE - 1}"),
        ("data.max_rows", p.data.max_rows, p.data.max_rows is None or p.data.max_rows > p.data.eval_rows,
         f"null or more than data.eval_rows ({p.data.eval_rows})"),
        ("eval.mcq", p.eval.mcq, set(p.eval.mcq) <= set(p.eval.mcq_sets) and len(set(p.eval.mcq)) == len(p.eval.mcq),
         f"a list of distinct names from eval.mcq_sets ({', '.join(p.eval.mcq_sets) or 'none'})"),
        *((f"eval.mcq_sets.{name}.size", s.size, s.size is None or s.size >= 1, "null (not checked) or >= 1")
          for name, s in p.eval.mcq_sets.items()),
        ("eval.mcq_protocol.max_questions", protocol.max_questions,
         protocol.max_questions is None or protocol.max_questions >= 1, "null (all questions) or >= 1"),
        ("eval.mcq_protocol.samples", protocol.samples, protocol.decoding == "sampled" or protocol.samples == 1,
         "1 with greedy decoding (eval.mcq_protocol.decoding: sampled draws several)"),
        ("eval.mcq_protocol.temperature", protocol.temperature, protocol.temperature > 0, "> 0"),
        ("eval.mcq_protocol.top_p", protocol.top_p, 0 < protocol.top_p <= 1, "in (0, 1]"),
        ("eval.mcq_protocol.decoding", protocol.decoding, protocol.decoding == "greedy" or p.eval.engine == "static",
         "greedy with eval.engine generate (sampling runs in the static engine)"),
        ("rl.max_steps", rl.max_steps, rl.max_steps >= 0, ">= 0 (0: the SFT adapter is handed on unchanged)"),
        ("rl.max_rows", rl.max_rows, rl.max_rows is None or rl.max_rows >= 1, "null (all) or >= 1"),
        ("rl.num_generations", rl.num_generations, rl.num_generations >= 2,
         ">= 2 (GRPO compares each question's completions with each other)"),
        ("rl.temperature", rl.temperature, rl.temperature >= 0, ">= 0 (0: greedy rollouts)"),
        ("rl.top_p", rl.top_p, 0 < rl.top_p <= 1, "in (0, 1]"),
        ("rl.beta", rl.beta, rl.beta >= 0, ">= 0"),
        ("rl.backend", rl.backend, rl.backend == "hf" or rl.engine == "generate",
         "hf with rl.engine static (Unsloth replaces the transformers forward our engine decodes through; "
         "rl.engine generate runs with either)"),
        ("rl.max_new_tokens", rl.max_new_tokens, rl.max_new_tokens < train.max_seq_length,
         f"below train.max_seq_length ({train.max_seq_length}), which bounds prompt + completion in the update"),
        ("lora.dropout", p.lora.dropout, 0 <= p.lora.dropout < 1, "in [0, 1)"),
        ("lora.target_modules", p.lora.target_modules, bool(p.lora.target_modules)
         and len(set(p.lora.target_modules)) == len(p.lora.target_modules), "a non-empty list of distinct names"),
        ("train.warmup_steps", train.warmup_steps, train.warmup_steps >= 0, ">= 0"),
        ("train.base_precision", train.base_precision, train.base_precision == "bf16" or (
            train.backend == "unsloth" and not train.load_in_4bit and p.lora.dropout == 0
            and set(PROJECTIONS) <= set(p.lora.target_modules)),
         "bf16 unless train.backend is unsloth, train.load_in_4bit false, lora.dropout 0 and lora.target_modules "
         "all seven projections (fp8 runs in Unsloth's fused LoRA kernels, on a 16-bit base)"),
        ("train.weight_decay", train.weight_decay, train.weight_decay >= 0, ">= 0"),
        ("train.optim", train.optim, train.optim == "auto" or train.optim in transformers_names("OptimizerNames"),
         "auto or an optimizer transformers knows (transformers.training_args.OptimizerNames)"),
        ("train.lr_scheduler_type", train.lr_scheduler_type,
         train.lr_scheduler_type in transformers_names("SchedulerType"),
         "a schedule transformers knows (transformers.trainer_utils.SchedulerType)"),
        ("eval.max_new_tokens", p.eval.max_new_tokens, p.eval.max_new_tokens < train.max_seq_length,
         f"below train.max_seq_length ({train.max_seq_length}), which also bounds prompt + generation"),
        ("model.tiny.vocab_size", tiny.vocab_size, tiny.vocab_size >= BPE_ALPHABET,
         f">= {BPE_ALPHABET} (the byte alphabet and the special tokens)"),
        ("model.tiny.hidden_size", tiny.hidden_size, tiny.num_attention_heads <= 0 or (
            tiny.hidden_size % tiny.num_attention_heads == 0 and (tiny.hidden_size // tiny.num_attention_heads) % 2 == 0),
         f"a multiple of model.tiny.num_attention_heads ({tiny.num_attention_heads}) with an even head width "
         "(rotary embeddings rotate pairs)"),
        ("model.tiny.num_key_value_heads", tiny.num_key_value_heads,
         tiny.num_key_value_heads <= 0 or tiny.num_attention_heads % tiny.num_key_value_heads == 0,
         f"a divisor of model.tiny.num_attention_heads ({tiny.num_attention_heads})"),
        ("bench.profile_steps", p.bench.profile_steps, p.bench.profile_steps >= 0, ">= 0"),
        ("bench.seq_probe_lengths", p.bench.seq_probe_lengths, all(n > 0 for n in p.bench.seq_probe_lengths)
         and p.bench.seq_probe_lengths == sorted(p.bench.seq_probe_lengths), "positive lengths, shortest first"),
    ]


def load(path: str | Path = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> Params:
    """Read params.yaml (plus dotted-key overrides) into a validated Params."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run from the repository root") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    return build(Params, raw)


def compose(overrides: list[str], output: Path | None = None) -> Params:
    """Params composed from conf/ (conf/config.yaml + a recipe + key=value overrides) exactly as `dvc exp run -S ...`
    composes params.yaml (DVC's own Hydra call), written to `output` when given."""
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as scratch:
        path = output or Path(scratch) / "params.yaml"
        compose_and_dump(path, str(CONF.resolve()), None, "config", str(CONF.resolve().parent), overrides)
        return load(path)
