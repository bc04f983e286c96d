"""The base model a run fine-tunes, written once by prepare to models/base/.

For `model.name: tiny` that directory holds the whole model: a BPE tokenizer trained on the prepared
training texts and a seeded random Llama. With `model.init: random` it holds model.name's architecture
with seeded random weights (for speed and memory runs: no real weights needed) and the model's own
tokenizer, or a BPE trained like tiny's when the model directory has none. For a pretrained hub id or
local directory it holds the model's tokenizer (so data formatting and token statistics use exactly it)
and base.json saying where the weights are; the backend loads them in train and evaluate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from medical_r1 import UserError, files, runtime
from medical_r1.model import tiny

BASE_FILE = "base.json"
TRAINED_ON = "trained_on.json"
"""In an adapter's folder: the fingerprint of the base it was trained on (`fingerprint`)."""
SAMPLES, SAMPLE_BYTES = 16, 1 << 16
"""A weights file enters the fingerprint as its header and this many evenly spaced slices of this many bytes."""


@dataclass(frozen=True)
class BaseModel:
    weights: str
    """A local directory (the tiny model, or a local checkpoint) or a hub id."""
    revision: str | None
    """Hub revision of the weights, if any."""
    tokenizer: str
    """Directory of the tokenizer prepare used to format and count the data."""
    trust_remote_code: bool = False
    """Whether the model may run its own code (model.trust_remote_code)."""
    init: str = "pretrained"
    """`random` when the weights are seeded noise (tiny, or model.init: random); metrics carry it as `weights`."""

    @classmethod
    def read(cls, directory: str | Path) -> "BaseModel":
        """The base prepare wrote to `directory`, its weights checked to be whole."""
        recorded = files.read_json_file(Path(directory) / BASE_FILE, "run prepare again")
        try:
            base = cls(**recorded)
        except TypeError:
            raise UserError(f"{Path(directory) / BASE_FILE}: not what prepare writes; run prepare again") from None
        require_weights(base, "run prepare again" if Path(base.weights) == Path(directory)
                        else f"copy the model to {base.weights} again")
        return base


def materialize(model_cfg, texts: list[str], seed: int, max_seq_length: int, work_dir: Path, final_dir: Path):
    """Write the base model (or its tokenizer and pointer) into `work_dir`; return the tokenizer.

    `final_dir` is where `work_dir` will be moved once the stage succeeds; base.json names it.
    """
    if model_cfg.name != "tiny":
        check_local_model(model_cfg.name, model_cfg.init)
    if model_cfg.name == "tiny":
        tokenizer = tiny.train_tokenizer(texts, model_cfg.tiny.vocab_size, max_seq_length)
        tiny.save(tiny.build_model(tokenizer, model_cfg.tiny, seed, max_seq_length), tokenizer, work_dir)
        base = BaseModel(str(final_dir), None, str(final_dir), init="random")
    elif model_cfg.init == "random":
        tokenizer = (load_tokenizer(model_cfg.name, model_cfg.revision, model_cfg.trust_remote_code)
                     if has_tokenizer(model_cfg.name) else
                     tiny.train_tokenizer(texts, model_cfg.tiny.vocab_size, max_seq_length))
        save_random_model(model_cfg.name, tokenizer, seed, work_dir)
        base = BaseModel(str(final_dir), None, str(final_dir), init="random")
    else:
        tokenizer = load_tokenizer(model_cfg.name, model_cfg.revision, model_cfg.trust_remote_code)
        save_tokenizer(tokenizer, work_dir)
        base = BaseModel(model_cfg.name, model_cfg.revision, str(final_dir), model_cfg.trust_remote_code)
    (work_dir / BASE_FILE).write_text(json.dumps(asdict(base), indent=2) + "\n")
    return tokenizer


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def check_local_model(name: str, init: str) -> None:
    """A model.name that is a local path must be a model directory: config.json, and weights unless `init: random`
    (a hub id has the form org/name; a path is what exists here, starts with / . ~, or has more than one slash)."""
    path = Path(name).expanduser()
    if not (path.exists() or name.startswith(("/", ".", "~")) or name.count("/") > 1):
        return
    if not path.is_dir():
        raise UserError(f"model.name {name!r}: no such directory" if not path.exists() else
                        f"model.name {name!r}: a file, not a model directory (config.json + weights)")
    if not (path / "config.json").is_file():
        raise UserError(f"model.name {name!r}: no config.json in this directory; point model.name at a Hugging Face "
                        "model directory")
    if init == "pretrained" and not any(next(path.glob(p), None) for p in WEIGHT_PATTERNS):
        raise UserError(f"model.name {name!r}: no weights in this directory (*.safetensors or *.bin); copy them "
                        "there, or set model.init: random for speed and memory runs")
    files.read_json_file(path / "config.json", f"copy the model to {name} again")
    if init == "pretrained":
        require_weights(BaseModel(str(path), None, str(path)), f"copy the model to {name} again")


LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")
"""Architectures whose linear layers are q/k/v/o_proj and gate/up/down_proj, with widths from config.json."""


def linear_widths(config: dict) -> dict[str, int] | None:
    """Each linear layer of a Llama-family decoder -> the smaller of its two sides (the most a LoRA rank can be);
    None for another architecture."""
    if config.get("model_type") not in LLAMA_FAMILY:
        return None
    hidden, mlp, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    head = config.get("head_dim") or hidden // heads
    q, kv = heads * head, config.get("num_key_value_heads", heads) * head
    return {"q_proj": min(hidden, q), "k_proj": min(hidden, kv), "v_proj": min(hidden, kv), "o_proj": min(q, hidden),
            "gate_proj": min(hidden, mlp), "up_proj": min(hidden, mlp), "down_proj": min(mlp, hidden)}


