"""The benchmark on the CPU: the embedded default recipe measured in two timed steps (the GPU numbers come from a GPU)."""

import json
import subprocess
import sys
import warnings

import pytest
from transformers import LlamaConfig

from medical_r1.speed import flops
from medical_r1.training import timing
from tests.conftest import NETWORK_REFUSED, REPO, stage_env

SMALL_RUN = ["-S", "data.max_rows=40", "-S", "data.eval_rows=4", "-S", "model.tiny.vocab_size=512",
             "-S", "train.per_device_train_batch_size=1", "-S", "train.gradient_accumulation_steps=1",
             "-S", "bench.skip_steps=1", "-S", "bench.measure_steps=2"]
"""The embedded default recipe, smaller: 36 training rows, 4 held out, one step skipped and two timed."""


def run_bench(workdir, *args):
    out = subprocess.run([sys.executable, "-m", "stages.bench", *args], cwd=workdir.path, env=stage_env(),
                         capture_output=True, text=True, timeout=600)
    assert NETWORK_REFUSED not in out.stderr, out.stderr[-3000:]
    return out


def error_line(out) -> str:
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_bench_measures_the_recipe_on_cpu(workdir):
    weights = ["-S", f"bench.weights_dir={workdir / 'weights'}"]
    for backend, extra in (("hf", []), ("unsloth", ["-S", "train.logging_steps=2"])):
        out = run_bench(workdir, "run", *SMALL_RUN, *weights, "-S", f"train.backend={backend}", *extra)
        assert out.returncode == 0, out.stderr[-3000:]
    hf = json.loads((workdir / "reports/bench/hf-bf16.json").read_text())
    assert hf["name"] == "hf-bf16" and hf["backend"] == "hf" and hf["precision"] == "bf16"
    assert hf["weights"] == "random" and hf["measured_steps"] == 2 and hf["tokens_per_second"] > 0
    assert hf["data"]["n_rows"] == 36 and hf["params"]["per_device_train_batch_size"] == 1
    assert hf["versions"]["torch"] and hf["device"] == "cpu" and hf["held_out"]["rows"] == 4
    unsloth = json.loads((workdir / "reports/bench/unsloth-bf16.json").read_text())
    assert unsloth["data"] == hf["data"] and unsloth["params"]["logging_steps"] == 2
    assert 0 < unsloth["held_out"]["loss_after_training"] < 20
    out = run_bench(workdir, "chart", "reports/bench/hf-bf16.json", "reports/bench/unsloth-bf16.json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (workdir / "reports/bench/throughput_memory.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_grpo_step_is_split_into_rollout_reward_and_update_for_both_engines(workdir):
    out = run_bench(workdir, "grpo", *SMALL_RUN, "-S", f"bench.weights_dir={workdir / 'weights'}",
                    "-S", "rl.max_new_tokens=16")
    assert out.returncode == 0, out.stderr[-3000:]
    for engine in ("static", "generate"):
        result = json.loads((workdir / f"reports/bench/grpo-{engine}.json").read_text())
        assert (result["engine"], result["weights"], result["timed_steps"]) == (engine, "random", 2)
        assert result["completions_per_step"] == 8 and result["rollout_tokens_per_second"] > 0
        parts = result["rollout_seconds"] + result["reward_seconds"] + result["update_seconds"]
        assert parts == pytest.approx(result["step_seconds"], abs=0.01) and 0 < result["rollout_share"] < 1


@pytest.mark.slow
def test_what_needs_a_gpu_is_refused_in_one_sentence(workdir):
    weights = ["-S", f"bench.weights_dir={workdir / 'weights'}"]
    (workdir / "models").mkdir()
    (workdir / "models/configs").symlink_to(REPO / "models/configs")
    four_bit = run_bench(workdir, "run", *SMALL_RUN, *weights, "-S", "train.load_in_4bit=true")
    assert error_line(four_bit) == ("error: train.load_in_4bit=true needs a CUDA GPU (bitsandbytes NF4); set "
                                    "train.load_in_4bit=false to train in 16/32-bit on this machine")
    profile = run_bench(workdir, "run", *SMALL_RUN, *weights, "-S", "bench.profile_steps=2")
    assert error_line(profile) == ("error: bench.profile_steps profiles GPU kernels and needs a CUDA GPU; set it to "
                                   "0 on this machine")
    eight_b = run_bench(workdir, "run", "-S", "recipe=speed_8b", *weights)
    assert error_line(eight_b) == (
        "error: model.init=random with models/configs/DeepSeek-R1-Distill-Llama-8B (8.0B parameters) needs a CUDA "
        "GPU; use model.name: tiny on this machine")
    assert not (workdir / "reports").exists()


def test_flops_per_token_of_the_8b_architecture():
    config = LlamaConfig.from_pretrained(REPO / "models/configs/DeepSeek-R1-Distill-Llama-8B")
    matmul = 8_030_261_248 - 4096 * 128256  # all parameters but the embedding, less the 65 RMSNorm weights
    norms = 65 * 4096
    expected = 4 * (matmul - norms) + 6 * 0 + 6 * 32 * 4096 * 1000
    assert flops.flops_per_token(config, 0, 1000) == expected


def test_steady_state_is_measured_between_the_marked_steps():
    marks = {2: (20.0, 2000), 5: (50.0, 5000)}  # (seconds, tokens seen) at the end of steps 2 and 5
    assert timing.steady_state(marks, first=2, last=5) == {"measured_steps": 3, "tokens_per_second": 100.0,
                                                            "step_seconds": 10.0, "measured_tokens": 3000}


def test_host_syncs_are_counted_per_step_by_the_line_that_asked():
    caught = [warnings.WarningMessage("called a synchronizing CUDA operation", UserWarning, path, line)
              for path, line in [("/x/site-packages/trl/trainer/sft_trainer.py", 1641)] * 4
              + [("/repo/medical_r1/training/steplog.py", 48)] * 2 + [("/x/site-packages/other.py", 3)]]
    caught.append(warnings.WarningMessage("an unrelated warning", UserWarning, "/x/a.py", 1))
    assert timing.sync_sites(caught, steps=2) == {"trl/trainer/sft_trainer.py:1641": 2.0, "training/steplog.py:48": 1.0,
                                                 "other.py:3": 0.5}


def test_kernel_breakdown_groups_gpu_time_by_kind():
    from types import SimpleNamespace as Event

    events = [Event(key="sm90_xmma_gemm_bf16bf16_bf16f32", self_device_time_total=600.0),
              Event(key="nvjet_hsh_128x256", self_device_time_total=200.0),
              Event(key="flash_fwd_kernel", self_device_time_total=100.0),
              Event(key="_rms_layernorm_forward", self_device_time_total=60.0),
              Event(key="_cross_entropy_forward", self_device_time_total=40.0),
              Event(key="aten::mm", self_device_time_total=0.0)]  # a CPU-side op: no kernel time of its own
    result = timing.kernel_breakdown(events, steps=2)
    assert result["gpu_ms_per_step"] == 0.5
    assert result["share"]["matmul (GEMM)"] == 0.8 and result["share"]["attention"] == 0.1
    assert result["share"]["elementwise"] == 0.06 and result["share"]["cross-entropy"] == 0.04
    assert [k["kernel"] for k in result["top_kernels"]][:2] == ["sm90_xmma_gemm_bf16bf16_bf16f32", "nvjet_hsh_128x256"]


def test_the_mcq_set_of_generate_has_its_prompt_lengths():
    """`bench mcq-set` writes generate's prompts as MCQ rows whose prompts are as long: the evaluate stage, timed on
    them, decodes what the benchmark decodes."""
    from medical_r1 import config
    from medical_r1.data import prompts
    from medical_r1.data.tasks import mcq
    from medical_r1.speed import decoding

    gen = config.compose(["bench.generate.prompts=25"]).bench.generate
    words = "fever cough chest pain troponin dyspnoea anaemia sepsis lactate".split()
    rows = [{"text": " ".join(words[(i * 7 + j) % len(words)] for j in range(400))} for i in range(40)]
    windows = decoding.prompt_windows(gen, rows)
    items = [mcq.Item(**mcq.validate(row)) for row in decoding.mcq_set(gen, rows)]
    assert len(items) == len(windows) == 25
    for item, window in zip(items, windows):
        assert 0 <= len(prompts.inference_prompt(window)) - len(mcq.prompt(item)) <= 2  # at most the cut's spaces
        assert item.gold == "A" and len(item.options) == 4
