"""The model card of an export: what the model is, how it was trained, how it scored (huggingface_hub ModelCard).

Scores go into the card's metadata as `eval_results` (one entry per model and metric: `base eval_loss`,
`tuned eval_loss`, ...), so the hub and `ModelCard.load(...).data.eval_results` read them as numbers.
"""

from __future__ import annotations

from medical_r1.data import sources

RANDOM_WARNING = ("> **Warning: `weights: random`.** The base model had seeded random weights (the architecture of "
                  "`{name}`, no pretrained weights). This export exists to measure and test the pipeline; it knows "
                  "no medicine and must never be used or published as a medical model.")


def dataset_id(data) -> str:
    """The dataset as the card names it: the hub id, or the local file."""
    return data.source.removeprefix(sources.HUB_PREFIX)


def eval_results(scores: dict, data) -> list:
    from huggingface_hub import EvalResult

    return [EvalResult(task_type="text-generation", dataset_type=dataset_id(data), dataset_name=dataset_id(data),
                       dataset_config=data.config, dataset_split="held-out rows", metric_type=key,
                       metric_name=f"{model} {key}", metric_value=value)
            for model, values in scores.items() for key, value in values.items()]


def build(params, scores: dict, run: dict, dtype: str, example_prompt: str, commit: str,
          losses: tuple[float, float]):
    """The card of the export of these params, with `scores` ({"base": {...}, "tuned": {...}}) as its results and
    `losses` (held-out teacher-forced loss with the adapter, and merged) as the merge check."""
    from huggingface_hub import ModelCard, ModelCardData

    data, lora, train, name = params.data, params.lora, params.train, params.model.name
    random = run["weights"] == "random"
    card_data = ModelCardData(
        model_name=f"{name.rsplit('/', 1)[-1]}-medical-lora", base_model=name if not random else None,
        datasets=[dataset_id(data)] if data.source.startswith(sources.HUB_PREFIX) else None,
        license="other", library_name="transformers", pipeline_tag="text-generation",
        tags=["medical", "reasoning", "lora", "dvc", train.backend] + (["random-weights"] if random else []),
        eval_results=eval_results(scores, data))
    rows = [("base model", f"`{name}`" + (f" at revision `{params.model.revision}`" if params.model.revision else "")),
            ("weights", run["weights"]), ("data", f"`{data.source}`" + (f", config `{data.config}`" if data.config
                                                                        else "")
                                         + (f", revision `{data.revision}`" if data.revision else "")),
            ("task", data.task), ("backend", train.backend), ("4-bit base (QLoRA)", train.load_in_4bit),
            ("LoRA", f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, rsLoRA={lora.use_rslora}, on "
                     f"{', '.join(lora.target_modules)}"),
            ("training", f"{train.max_steps} steps x {train.per_device_train_batch_size} rows x "
                         f"{train.gradient_accumulation_steps} accumulation, lr {train.learning_rate:g} "
                         f"({train.lr_scheduler_type}, {train.warmup_steps} warm-up), {run['optim']}, max length "
                         f"{train.max_seq_length}, seed {params.seed}"),
            ("merged weights", f"{dtype}" + (", merged into the base dequantized from NF4 to 16-bit"
                                             if train.load_in_4bit else "")
             + f"; held-out loss {losses[1]:.5f} merged, {losses[0]:.5f} with the adapter as LoRA layers"
             + (" (16-bit rounding took part of the adapter away: for exact results use `adapter/`)"
                if abs(losses[1] - losses[0]) > 1e-3 else "")),
            ("trained on", run["device"]), ("commit", commit)]
    table = "\n".join(["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)])
    results = "\n".join(["| metric | base | tuned |", "| --- | ---: | ---: |",
                         *(f"| {key} | {value} | {scores['tuned'].get(key)} |"
                           for key, value in scores["base"].items())])
    body = "\n\n".join([
        f"# {card_data.model_name}",
        *([RANDOM_WARNING.format(name=name)] if random else []),
        f"A LoRA fine-tune of `{name}` on medical chain-of-thought data, made by the medical-r1-lora DVC pipeline "
        "(prepare -> train -> evaluate -> export). Not medical advice: a research artifact.",
        "## Use\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'model = AutoModelForCausalLM.from_pretrained("merged")   # this folder\'s merged/ (no PEFT needed)\n'
        'tokenizer = AutoTokenizer.from_pretrained("merged")\n```\n\n'
        "`adapter/` holds the LoRA adapter alone (PEFT format) for use on the base model.",
        "## Prompt\n\nThe model answers in the R1 format: its reasoning, `</think>`, then the answer. Prompt it "
        "with the template it was trained on, e.g.\n\n```\n" + example_prompt + "\n```",
        "## Training\n\n" + table,
        "## Evaluation (held-out rows)\n\n" + results,
    ])
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")
