"""params.yaml -> typed, validated config sections. The only module that reads params.yaml.

The dataclasses below say what each knob is and check it; they hold no values. Every value, defaults
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
from typing import Any, Literal

import yaml

from medical_r1.model.backends import REGISTRY
from medical_r1.training.rewards import REWARDS
from medical_r1.schema import ConfigError, build, set_dotted, transformers_names, value_at

PARAMS_FILE = Path("params.yaml")
CONF = Path(__file__).resolve().parents[1] / "conf"
"""Every knob and its only default (config.yaml), and the named recipes (recipe/*.yaml)."""
Backend = Literal[tuple(REGISTRY)]
"""The values of train.backend: the backends' registry (medical_r1/model/backends/)."""


@dataclass
class DataConfig:
    task: Literal["medical_cot", "cmeee_ner"]
    """What the rows are: medical chain-of-thought (Question, Complex_CoT, Response), or CMeEE-V2 entities."""
    source: str
    """`sample` (the task's bundled sample), a local .json/.jsonl/.parquet/.csv path, or `hf:<dataset id>`."""
    config: str | None
    """Hub dataset config, e.g. en, zh, en_mix, zh_mix; for `sample`: en or zh (medical_cot)."""
    revision: str | None
    """Hub dataset revision (commit or tag) to pin (hub sources only)."""
    split: str
    """Hub dataset split to read (hub sources only)."""
    max_rows: int | None
    """Keep at most this many valid rows (before the train/eval split); null keeps all."""
    eval_rows: int
    """Rows held out for evaluation."""
    on_bad_row: Literal["error", "skip"]
    """A row failing validation stops prepare (`error`) or is skipped and counted (`skip`)."""
    on_long_row: Literal["truncate", "skip"]
    """A row longer than train.max_seq_length is truncated by the trainer or skipped here; both are counted."""


@dataclass
class TinyModelConfig:
    vocab_size: int
    """BPE vocabulary size of the tokenizer trained on the prepared texts."""
    hidden_size: int
    """Width of the tiny Llama."""
    intermediate_size: int
    """MLP width of the tiny Llama."""
    num_hidden_layers: int
    """Decoder layers."""
    num_attention_heads: int
    """Query heads."""
    num_key_value_heads: int
    """Key/value heads (grouped-query attention, as in Llama 3)."""


@dataclass
class ModelConfig:
    name: str
    """`tiny` (built from model.tiny), a hub id, or a local directory with a Hugging Face model."""
    revision: str | None
    """Hub revision (commit or tag) of the model; ignored for tiny and local directories."""
    init: Literal["pretrained", "random"]
    """`random`: the architecture of model.name with seeded random weights, for speed/memory runs only."""
    trust_remote_code: bool
    """Allow a hub model to run its own Python code. Off unless you trust the repository."""
    tiny: TinyModelConfig
    """Shape of the embedded default model (its vocab_size also sizes the BPE of random-init models)."""


@dataclass
class LoraConfig:
    r: int
    """LoRA rank."""
    alpha: int
    """LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rsLoRA)."""
    dropout: float
    """Dropout on the LoRA input."""
    target_modules: list[str]
    """Linear layers that get adapters."""
    use_rslora: bool
    """Rank-stabilised scaling alpha / sqrt(r)."""


@dataclass
class TrainConfig:
    backend: Backend
    """`unsloth` (FastLanguageModel) or `hf` (transformers + peft), both trained by TRL's SFTTrainer."""
    load_in_4bit: bool
    """QLoRA: load the base model in 4-bit NF4 (needs a CUDA GPU)."""
    base_precision: Literal["bf16", "fp8"]
    """Weights of the frozen base's LoRA-targeted projections: `bf16`, or `fp8` (scaled float8 copies, forward and
    activation-gradient products in FP8, the memory of bf16; unsloth backend on a GPU with FP8 units, compute
    capability 8.9+)."""
    max_seq_length: int
    """Longest training sequence in tokens; longer rows are truncated (prepare counts them)."""
    per_device_train_batch_size: int
    """Rows per device per forward pass."""
    gradient_accumulation_steps: int
    """Forward passes per optimizer step."""
    max_steps: int
    """Optimizer steps."""
    learning_rate: float
    """Peak learning rate."""
    warmup_steps: int
    """Linear warm-up steps."""
    optim: str
    """A transformers optimizer name, or `auto`: adamw_8bit on a CUDA GPU, adamw_torch elsewhere."""
    weight_decay: float
    """AdamW weight decay."""
    lr_scheduler_type: str
    """Learning-rate schedule after warm-up."""
    lr_scheduler_kwargs: dict[str, float]
    """Arguments the schedule needs beyond warm-up and steps, e.g. {min_lr_rate: 0.1} for cosine_with_min_lr (stages/
    check.py builds the schedule once and says what is missing)."""
    logging_steps: int
    """Log loss, learning rate and throughput every this many steps (each log makes the CPU wait for the GPU)."""
    save_steps: int
    """Write a checkpoint to models/checkpoints every this many steps."""
    packing: bool
    """Pack several rows into one max_seq_length sequence (TRL packing)."""
    gradient_checkpointing: Literal["auto", "on", "off"]
    """Recompute activations in backward: `on`, `off`, or `auto`: off when the estimated peak of the largest
    micro-batch without recomputation fits in 70% of the GPU (medical_r1/model/memory.py), on otherwise; off on the CPU."""
    resume: Literal["auto", "never"]
    """`auto`: continue from the newest complete checkpoint of this same run (same params and data)."""
    num_processes: int | Literal["auto"]
    """Data-parallel processes (DDP under torchrun), one per GPU; `auto`: every visible GPU (1 on a machine without
    one). An optimizer step then sees per_device_train_batch_size x gradient_accumulation_steps x num_processes
    rows."""


@dataclass
class RlConfig:
    max_steps: int
    """GRPO steps after SFT; 0 hands the SFT adapter on unchanged (the pipeline's results are then SFT's alone)."""
    source: str
    """Verifiable questions: `sample` (ours, data/sample/rl.jsonl), a local .json/.jsonl/.parquet/.csv file, or
    `hf:<dataset id>`; rows in an MCQ shape (MedQA, MedMCQA, PubMedQA) or open-ended (`Open-ended Verifiable
    Question`, `Ground-True Answer`, as FreedomIntelligence/medical-o1-verifiable-problem)."""
    config: str | None
    """Hub config of an `hf:` source."""
    split: str
    """Split of an `hf:` source."""
    revision: str | None
    """Hub revision (commit or tag) of an `hf:` source to pin."""
    max_rows: int | None
    """Keep at most this many usable questions (after dropping those of the evaluation sets); null keeps all."""
    reward: Literal[tuple(REWARDS)]
    """What a completion earns (medical_r1/training/rewards.py): `answer`, 1 for the right answer after a closed
    `</think>`, else 0 (format alone earns nothing)."""
    prompts_per_step: int
    """Questions per GRPO step; each gets num_generations completions (the step's batch is their product)."""
    num_generations: int
    """Completions per question, compared with each other for the advantage (GRPO needs at least 2)."""
    max_new_tokens: int
    """Completion budget per rollout, thinking included."""
    temperature: float
    """Rollout sampling temperature; 0: greedy (every completion of a question alike, so no learning signal: for
    comparing the engines only)."""
    top_p: float
    """Nucleus of the rollout sampling."""
    learning_rate: float
    """Constant learning rate of the adapter during GRPO."""
    beta: float
    """KL penalty towards the SFT adapter (a frozen copy of it); 0 loads no reference."""
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"]
    """TRL's GRPO loss aggregation (trl.GRPOConfig.loss_type)."""
    engine: Literal["static", "generate"]
    """Rollouts from `static`, our engine (seeded nucleus sampling, a CUDA graph per decode step on a GPU), or
    `generate`: TRL's own path through transformers' generate(), the reference."""


@dataclass
class McqSetConfig:
    source: str
    """`sample` (our bundled questions, data/sample/mcq.jsonl), a local .json/.jsonl/.parquet/.csv copy, or
    `hf:<dataset id>`; rows in the MedQA, MedMCQA or PubMedQA shape."""
    config: str | None
    """Hub config of an `hf:` source (PubMedQA: pqa_labeled); not used for a local copy."""
    split: str
    """Split of an `hf:` source that is scored; not used for a local copy."""
    revision: str | None
    """Hub revision (commit or tag) of an `hf:` source; null: the hub's newest."""
    size: int | None
    """Questions the set holds as published; a copy with another count is refused (null: not checked)."""


@dataclass
class McqProtocolConfig:
    max_new_tokens: int
    """New tokens per question, thinking included (the R1 recipes: 2,048, as HuatuoGPT-o1 and MedReason score)."""
    decoding: Literal["greedy", "sampled"]
    """`greedy`, or `sampled`: `samples` seeded samples per question at `temperature` / `top_p` (our engine)."""
    samples: int
    """Samples per question with `sampled` decoding (accuracy is pass@1: the mean over them); 1 with greedy."""
    temperature: float
    """Sampling temperature (DeepSeek recommends 0.6 for its R1 distills)."""
    top_p: float
    """Nucleus: sample among the most likely tokens until their probability reaches top_p (DeepSeek: 0.95)."""
    max_questions: int | None
    """Score the first this many questions of each set (a quick look, not a paper's number); null scores all."""


@dataclass
class EvalConfig:
    num_samples: int
    """Held-out questions to generate answers for (at most data.eval_rows are available)."""
    max_new_tokens: int
    """Generation budget per held-out question (reasoning + answer)."""
    batch_size: int | Literal["auto"]
    """Prompts per generation batch and rows per loss batch; `auto`: the most that fit the free memory."""
    engine: Literal["static", "generate"]
    """`static`: static KV cache, one CUDA graph per decode step on a GPU; `generate`: transformers' generate()."""
    num_processes: int | Literal["auto"]
    """Processes that share the batches, one per GPU; `auto`: every visible GPU (1 without one). The results are
    byte-identical to one process's."""
    mcq: list[str]
    """Multiple-choice sets to score, by name from eval.mcq_sets, each reported apart; [] scores none."""
    mcq_sets: dict[str, McqSetConfig]
    """The multiple-choice sets known by name, each pinned to its source, split, revision and size."""
    mcq_protocol: McqProtocolConfig
    """How every MCQ set is decoded and read (docs/tasks.md: the rules that read the answer)."""


@dataclass
class GenerateBenchConfig:
    prompts: int
    """Prompts generated for at the auto batch (MedQA's test set has 1,273 questions)."""
    prompt_chars_median: int
    """Median question + options length in characters before the template (MedQA's test set: 819)."""
    prompt_chars_p95: int
    """95th percentile of that length (MedQA: 1,350); lengths are log-normal between the two."""
    prompt_chars_max: int
    """Longest question (MedQA: 3,640): the longest prompt has it, none is longer."""
    max_new_tokens: int
    """New tokens per prompt; EOS never ends a generation early, so every prompt costs the whole budget."""
    batch_size: int
    """The fixed batch compared with the auto batch (its first `batch_size` prompts)."""
    peak_bandwidth_tbs: float
    """Memory bandwidth of the GPU for the roofline, TB/s (H200 datasheet; H100 SXM: 3.35)."""


@dataclass
class BenchConfig:
    skip_steps: int
    """Optimizer steps run before timing starts (compilation, autotuning, allocator warm-up)."""
    measure_steps: int
    """Optimizer steps timed for the steady-state figures."""
    profile_steps: int
    """Steps profiled after the timed ones (GPU time by kernel kind, host syncs; a CUDA GPU); 0: none."""
    weights_dir: str
    """Where the base the benchmark trains is written once and reused while its params stay (outside the repo)."""
    memory_budget_gib: float
    """Budget for the longest-sequence probe (a 24 GB card)."""
    seq_probe_lengths: list[int]
    """Sequence lengths probed, shortest first, with one batch-1 training step each."""
    peak_tflops: float
    """Dense bf16 peak of the GPU for MFU (H100/H200 SXM datasheet)."""
    generate: GenerateBenchConfig
    """The decoding benchmark (`python -m stages.bench generate`)."""


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
