"""What each param of params.yaml is: one dataclass per section, each field with its type and a one-line docstring
(docs/params.md is generated from them). They hold no values and check only types; medical_r1/config.py reads
params.yaml into them and checks the bounds a type cannot state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medical_r1.model.backends import REGISTRY
from medical_r1.training.rewards import REWARDS

Backend = Literal[tuple(REGISTRY)]
"""The values of train.backend and rl.backend: the backends' registry (medical_r1/model/backends/)."""


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
    backend: Backend
    """Loads the policy: `hf` (transformers + peft) or `unsloth` (FastLanguageModel; with rl.engine generate only:
    Unsloth replaces the transformers forward our engine decodes through). SFT's train.backend does not bind it."""


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
