"""params.yaml -> typed, validated config objects. The only module that reads params.yaml.

Unknown keys and wrong types fail with one sentence naming the key:
    train.max_stepz: unknown key; did you mean train.max_steps?
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from stages import UserError

PARAMS_FILE = Path("params.yaml")


class ConfigError(UserError):
    """A params.yaml value that cannot be used; the message names the key."""


@dataclass
class DataConfig:
    task: Literal["medical_cot", "cmeee_ner"] = "medical_cot"
    """What the rows are: medical chain-of-thought (Question, Complex_CoT, Response), or CMeEE-V2 entities."""
    source: str = "sample"
    """`sample` (the task's bundled sample), a local .json/.jsonl/.parquet/.csv path, or `hf:<dataset id>`."""
    config: str | None = None
    """Hub dataset config, e.g. en, zh, en_mix, zh_mix; for `sample`: en or zh (medical_cot)."""
    revision: str | None = None
    """Hub dataset revision (commit or tag) to pin (hub sources only)."""
    split: str = "train"
    """Hub dataset split to read (hub sources only)."""
    max_rows: int | None = None
    """Keep at most this many valid rows (before the train/eval split); null keeps all."""
    eval_rows: int = 24
    """Rows held out for evaluation."""
    on_bad_row: Literal["error", "skip"] = "error"
    """A row failing validation stops prepare (`error`) or is skipped and counted (`skip`)."""
    on_long_row: Literal["truncate", "skip"] = "truncate"
    """A row longer than train.max_seq_length is truncated by the trainer or skipped here; both are counted."""


@dataclass
class TinyModelConfig:
    vocab_size: int = 2048
    """BPE vocabulary size of the tokenizer trained on the prepared texts."""
    hidden_size: int = 128
    """Width of the tiny Llama."""
    intermediate_size: int = 352
    """MLP width of the tiny Llama."""
    num_hidden_layers: int = 4
    """Decoder layers."""
    num_attention_heads: int = 4
    """Query heads."""
    num_key_value_heads: int = 2
    """Key/value heads (grouped-query attention, as in Llama 3)."""


@dataclass
class ModelConfig:
    name: str = "tiny"
    """`tiny` (built from model.tiny), a hub id, or a local directory with a Hugging Face model."""
    revision: str | None = None
    """Hub revision (commit or tag) of the model; ignored for tiny and local directories."""
    init: Literal["pretrained", "random"] = "pretrained"
    """`random`: the architecture of model.name with seeded random weights, for speed/memory runs only."""
    trust_remote_code: bool = False
    """Allow a hub model to run its own Python code. Off unless you trust the repository."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the embedded default model (its vocab_size also sizes the BPE of random-init models)."""


@dataclass
class LoraConfig:
    r: int = 16
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rsLoRA)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Linear layers that get adapters."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(r)."""


@dataclass
class TrainConfig:
    backend: Literal["unsloth", "hf"] = "unsloth"
    """`unsloth` (FastLanguageModel) or `hf` (transformers + peft), both trained by TRL's SFTTrainer."""
    load_in_4bit: bool = False
    """QLoRA: load the base model in 4-bit NF4 (needs a CUDA GPU)."""
    max_seq_length: int = 2048
    """Longest training sequence in tokens; longer rows are truncated (prepare counts them)."""
    per_device_train_batch_size: int = 2
    """Rows per device per forward pass."""
    gradient_accumulation_steps: int = 4
    """Forward passes per optimizer step."""
    max_steps: int = 60
    """Optimizer steps."""
    learning_rate: float = 2e-4
    """Peak learning rate."""
    warmup_steps: int = 5
    """Linear warm-up steps."""
    optim: str = "auto"
    """Optimizer name for transformers; `auto` = adamw_8bit on a CUDA GPU, adamw_torch elsewhere."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    lr_scheduler_type: str = "linear"
    """Learning-rate schedule after warm-up."""
    logging_steps: int = 1
    """Log loss, learning rate and throughput every this many steps."""
    save_steps: int = 20
    """Write a checkpoint to models/checkpoints every this many steps."""
    packing: bool = False
    """Pack several rows into one max_seq_length sequence (TRL packing)."""
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    """Recompute activations in backward; `auto` = on with a CUDA GPU, off on the CPU."""
    resume: Literal["auto", "never"] = "auto"
    """`auto`: continue from the newest complete checkpoint of this same run (same params and data)."""


@dataclass
class McqConfig:
    source: str | None = None
    """Multiple-choice rows to score (MedQA/MedMCQA/PubMedQA shapes): a local file or `hf:<id>`; null = off."""
    config: str | None = None
    """Hub config of an `hf:` MCQ source."""
    split: str = "test"
    """Hub split of an `hf:` MCQ source."""
    max_rows: int | None = None
    """Score at most this many questions; null scores all."""
    max_new_tokens: int = 512
    """Thinking budget per question (reasoning + the chosen letter)."""


@dataclass
class EvalConfig:
    num_samples: int = 24
    """Held-out questions to generate answers for (at most data.eval_rows are available)."""
    max_new_tokens: int = 256
    """Generation budget per question (reasoning + answer)."""
    batch_size: int | Literal["auto"] = 8
    """Prompts per generation batch and rows per loss batch; `auto`: the most that fit the free memory."""
    engine: Literal["static", "generate"] = "static"
    """`static`: static KV cache, one CUDA graph per decode step on a GPU; `generate`: transformers' generate()."""
    mcq: McqConfig = field(default_factory=McqConfig)
    """Medical multiple-choice accuracy of base and tuned (off unless eval.mcq.source is set)."""


