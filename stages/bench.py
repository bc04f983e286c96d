"""bench: speed and memory of the training recipe, and decoding speed, measured around the same setup -> fit the
pipeline runs. Params are composed from conf/ as `dvc exp run -S ...` composes them; bench.* says what to measure.

    python -m stages.bench run -S recipe=speed_8b -S data.source=rows.json          # the 8B recipe, one GPU
    python -m stages.bench run -S recipe=speed_8b -S train.backend=hf --name hf-bf16-b8
    python -m stages.bench run -S recipe=speed_8b -S train.base_precision=fp8 -S train.per_device_train_batch_size=16
    python -m stages.bench run -S recipe=speed_8b -S bench.profile_steps=2 --name profile-b8   # + GPU time by kernel
    python -m stages.bench run                                      # the embedded default, on this CPU
    python scripts/bench_flash_varlen.py run ...    # the same, one varlen attention call per layer on torch < 2.12
    python -m stages.bench generate -S recipe=speed_8b              # decoding: generate() vs the static engine
    python -m stages.bench generate -S recipe=speed_8b --variants base-auto tuned-auto   # MedQA-sized evaluation
    python -m stages.bench mcq-set bench.jsonl -S recipe=speed_8b  # generate's prompts as an MCQ set, to time evaluate
    python -m stages.bench grpo -S recipe=speed_8b_grpo             # GRPO steps: our rollout engine vs generate()
    python -m stages.bench chart reports/bench/*.json               # results -> reports/bench/throughput_memory.png
    python3 -m dvc repro bench/dvc.yaml                             # every measurement bench/dvc.yaml names

Reads   conf/config.yaml, conf/recipe/<recipe>.yaml and the -S overrides (not params.yaml); the rows data.* names
Writes  reports/bench/<name>.json      (run) GPU, versions, params; steady-state tokens/s (real, non-pad tokens), step
                                       time, peak allocated/reserved memory, MFU, held-out loss after the last step,
                                       longest sequence within bench.memory_budget_gib; with bench.profile_steps, GPU
                                       time by kernel kind and host syncs per step
        reports/bench/generate-<variant>.json, reports/bench/generate.png   (generate) new tokens/s, ms per step,
                                       prefill and decode time, peak memory, fraction of the roofline (weights,
                                       matrix work, KV cache); the tuned model's route and teacher-forced loss
        <path>.jsonl                   (mcq-set) generate's prompts as MCQ rows whose prompts have the same lengths:
                                       `-S eval.mcq_sets.sample.source=<path>.jsonl -S eval.mcq_sets.sample.size=null`
                                       times the evaluate stage on them
        reports/bench/grpo-<engine>.json (grpo) a GRPO step's seconds split into rollout, reward and policy update,
                                       rollout new tokens/s, peak memory; one file per rollout engine
        reports/bench/throughput_memory.png   (chart) tokens/s and peak memory of the results given
Each run is a process of its own (Unsloth patches transformers globally). Weights are whatever model.* says: the
speed recipe's are seeded random (`weights: random` in the result), written once to bench.weights_dir.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medical_r1 import UserError, config, files
from medical_r1.artifacts import BENCH_RESULTS
from medical_r1.model import precision
from medical_r1.reporting import plots
from medical_r1.speed import decoding, grpo, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "training steady state of the composed recipe"),
                            ("generate", "decoding speed, base and tuned, generate() vs the static engine"),
                            ("mcq-set", "write generate's prompts as an MCQ set (to time the evaluate stage on them)"),
                            ("grpo", "GRPO steps split into rollout, reward and update, per rollout engine")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="as `dvc exp run -S`: recipe=<name> or any param")
        if name == "run":
            command.add_argument("--name", help="result file name (default: <backend>-<precision>)")
        elif name == "mcq-set":
            command.add_argument("out", type=Path, help="the .jsonl file to write")
        elif name == "generate":
            command.add_argument("--variants", nargs="+", choices=list(decoding.VARIANTS), default=list(decoding.VARIANTS),
                                 help="what to measure (default: all, in this order)")
    chart = commands.add_parser("chart", help="draw reports/bench/throughput_memory.png from result files")
    chart.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "chart":
        draw(args.results)
    elif args.command == "generate":
        results = []
        for result in decoding.generate(config.compose(args.overrides), args.variants):
            files.write_json(BENCH_RESULTS / f"generate-{result['name']}.json", result)
            results.append(result)
        plots.generation_bars(results, BENCH_RESULTS / "generate.png")
    elif args.command == "mcq-set":
        params = config.compose(args.overrides)
        train_rows, _, _ = training.inputs(params)
        files.write_jsonl(args.out, decoding.mcq_set(params.bench.generate, train_rows))
        print(f"bench mcq-set: {params.bench.generate.prompts:,} questions in {args.out}")
    elif args.command == "grpo":
        for result in grpo.measure(config.compose(args.overrides)):
            files.write_json(BENCH_RESULTS / f"{result['name']}.json", result)
            print(f"bench {result['name']}: step {result['step_seconds']} s, rollouts {result['rollout_share']:.0%} "
                  f"({result['rollout_tokens_per_second']:,.0f} new tokens/s)")
    else:
        params = config.compose(args.overrides)
        name = args.name or f"{params.train.backend}-{precision.for_training(params.train).name}"
        result = training.run(params, name)
        files.write_json(BENCH_RESULTS / f"{name}.json", result)
        print(f"bench {name}: {result['tokens_per_second']:,.0f} tokens/s, step {result['step_seconds']} s")


def draw(results: list[Path]) -> None:
    missing = [str(p) for p in results if not p.is_file()]
    if missing:
        raise UserError(f"no benchmark result {', '.join(missing)}; run `python -m stages.bench run ...` first")
    plots.bench_bars({p.stem: files.read_json(p) for p in results}, BENCH_RESULTS / "throughput_memory.png")


if __name__ == "__main__":
    files.run_stage(main)
