"""The report's charts, drawn with matplotlib from plain rows and dicts. Each function writes one PNG."""

from __future__ import annotations

from pathlib import Path

from medical_r1.model.backends import REGISTRY
from medical_r1.evaluation.metrics import LOSSES, rate_keys

BASE_COLOR, TUNED_COLOR, LR_COLOR = "#9aa5b1", "#1f6feb", "#d97706"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def loss_curve(steps: list[dict], evals: list[dict], path: Path) -> None:
    """Train loss per step, held-out loss points, and the learning rate on a second axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], color=TUNED_COLOR, label="train loss")
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o", color="black",
                label="held-out loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per token)")
    lr_axis = ax.twinx()
    lr_axis.plot([r["step"] for r in steps], [r["learning_rate"] for r in steps], "--", color=LR_COLOR,
                 label="learning rate")
    lr_axis.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels(), lr_axis.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="upper right")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    _save(fig, path)


def rl_curves(steps: list[dict], path: Path) -> None:
    """GRPO per step: reward, accuracy and format rate; mean completion length and the truncated share."""
    plt = _pyplot()
    fig, (scores, lengths) = plt.subplots(1, 2, figsize=(11, 4))
    x = [r["step"] for r in steps]
    for column, style, color in (("reward", "-", TUNED_COLOR), ("accuracy", "--", "black"),
                                 ("format_rate", ":", LR_COLOR)):
        scores.plot(x, [r[column] for r in steps], style, color=color, label=column.replace("_", " "))
    scores.set(xlabel="GRPO step", ylabel="share of completions", ylim=(-0.02, 1.02), title="Reward")
    scores.legend(loc="upper left")
    lengths.plot(x, [r["completion_length"] for r in steps], color=TUNED_COLOR, label="mean completion length")
    lengths.set(xlabel="GRPO step", ylabel="new tokens", title="Completions")
    truncated = lengths.twinx()
    truncated.plot(x, [r["truncated"] for r in steps], "--", color=LR_COLOR, label="truncated (no EOS)")
    truncated.set(ylabel="share truncated", ylim=(-0.02, 1.02))
    lines = lengths.get_legend_handles_labels(), truncated.get_legend_handles_labels()
    lengths.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="upper left")
    for ax in (scores, lengths):
        ax.grid(alpha=0.3)
    _save(fig, path)


def _memory(metrics: dict) -> tuple[float, str]:
    if "peak_gpu_reserved_gib" in metrics:
        return metrics["peak_gpu_reserved_gib"], "peak GPU memory reserved (GiB)"
    return metrics.get("peak_rss_gib", 0.0), "peak process memory, RSS (GiB)"


def throughput_memory(step_times: list[dict], backend: str, device: str, train: dict, evaluation: dict,
                      path: Path) -> None:
    """Training tokens/s per step, and peak memory of the train and evaluate stages (their perf.json; `evaluation`
    maps base and tuned to theirs)."""
    plt = _pyplot()
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    speed.plot([r["step"] for r in step_times], [r["tokens_per_second"] for r in step_times], color=TUNED_COLOR,
               label="per logged step")
    speed.axhline(train["tokens_per_second"], color="black", linestyle="--",
                  label=f"whole run: {train['tokens_per_second']:,.0f} tokens/s")
    speed.set_xlabel("optimizer step")
    speed.set_ylabel("training throughput (non-pad tokens/s)")
    speed.set_title(f"Throughput ({backend} on {device})")
    speed.legend(loc="lower right")
    speed.grid(alpha=0.3)
    train_mem, label = _memory(train)
    peaks = [train_mem, _memory(evaluation["base"])[0], _memory(evaluation["tuned"])[0]]
    bars = memory.bar(["train", "evaluate base", "evaluate tuned"], peaks, color=[TUNED_COLOR, BASE_COLOR, TUNED_COLOR],
                      label="peak memory")
    memory.bar_label(bars, fmt="%.2f")
    memory.set_ylim(0, max(*peaks, 1e-3) * 1.3)
    memory.set_ylabel(label)
    memory.set_xlabel("stage")
    memory.set_title("Peak memory")
    memory.legend(loc="upper right")
    _save(fig, path)


def before_after(metrics: dict, path: Path) -> None:
    """Base vs tuned as grouped bars: generation rates (0-1) and held-out losses."""
    plt = _pyplot()
    fig, (rates, losses) = plt.subplots(1, 2, figsize=(11, 4.5))
    shown_rates = rate_keys({key.removeprefix("base."): value for key, value in metrics.items() if key.startswith("base.")})
    for ax, names, ylabel in ((rates, shown_rates, "share of generations / accuracy / F1 (0-1)"),
                              (losses, LOSSES, "loss (nats per token)")):
        xs = range(len(names))
        for offset, model, color in ((-0.2, "base", BASE_COLOR), (0.2, "tuned", TUNED_COLOR)):
            bars = ax.bar([x + offset for x in xs], [metrics[f"{model}.{n}"] for n in names], width=0.4,
                          color=color, label=model)
            ax.bar_label(bars, fmt="%.2f", fontsize=8)
        ax.set_xticks(list(xs), [n.replace("_", " ").replace("mcq.", "MCQ ").removesuffix(".accuracy") for n in names])
        ax.set_ylabel(ylabel)
        ax.set_xlabel("metric")
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
    rates.set_ylim(0, 1.1)
    rates.set_title("Generations (higher is better)")
    losses.set_title("Held-out loss (lower is better)")
    _save(fig, path)


def per_type_f1(metrics: dict, path: Path) -> None:
    """Base vs tuned NER F1 per entity type (the metrics' ner_f1.<type> keys)."""
    plt = _pyplot()
    types = sorted(key[len("base.ner_f1."):] for key in metrics if key.startswith("base.ner_f1."))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for offset, model, color in ((-0.2, "base", BASE_COLOR), (0.2, "tuned", TUNED_COLOR)):
        bars = ax.bar([x + offset for x in range(len(types))], [metrics[f"{model}.ner_f1.{t}"] for t in types],
                      width=0.4, color=color, label=model)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(types)), types)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("entity type (CMeEE)")
    ax.set_ylabel("strict F1 (0-1)")
    ax.set_title("NER F1 per entity type (higher is better)")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def bench_bars(named_results: dict[str, dict], path: Path) -> None:
    """Benchmark results side by side, in the order given, each labelled by its name: steady-state tokens/s and peak
    reserved memory, one bar each, coloured by backend."""
    plt = _pyplot()
    color_of = dict(zip(REGISTRY, (TUNED_COLOR, BASE_COLOR)))
    results = list(named_results.values())
    labels = [name.replace("-", "\n", 2) for name in named_results]
    colors = [color_of.get(r["backend"], LR_COLOR) for r in results]
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(max(10, 1.6 * len(results)), 4.8))
    for ax, key, ylabel in ((speed, "tokens_per_second", "steady-state training throughput (tokens/s)"),
                            (memory, "peak_gpu_reserved_gib", "peak GPU memory reserved (GiB)")):
        values = [r.get(key, 0) for r in results]
        bars = ax.bar(range(len(results)), values, color=colors)
        ax.set_ylim(0, max(values) * 1.25)
        ax.bar_label(bars, fmt="%.0f" if key == "tokens_per_second" else "%.1f", fontsize=8)
        ax.set_xticks(range(len(results)), labels, fontsize=7)
        ax.set_xlabel("backend / precision / settings")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in color_of.values()]
    for ax in (speed, memory):
        ax.legend(handles, list(color_of), loc="upper left", fontsize=8)
    device = results[0].get("device", "")
    speed.set_title(f"LoRA training speed, {Path(results[0]['model']).name} ({device})")
    memory.set_title("Peak memory")
    _save(fig, path)


def generation_bars(results: list[dict], path: Path) -> None:
    """Generation benchmark: new tokens/s of each variant, and the roofline of its batch as a tick."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(8, 1.5 * len(results)), 4.8))
    speeds = [r["tokens_per_second"] for r in results]
    ceilings = [r["roofline"]["tokens_per_second"] for r in results]
    colors = [TUNED_COLOR if r["name"].startswith("tuned") else BASE_COLOR for r in results]
    bars = ax.bar(range(len(results)), speeds, color=colors)
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.scatter(range(len(results)), ceilings, marker="_", s=900, color="black", label="roofline")
    ax.set_xticks(range(len(results)), [r["name"] + f"\n{r['engine']}, batch {r['batch_size']}"
                                        for r in results], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("new tokens/s (log scale)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Greedy decoding, prompts of {results[0]['prompt_tokens_mean']:.0f} tokens on average, "
                 f"{results[0]['max_new_tokens']} new tokens ({results[0].get('device', '')})")
    _save(fig, path)
