"""report.md: the params, the training summary, base vs tuned, sample generations side by side."""

from __future__ import annotations

from medical_r1.evaluation import references
from medical_r1.evaluation.metrics import LOSSES, RATES

SAMPLES_SHOWN = 3
SHOWN_METRICS = (*LOSSES, "perplexity", *RATES, "mean_generated_tokens", "generation_tokens_per_second")
"""Rows of the base-vs-tuned table where present (generation speed comes from reports/eval/*/perf.json), followed
by the detail keys of NER (per entity type); MCQ sets have their own section."""
DETAIL_PREFIXES = ("base.ner_",)
COUNTS = {"prompts_cut": "held-out prompts cut to the model's length"}
"""Counts of what evaluation lost, said in a line under the table (a "change" of a count means nothing)."""


def cell(text: str, limit: int = 700) -> str:
    text = text if len(text) <= limit else text[:limit] + " …"
    return text.replace("|", "\\|").replace("\n", "<br>")


def params_table(seed: int, model_name: str, task: str, source: str, lora, train) -> list[str]:
    rows = [("model", model_name), ("task", task), ("data", source),
            ("backend", train.backend), ("4-bit", train.load_in_4bit),
            ("LoRA", f"r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, rsLoRA={lora.use_rslora}"),
            ("targets", ", ".join(lora.target_modules)),
            ("steps x batch x accumulation", f"{train.max_steps} x {train.per_device_train_batch_size} x "
                                             f"{train.gradient_accumulation_steps}"),
            ("learning rate", f"{train.learning_rate:g} ({train.lr_scheduler_type}, warmup {train.warmup_steps})"),
            ("max_seq_length", train.max_seq_length), ("seed", seed)]
    return ["| param | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]


def metrics_table(evaluation: dict) -> list[str]:
    lines = ["| metric | base | tuned | change |", "| --- | ---: | ---: | ---: |"]
    shown = [name for name in SHOWN_METRICS if f"base.{name}" in evaluation]
    details = sorted(k[len("base."):] for k in evaluation
                     if k.startswith(DETAIL_PREFIXES) and k[len("base."):] not in COUNTS)
    for name in dict.fromkeys(shown + details):
        base, tuned = evaluation[f"base.{name}"], evaluation[f"tuned.{name}"]
        change = "" if None in (base, tuned) else f"{tuned - base:+,.4g}"  # None: perplexity past 1e21
        lines.append(f"| {name.replace('_', ' ')} | {number(base)} | {number(tuned)} | {change} |")
    return lines


def counts_line(evaluation: dict) -> list[str]:
    found = [f"{label} {evaluation[f'base.{key}']} / {evaluation[f'tuned.{key}']}"
             for key, label in COUNTS.items() if f"base.{key}" in evaluation]
    return [f"Base / tuned: {'; '.join(found)}.", ""] if found else []


def protocol_line(protocol) -> str:
    decoding = ("greedy decoding" if protocol.decoding == "greedy" else
                f"sampled pass@1 over {protocol.samples} samples per question (temperature {protocol.temperature:g}, "
                f"top-p {protocol.top_p:g}, seeded)")
    first = f", the first {protocol.max_questions:,} questions of each set" if protocol.max_questions else ""
    return (f"Protocol: {decoding}, {protocol.max_new_tokens:,} new tokens per question (thinking included){first}; "
            "the answer is read after `</think>` by the rules in docs/tasks.md. Accuracy in %.")


def mcq_section(scores: dict, protocol, caveat: str | None) -> list[str]:
    """Each scored set for base and tuned beside the published reference rows, then what each set lost."""
    runs = {model: by_model.get("mcq", {}) for model, by_model in scores.items()}
    sets = list(runs["base"]) + [name for name in references.SETS if name not in runs["base"]]
    named = [references.SETS.get(name, name) for name in sets]
    lines = ["## Medical multiple choice", "", protocol_line(protocol), ""]
    if caveat:
        lines += [f"> **No medical result.** {caveat}", ""]
    lines += ["| model | " + " | ".join(named) + " | source | protocol |",
              "| --- | " + " | ".join("---:" for _ in sets) + " | --- | --- |"]
    for model, scored in runs.items():
        cells = [f"{100 * scored[name]['accuracy']:.1f}" if name in scored else "–" for name in sets]
        lines.append(f"| {model} (this run) | " + " | ".join(cells) + " | this run | above |")
    for ref in references.REFERENCES:
        cells = [f"{ref.accuracy[name]:.1f}" if name in ref.accuracy else "–" for name in sets]
        lines.append(f"| {ref.model} | " + " | ".join(cells) + f" | {ref.source} | {references.PROTOCOL} |")
    lines += ["", "| set (base / tuned) | questions x samples | no letter | truncated chains | thinking tokens | "
                  "prompts cut | rows skipped | duplicates |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in runs["base"]:
        base, tuned = runs["base"][name], runs["tuned"][name]
        pair = [f"{100 * base[key]:.1f}% / {100 * tuned[key]:.1f}%" for key in ("no_letter", "truncated")] + [
            f"{number(base[key])} / {number(tuned[key])}"
            for key in ("thinking_tokens", "prompts_cut", "rows_skipped", "duplicates")]
        lines.append(f"| {references.SETS.get(name, name)} | {base['questions']} x {base['samples']} | "
                     + " | ".join(pair) + " |")
    return lines + [""]


def number(value: float | None) -> str:
    return "> 1e21" if value is None else f"{value:,.4g}"


def samples_section(samples: list[dict]) -> list[str]:
    lines = []
    for i, sample in enumerate(samples[:SAMPLES_SHOWN], start=1):
        lines += [f"**Sample {i}.** {cell(sample['question'])}", "",
                  f"*Reference answer:* {cell(sample['reference'])}", "",
                  "| base | tuned |", "| --- | --- |", f"| {cell(sample['base'])} | {cell(sample['tuned'])} |", ""]
    return lines


def rl_section(rl, metrics: dict, perf: dict) -> list[str]:
    """The GRPO step: what ran, how the reward moved, where its time went; one line when it did not run."""
    if metrics["steps"] == 0:
        return ["## Reinforcement learning", "", "None: rl.max_steps is 0, so the tuned model is the SFT adapter.", ""]
    kl = f", KL {metrics['kl_final']}" if "kl_final" in metrics else ""
    return [
        "## Reinforcement learning", "",
        f"GRPO ({rl.loss_type}, beta {rl.beta:g}) from the SFT adapter: {metrics['steps']} steps x "
        f"{rl.prompts_per_step} questions x {rl.num_generations} completions of up to {rl.max_new_tokens} tokens "
        f"(temperature {rl.temperature:g}, top-p {rl.top_p:g}, rollouts from the {rl.engine} engine) on "
        f"{metrics['problems']} questions of `{rl.source}` ({metrics['in_eval']} dropped as evaluation questions, "
        f"{metrics['rows_skipped']} skipped, {metrics['too_long']} too long). Reward `{rl.reward}`: 1 for the right "
        "answer after a closed `</think>`.", "",
        f"Reward {metrics['reward_first']} at the first step (the SFT policy) → {metrics['reward_final']} at the "
        f"last; there, format rate {metrics['format_rate_final']}, mean completion "
        f"{metrics['completion_length_final']} tokens, truncated {metrics['truncated_final']}{kl}. {perf['seconds']} s, "
        f"{perf['rollout_share']:.0%} of it rollouts ({perf['rollout_tokens_per_second']:,.0f} new tokens/s).", "",
        "![GRPO reward and completions](figures/rl.png)", ""]


def build(params_rows: list[str], source: str, stats: dict, train: dict, train_perf: dict, run: dict,
          evaluation: dict, samples: list[dict], model_name: str, mcq: list[str], rl: list[str]) -> str:
    tokens = stats["tokens"]
    memory = (f"{train_perf['peak_gpu_reserved_gib']} GiB GPU reserved" if "peak_gpu_reserved_gib" in train_perf
              else f"{train_perf['peak_rss_gib']} GiB RSS")
    banner = ([f"> **weights: random.** The base model has seeded random weights ({model_name}); this run "
               "measures the pipeline, speed and memory, not medical ability.", ""]
              if run["weights"] == "random" and model_name != "tiny" else [])
    lines = [
        "# Fine-tuning report", "", *banner,
        f"{stats['train_rows']} training and {stats['eval_rows']} held-out rows from `{source}` "
        f"({stats['rows_skipped']} skipped, {stats['duplicates']} duplicates; tokens per row p50 {tokens['p50']}, "
        f"p95 {tokens['p95']}, max {tokens['max']}).", "",
        "## Params", "", *params_rows, "",
        "## Training", "",
        f"Loss {train['train_loss_first']} → {train['train_loss_final']} over {train['steps']} steps "
        f"({train['tokens_seen']:,} tokens in {train_perf['train_seconds']} s: "
        f"{train_perf['tokens_per_second']:,.0f} tokens/s on {run['device']}, peak {memory}).", "",
        "![loss](figures/loss.png)", "", "![throughput and memory](figures/throughput_memory.png)", "",
        *rl,
        "## Base vs tuned", "",
        f"Held-out rows; generations greedy on {evaluation['base.samples']} questions.", "",
        *metrics_table(evaluation), "", *counts_line(evaluation), "![before and after](figures/before_after.png)", "",
        *(["![NER F1 per entity type](figures/ner_f1_by_type.png)", ""] if "base.ner_f1" in evaluation else []),
        *mcq,
        "## Sample generations", "", *samples_section(samples),
    ]
    return "\n".join(lines)
