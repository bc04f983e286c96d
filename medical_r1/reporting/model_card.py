"""The two model cards of an export (huggingface_hub ModelCard): the merged model's, at the root of the export and of
its hub repo, and the LoRA adapter's, in its `adapter/` subfolder. Each says what the model is, how to load it from
the hub repo, the prompt, how it was trained and how it scored.

Scores go into both cards' metadata as `eval_results` (one entry per model and metric: `base eval_loss`,
`tuned eval_loss`, ...), so the hub and `ModelCard.load(...).data.eval_results` read them as numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medical_r1.data import sources

CARD = "README.md"
"""A card's file name, at the root of the export (and of its hub repo) and in its adapter folder."""
ADAPTER_FOLDER = "adapter"
"""The subfolder of the export (and of its hub repo) that holds the LoRA adapter alone, with its own card."""
RANDOM_WARNING = ("> **Warning: `weights: random`.** The base model had seeded random weights (the architecture of "
                  "`{name}`, no pretrained weights). This export exists to measure and test the pipeline; it knows "
                  "no medicine and must never be used or published as a medical model.")
RANDOM_BASE = "<the run's own base: random weights, on no hub>"
"""What the adapter's code loads as its base when the base had random weights (no hub repo holds them)."""
NOT_ADVICE = ("Made by the medical-r1-lora DVC pipeline (prepare -> train -> rl -> evaluate -> export). Not medical advice: "
              "a research artifact.")


@dataclass(frozen=True)
class Export:
    """What both cards of an export tell."""

    params: Any
    """The run's params.yaml (config.load)."""
    scores: dict
    """{"base": {...}, "tuned": {...}}: evaluate's held-out scores."""
    run: dict
    """What training resolved (reports/train/run.json): device, weights, optimizer."""
    example_prompt: str
    commit: str
    repo: str | None
    """The hub repo the cards' code loads from (None: `you/<model name>`, for the reader to replace)."""

    @property
    def random(self) -> bool:
        return self.run["weights"] == "random"

    @property
    def model_name(self) -> str:
        return f"{self.params.model.name.rsplit('/', 1)[-1]}-medical-lora"

    @property
    def repo_id(self) -> str:
        return self.repo or f"you/{self.model_name}"


def save(folder: Path, export: Export, dtype: str, losses: tuple[float, float]) -> None:
    """Write both cards into an export folder: the merged model's at its root, the adapter's (replacing the one PEFT
    wrote) in its adapter folder."""
    build(export, dtype, losses).save(folder / CARD)
    build_adapter(export).save(folder / ADAPTER_FOLDER / CARD)


def build(export: Export, dtype: str, losses: tuple[float, float]):
    """The card at the export's root: the merged model, for plain transformers; `losses` (held-out teacher-forced
    loss with the adapter, and merged) is the merge check."""
    use = (python_block(merged_code(export)) + f"\n\n`{ADAPTER_FOLDER}/` holds the LoRA adapter alone (PEFT format, "
           "with its own card), for those who keep the base:\n\n" + adapter_use(export))
    return card(export, "transformers", export.model_name,
                f"A LoRA fine-tune of `{export.params.model.name}` on medical chain-of-thought data, merged into its "
                "base: it loads with plain transformers, no PEFT or Unsloth needed.", use,
                [*training_rows(export), merged_row(export.params.train.load_in_4bit, dtype, losses)])


def build_adapter(export: Export):
    """The card in the export's adapter/ folder: the LoRA adapter alone, loaded with PEFT onto its base."""
    use = (adapter_use(export) + "\n\nThe adapter merged into the base, for plain transformers, is at the repo's root: "
           f'`AutoModelForCausalLM.from_pretrained("{export.repo_id}")`.')
    return card(export, "peft", f"{export.model_name}: the LoRA adapter",
                f"The LoRA adapter (PEFT format) of a fine-tune of `{export.params.model.name}` on medical "
                "chain-of-thought data, exactly as trained: load it onto its base.", use, training_rows(export))


def card(export: Export, library_name: str, title: str, summary: str, use: str, rows: list[tuple[str, Any]]):
    """A card of the export for `library_name`: metadata, `title`, the warning of random weights, `summary`, the
    `use` section, the prompt, the training table of `rows` and the evaluation."""
    from huggingface_hub import ModelCard

    body = "\n\n".join([
        f"# {title}",
        *([RANDOM_WARNING.format(name=export.params.model.name)] if export.random else []),
        f"{summary} {NOT_ADVICE}",
        "## Use\n\n" + use,
        "## Prompt\n\nThe model answers in the R1 format: its reasoning, `</think>`, then the answer. Prompt it "
        "with the template it was trained on, e.g.\n\n```\n" + export.example_prompt + "\n```",
        "## Training\n\n" + markdown_table(["", ""], ["---", "---"], rows),
        "## Evaluation (held-out rows)\n\n" + results_table(export.scores),
    ])
    return ModelCard(f"---\n{card_data(export, library_name).to_yaml()}\n---\n\n{body}\n")