def check_lora(base: BaseModel, lora) -> None:
    """lora.target_modules and lora.r against the architecture in the base's config.json, before any weights load
    (a hub model's config is not here yet: PEFT checks the names when it adds the adapters)."""
    path = Path(base.weights) / "config.json"
    widths = linear_widths(json.loads(path.read_text())) if path.is_file() else None
    if widths is None:
        return
    unknown = [name for name in lora.target_modules if name not in widths]
    if unknown:
        raise UserError(f"lora.target_modules: {', '.join(unknown)} is not a linear layer of this model; "
                        f"its layers: {', '.join(widths)}")
    narrowest = min(lora.target_modules, key=widths.get)
    if lora.r > widths[narrowest]:
        raise UserError(f"lora.r: {lora.r} is more than {narrowest}'s width ({widths[narrowest]}), the most a LoRA "
                        "rank can be; lower lora.r")


def has_tokenizer(name: str) -> bool:
    return Path(name, "tokenizer_config.json").is_file()


def save_random_model(config_dir: str, tokenizer, seed: int, out_dir: Path) -> None:
    """The architecture in `config_dir` with seeded random weights (bf16 on a GPU), saved with `tokenizer`."""
    random_model(config_dir, tokenizer, seed).save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)


def random_model(config_dir: str, tokenizer, seed: int):
    """The architecture in `config_dir` with seeded random weights, on the GPU in bf16 (float32 on the CPU)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_dir)
    cuda = torch.cuda.is_available()
    with torch.device("meta"):
        size = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    if not cuda and size > 1e9:
        raise UserError(f"model.init=random with {config_dir} ({size / 1e9:.1f}B parameters) needs a CUDA GPU; "
                        "use model.name: tiny on this machine")
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    runtime.seed_all(seed)
    with torch.device("cuda" if cuda else "cpu"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)


def save_tokenizer(tokenizer, directory: Path) -> None:
    """save_pretrained without what only describes this process: transformers records `local_files_only` (true
    under HF_HUB_OFFLINE=1) in tokenizer_config.json, which would make the same run's files differ by environment."""
    tokenizer.init_kwargs.pop("local_files_only", None)
    tokenizer.save_pretrained(directory)


def load_tokenizer(name: str, revision: str | None, trust_remote_code: bool):
    """The model's own tokenizer, with a pad token distinct from EOS (else EOS is masked as padding)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(f"model.name {name!r}: not a local directory, and its tokenizer could not be loaded from the "
                        f"hub ({str(err).splitlines()[0]}); use a local model directory, or model.name: tiny "
                        "offline") from None
    if tokenizer.eos_token is None:
        raise UserError(f"model.name {name!r}: the tokenizer has no EOS token, so generations could never stop")
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        tokenizer.pad_token = _spare_token(tokenizer)
    return tokenizer


def _spare_token(tokenizer) -> str:
    vocab = tokenizer.get_vocab()
    for token in ("<|finetune_right_pad_id|>", "<|reserved_special_token_0|>", "<pad>", "<unk>"):
        if token in vocab and token != tokenizer.eos_token:
            return token
    raise UserError("the tokenizer has no pad token distinct from EOS and no reserved token to use as one; "
                    "add a pad token to the model's tokenizer")


def fingerprint(directory: Path) -> str:
    """What identifies the base in `directory`: its small files (config, tokenizer, base.json) whole, each weights file
    by its header (names, shapes, dtypes) and SAMPLES slices of its data, so that another seed or width differs
    without reading 16 GB."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        size = path.stat().st_size
        with open(path, "rb") as f:
            if path.suffix != ".safetensors" or size <= SAMPLES * SAMPLE_BYTES:
                digest.update(f.read())
                continue
            head = f.read(8)
            digest.update(head + f.read(min(int.from_bytes(head, "little"), size)))
            for i in range(SAMPLES):
                f.seek(i * (size - SAMPLE_BYTES) // (SAMPLES - 1))
                digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()


def record_base(adapter_dir: Path, base_dir: Path) -> None:
    """Write which base the adapter in `adapter_dir` was trained on."""
    (adapter_dir / TRAINED_ON).write_text(json.dumps({"base": fingerprint(base_dir)}) + "\n")


def require_adapter(adapter_dir: Path, base_dir: Path, writers: str) -> None:
    """Stop before any work unless `adapter_dir` holds a whole adapter (its JSON config, its safetensors) trained on
    this very base: prepare re-run since with another seed or model would make its scores another model's.
    `writers` names the stages that make it again."""
    remedy = f"run {writers} again (`dvc repro` does)"
    adapter_dir = Path(adapter_dir)
    files.read_json_file(adapter_dir / "adapter_config.json", remedy)
    files.check_safetensors(adapter_dir / "adapter_model.safetensors", remedy)
    path = adapter_dir / TRAINED_ON
    recorded = files.read_json_file(path, remedy) if path.is_file() else {}
    if not isinstance(recorded, dict) or recorded.get("base") != fingerprint(base_dir):
        raise UserError(f"{adapter_dir}: trained on another base than {base_dir} (prepare ran since with other model "
                        f"or seed params, or the adapter predates this record); {remedy}")


def require_weights(base: BaseModel, remedy: str) -> None:
    """Stop before any work when a local base's weights are cut off or not safetensors (a hub id is checked by
    the hub)."""
    for path in sorted(Path(base.weights).glob("*.safetensors")) if Path(base.weights).is_dir() else []:
        files.check_safetensors(path, remedy)