@dataclass
class GenerateBenchConfig:
    prompts: int = 1273
    """Prompts generated for at the auto batch (MedQA's test set has 1,273 questions)."""
    prompt_tokens: int = 320
    """Tokens per prompt: windows of the benchmark rows' text."""
    max_new_tokens: int = 512
    """New tokens per prompt; EOS never ends a generation early, so every prompt costs the whole budget."""
    batch_size: int = 64
    """The fixed batch compared with the auto batch (its first `batch_size` prompts)."""
    peak_bandwidth_tbs: float = 4.8
    """Memory bandwidth of the GPU for the roofline, TB/s (H200 datasheet)."""


@dataclass
class BenchConfig:
    model: str = "models/configs/DeepSeek-R1-Distill-Llama-8B"
    """Architecture to benchmark (a directory with config.json); built with seeded random weights."""
    rows: str = "../shared/data/medical-o1/demo_data.json"
    """Rows whose real length mix the benchmark trains on (any data.source a file can be)."""
    tokenizer_vocab_size: int = 4096
    """BPE trained on the rows; 4096 gives Llama 3's ~4.3 characters per token on medical-o1 text."""
    weights_dir: str = "/tmp/medical-r1-bench-weights"
    """Where the random weights are written once and shared by every combination (outside the repo)."""
    per_device_train_batch_size: int = 2
    """Rows per forward pass (the reference recipe: 2)."""
    gradient_accumulation_steps: int = 4
    """Forward passes per optimizer step (the reference recipe: 4)."""
    max_seq_length: int = 2048
    """Longest sequence; longer rows are truncated."""
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    """As train.gradient_checkpointing; a combination may override it on the command line."""
    learning_rate: float = 2e-4
    """The reference recipe's learning rate (speed does not depend on it; stability of the run does)."""
    warmup_steps: int = 3
    """Optimizer steps run before timing starts (compilation, autotuning, allocator warm-up)."""
    measure_steps: int = 6
    """Optimizer steps timed for the steady-state figures."""
    memory_budget_gib: float = 24.0
    """Budget for the longest-sequence probe (a 24 GB card)."""
    seq_probe_lengths: list[int] = field(default_factory=lambda: [2048, 4096, 8192, 16384, 32768])
    """Sequence lengths probed, shortest first, with one batch-1 training step each."""
    peak_tflops: float = 989.4
    """Dense bf16 peak of the GPU for MFU (H100/H200 SXM datasheet)."""
    generate: GenerateBenchConfig = field(default_factory=GenerateBenchConfig)
    """The generation benchmark (`python -m stages.bench generate`)."""


@dataclass
class Params:
    seed: int = 3407
    """Seed for the split, the tiny model, LoRA init and data order."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def __post_init__(self):
        positive = {"data.eval_rows": self.data.eval_rows, "lora.r": self.lora.r,
                    "train.max_seq_length": self.train.max_seq_length,
                    "train.per_device_train_batch_size": self.train.per_device_train_batch_size,
                    "train.gradient_accumulation_steps": self.train.gradient_accumulation_steps,
                    "train.max_steps": self.train.max_steps, "train.logging_steps": self.train.logging_steps,
                    "train.save_steps": self.train.save_steps, "eval.num_samples": self.eval.num_samples,
                    "eval.max_new_tokens": self.eval.max_new_tokens,
                    "bench.measure_steps": self.bench.measure_steps,
                    "bench.generate.prompts": self.bench.generate.prompts,
                    "bench.generate.prompt_tokens": self.bench.generate.prompt_tokens,
                    "bench.generate.max_new_tokens": self.bench.generate.max_new_tokens,
                    "bench.generate.batch_size": self.bench.generate.batch_size,
                    "bench.per_device_train_batch_size": self.bench.per_device_train_batch_size}
        if self.eval.batch_size != "auto":
            positive["eval.batch_size"] = self.eval.batch_size
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key}: must be > 0, got {value}")
        if self.data.max_rows is not None and self.data.max_rows <= self.data.eval_rows:
            raise ConfigError(f"data.max_rows: must exceed data.eval_rows ({self.data.eval_rows}), "
                              f"got {self.data.max_rows}")
        if not 0 <= self.lora.dropout < 1:
            raise ConfigError(f"lora.dropout: must be in [0, 1), got {self.lora.dropout}")
        if not self.lora.target_modules:
            raise ConfigError("lora.target_modules: must name at least one module")


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


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """tree["a"]["b"] = value for dotted = "a.b", creating missing levels."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def build(cls: type, raw: Any, prefix: str = ""):
    """Build dataclass `cls` from a mapping, checking every key and type."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'params'}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")
    values = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in raw.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for inner in options:
            try:
                return _coerce(inner, value, key)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        expected = " or ".join(", ".join(typing.get_args(a)) if typing.get_origin(a) is Literal else a.__name__
                               for a in options)
        raise ConfigError(f"{key}: expected {expected}; got {type(value).__name__} {value!r}")
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # YAML 1.1 reads on/off as booleans
            value = "on" if value else "off"
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads `2e-4` as a string
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def section(params: Params, name: str) -> dict[str, Any]:
    """One section as a plain dict (for metrics files and reports)."""
    return dataclasses.asdict(getattr(params, name))