def card_data(export: Export, library_name: str):
    """The card's metadata: base model (pretrained bases only), dataset, library, tags, the scores."""
    from huggingface_hub import ModelCardData

    data, name = export.params.data, export.params.model.name
    return ModelCardData(
        model_name=export.model_name, base_model=None if export.random else name,
        datasets=[dataset_id(data)] if data.source.startswith(sources.HUB_PREFIX) else None,
        license="other", library_name=library_name, pipeline_tag="text-generation",
        tags=["medical", "reasoning", "lora", "dvc", export.params.train.backend]
        + (["random-weights"] if export.random else []),
        eval_results=eval_results(export.scores, data))


def dataset_id(data) -> str:
    """The dataset as the card names it: the hub id, or the local file."""
    return data.source.removeprefix(sources.HUB_PREFIX)


def eval_results(scores: dict, data) -> list:
    from huggingface_hub import EvalResult

    return [EvalResult(task_type="text-generation", dataset_type=dataset_id(data), dataset_name=dataset_id(data),
                       dataset_config=data.config, dataset_split="held-out rows", metric_type=key,
                       metric_name=f"{model} {key}", metric_value=value)
            for model, values in scores.items() for key, value in values.items()]


def python_block(code: str) -> str:
    return f"```python\n{code}\n```"


def merged_code(export: Export) -> str:
    """Loading the merged model and its tokenizer from the hub repo."""
    return ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{export.repo_id}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{export.repo_id}")')


def adapter_use(export: Export) -> str:
    """Loading the base and the adapter from the repo's subfolder onto it; for a QLoRA run, how to quantize the base
    as training saw it."""
    model = export.params.model
    base = (f'"{RANDOM_BASE}"' if export.random
            else f'"{model.name}"' + (f', revision="{model.revision}"' if model.revision else ""))
    code = ("from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f"base = AutoModelForCausalLM.from_pretrained({base})\n"
            f'model = PeftModel.from_pretrained(base, "{export.repo_id}", subfolder="{ADAPTER_FOLDER}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{export.repo_id}")')
    quantized = ("\n\nThe adapter was trained on the base quantized to NF4 (QLoRA): to run it as trained, load the base "
                 "with `quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\", "
                 "bnb_4bit_use_double_quant=True)`.")
    return python_block(code) + (quantized if export.params.train.load_in_4bit else "")


def training_rows(export: Export) -> list[tuple[str, Any]]:
    """The training table: base model, data, LoRA, SFT and RL params, where it ran, the commit."""
    params, run = export.params, export.run
    data, lora, train, model = params.data, params.lora, params.train, params.model
    return [("base model", f"`{model.name}`" + (f" at revision `{model.revision}`" if model.revision else "")),
            ("weights", run["weights"]),
            ("data", f"`{data.source}`" + (f", config `{data.config}`" if data.config else "")
             + (f", revision `{data.revision}`" if data.revision else "")),
            ("task", data.task), ("backend", train.backend), ("4-bit base (QLoRA)", train.load_in_4bit),
            ("LoRA", f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, rsLoRA={lora.use_rslora}, on "
                     f"{', '.join(lora.target_modules)}"),
            ("training", f"{train.max_steps} steps x {train.per_device_train_batch_size} rows x "
                         f"{train.gradient_accumulation_steps} accumulation, lr {train.learning_rate:g} "
                         f"({train.lr_scheduler_type}, {train.warmup_steps} warm-up), {run['optim']}, max length "
                         f"{train.max_seq_length}, seed {params.seed}"),
            ("reinforcement learning", rl_row(params.rl)), ("trained on", run["device"]), ("commit", export.commit)]


def rl_row(rl) -> str:
    if rl.max_steps == 0:
        return "none (SFT alone)"
    return (f"GRPO ({rl.loss_type}), {rl.max_steps} steps x {rl.prompts_per_step} questions x {rl.num_generations} "
            f"completions of up to {rl.max_new_tokens} tokens, reward `{rl.reward}`, lr {rl.learning_rate:g}, "
            f"beta {rl.beta:g}, on `{rl.source}`")


def merged_row(load_in_4bit: bool, dtype: str, losses: tuple[float, float]) -> tuple[str, str]:
    """The merged weights' dtype and the merge check, with a warning when rounding took part of the adapter away."""
    with_adapter, merged = losses
    return ("merged weights", dtype + (", merged into the base dequantized from NF4 to 16-bit" if load_in_4bit else "")
            + f"; held-out loss {merged:.5f} merged, {with_adapter:.5f} with the adapter as LoRA layers"
            + (f" (16-bit rounding took part of the adapter away: for exact results use `{ADAPTER_FOLDER}/`)"
               if abs(merged - with_adapter) > 1e-3 else ""))


def results_table(scores: dict) -> str:
    return markdown_table(["metric", "base", "tuned"], ["---", "---:", "---:"],
                          [(key, value, scores["tuned"].get(key)) for key, value in scores["base"].items()])


def markdown_table(header: list[str], alignment: list[str], rows: list[tuple]) -> str:
    return "\n".join(f"| {' | '.join(map(str, cells))} |" for cells in [header, alignment, *rows])
