import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import NETWORK_REFUSED, small, stage_env

pytestmark = pytest.mark.slow
CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_one_step_training_per_backend_writes_a_peft_adapter(workdir, backend):
    workdir.params(small({"train.backend": backend}))
    workdir.run("prepare")
    workdir.run("train")
    from safetensors.torch import load_file

    adapter = workdir / "models/adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["peft_type"]) == (16, 16, "LORA")
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in name for name in weights)
    # LoRA B starts at zero: a non-zero B means the optimizer changed the adapter.
    assert any(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)
    metrics = json.loads((workdir / "reports/train/metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["tokens_seen"] > 0
    assert all(isinstance(value, (int, float)) for value in metrics.values())  # metrics files hold numbers
    perf = json.loads((workdir / "reports/train/perf.json").read_text())
    assert perf["peak_gpu_reserved_gib" if CUDA else "peak_rss_gib"] > 0 and perf["tokens_per_second"] > 0
    run = json.loads((workdir / "reports/train/run.json").read_text())
    assert run == {"device": torch.cuda.get_device_name(0) if CUDA else "cpu", "weights": "random",
                   "gradient_checkpointing": False, "optim": "adamw_8bit" if CUDA else "adamw_torch",
                   "packing": False, "processes": 1, "rows_per_step": 2}
    steps = (workdir / "reports/train/steps.csv").read_text().splitlines()
    assert steps[0] == "step,loss,learning_rate,grad_norm,tokens_seen" and len(steps) == 3
    times = (workdir / "reports/train/step_times.csv").read_text().splitlines()
    assert times[0] == "step,tokens_per_second,seconds" and len(times) == 3
    assert list((workdir / "models/checkpoints").iterdir()) == []  # a finished run keeps no checkpoints


def test_a_run_shorter_than_its_logging_interval_reports_what_ran(workdir):
    """train.logging_steps above train.max_steps: the last step is logged anyway, and the summary counts the steps
    the trainer ran, not the rows it logged."""
    workdir.params(small({"train.max_steps": 3, "train.logging_steps": 5}))
    workdir.run("prepare")
    workdir.run("train")
    metrics = json.loads((workdir / "reports/train/metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["tokens_seen"] > 0
    assert metrics["train_loss_first"] == metrics["train_loss_final"] > 0
    steps = (workdir / "reports/train/steps.csv").read_text().splitlines()
    assert len(steps) == 2 and steps[1].startswith("3,")
    assert json.loads((workdir / "reports/train/perf.json").read_text())["tokens_per_second"] > 0


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_fit_changes_lora_weights_and_not_base_weights(workdir, backend):
    """finetune.fit, the function train and bench share: every LoRA tensor moves, no base tensor does."""
    workdir.params(small({"train.save_steps": 1}))
    workdir.run("prepare")
    out = subprocess.run([sys.executable, "-m", "tests.fit_check", backend], cwd=workdir.path, env=stage_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and NETWORK_REFUSED not in out.stderr, out.stderr[-3000:]
    n_lora, changed_lora, n_base, changed_base, logged, evaluated = map(int, out.stdout.split()[-6:])
    assert n_lora == 4 * 7 * 2 and changed_lora == n_lora  # 4 layers x 7 projections x (A, B)
    assert n_base > 0 and changed_base == 0
    assert (logged, evaluated) == (2, 2)  # a step-log row per step, held-out loss every save_steps


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU")
def test_4bit_without_gpu_is_refused_in_one_sentence(workdir):
    workdir.params(small({"train.load_in_4bit": True}))
    workdir.run("prepare")
    assert workdir.error_line("train") == (
        "error: train.load_in_4bit=true needs a CUDA GPU (bitsandbytes NF4); "
        "set train.load_in_4bit=false to train in 16/32-bit on this machine")


def test_fp8_base_keeps_each_weight_row_within_float8_precision_and_leaves_other_layers_alone():
    """train.base_precision: fp8 (medical_r1/model/fp8.to_fp8) on a tiny Llama, on the CPU: every
    projection LoRA will wrap becomes float8 with a per-row scale whose product is the weight to float8's 3
    mantissa bits; a layer LoRA leaves alone, or one already quantized (a Linear subclass), is not touched."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from medical_r1.model import fp8

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).to(torch.bfloat16)

    class QuantizedLinear(torch.nn.Linear):
        pass

    model.model.layers[1].mlp.down_proj = QuantizedLinear(64, 32, bias=False, dtype=torch.bfloat16)
    before = {name: module.weight.detach().clone() for name, module in model.named_modules()
              if isinstance(module, torch.nn.Linear)}
    assert fp8.to_fp8(model, ["q_proj", "v_proj", "down_proj"]) == 2 + 2 + 1
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        converted = name.rsplit(".", 1)[-1] in ("q_proj", "v_proj", "down_proj") and type(module) is torch.nn.Linear
        assert (module.weight.dtype == torch.float8_e4m3fn) == converted, name
        if converted:
            restored = module.weight.float() * module.weight_scale
            error = (restored - before[name].float()).abs() / before[name].float().abs().amax(dim=1, keepdim=True)
            assert module.weight_scale.shape == (module.out_features, 1) and module.compute_dtype == torch.bfloat16
            assert error.max() <= 2**-4  # half a float8_e4m3fn step at the row's largest magnitude
        else:
            assert torch.equal(module.weight, before[name]), name


def test_unsloth_fused_lora_multiplies_fp8_base_weights_in_fp8_both_ways(request):
    """Unsloth's own fused LoRA code on the CPU, with FP8 weights from fp8.to_fp8 after keep_fp8_products:
    the forward product (matmul_lora) and the backward functions (LoRA_W, LoRA_QKV, LoRA_MLP) agree with the same
    code on the weights dequantized to bf16 to the precision of FP8 operands (a few percent) and are not those
    products (the FP8 path ran); the LoRA gradients that do not go through the base weight are identical; the
    in-place backward (dX written over X) gives the same dX."""
    from types import SimpleNamespace

    from unsloth.kernels import fast_lora
    from unsloth.kernels.swiglu import _DWf_DW_dfg_traced
    from unsloth.kernels.utils import matmul_lora

    from medical_r1.model import fp8

    request.addfinalizer(fp8.keep_fp8_products())  # the patch's undo puts Unsloth's own back afterwards
    torch.manual_seed(0)
    tokens, hidden, kv, intermediate, r = 48, 64, 32, 128, 4
    bf16 = torch.bfloat16

    def fp8_projection(out_features, in_features):
        linear = torch.nn.Linear(in_features, out_features, bias=False, dtype=bf16)
        fp8.to_fp8(torch.nn.ModuleDict({"proj": linear}), ["proj"])
        dequantized = (linear.weight.float() * linear.weight_scale).to(bf16)
        lora = (torch.randn(r, in_features, dtype=bf16) * 0.1, torch.randn(out_features, r, dtype=bf16) * 0.1, 2.0)
        return (linear.weight, linear.weight_scale, lora), (dequantized, None, lora)

    def backward(function, projections, saved_after, grads, custom_after=(), inplace=False, **ctx):
        custom, saved = [], []
        for weight, quant, (a, b, s) in projections:
            custom += [weight, quant, s]
            saved += [a, b]
        ctx = SimpleNamespace(custom_saved_tensors=(*custom, *custom_after), biases=(False,) * len(projections),
                              inplace=inplace, _fwd_used_autocast=False, _dtype=bf16, **ctx)  # as custom_bwd reads
        ctx.saved_tensors = saved_after(saved)
        return function.backward(ctx, *grads)

    def relative_error(got, want):
        return ((got.float() - want.float()).norm() / want.float().norm()).item()

    x = torch.randn(1, tokens, hidden, dtype=bf16)
    o = fp8_projection(hidden, hidden)
    qkv = [fp8_projection(hidden, hidden), fp8_projection(kv, hidden), fp8_projection(kv, hidden)]
    mlp = [fp8_projection(intermediate, hidden), fp8_projection(intermediate, hidden),
           fp8_projection(hidden, intermediate)]
    e, g = torch.randn(tokens, intermediate, dtype=bf16), torch.randn(tokens, intermediate, dtype=bf16)
    d_hidden, d_kv = torch.randn(1, tokens, hidden, dtype=bf16), torch.randn(1, tokens, kv, dtype=bf16)
    cases = {
        "LoRA_W": lambda k: backward(fast_lora.LoRA_W, [o[k]], lambda s: (*s, x, None), [d_hidden],
                                     dropout_p=0.0, has_bias=False),
        "LoRA_QKV": lambda k: backward(fast_lora.LoRA_QKV, [p[k] for p in qkv], lambda s: (x, *s, None, None, None),
                                       [d_hidden, d_kv, d_kv.flip(1)], dropout_p=(0.0, 0.0, 0.0)),
        "LoRA_MLP": lambda k: backward(fast_lora.LoRA_MLP, [p[k] for p in mlp],
                                       lambda s: (*s, x, e.clone(), g.clone(), None, None, None), [d_hidden],
                                       custom_after=[_DWf_DW_dfg_traced], dropout_p=(0.0, 0.0, 0.0)),
    }
    (weight, quant, lora), (dequantized, _, _) = o
    assert 0 < relative_error(matmul_lora(x, weight, quant, *lora), matmul_lora(x, dequantized, None, *lora)) < 0.05
    for name, run in cases.items():
        in_fp8, reference = run(0), run(1)
        assert 0 < relative_error(in_fp8[0], reference[0]) < 0.05, name
        for got, want in zip(in_fp8[1:], reference[1:]):
            if want is None:
                assert got is None
            elif name == "LoRA_MLP":  # the base down product feeds every LoRA gradient of the MLP
                assert relative_error(got, want) < 0.05, name
            else:
                assert torch.equal(got, want), name
    x_overwritten = x.clone()
    in_place = backward(fast_lora.LoRA_QKV, [p[0] for p in qkv], lambda s: (x_overwritten, *s, None, None, None),
                        [d_hidden, d_kv, d_kv.flip(1)], inplace=True, dropout_p=(0.0, 0.0, 0.0))
    assert torch.equal(in_place[0], cases["LoRA_QKV"](0)[0]) and in_place[0].data_ptr() == x_overwritten.data_ptr()
    backward_weight = fast_lora.fast_dequantize(weight.t(), quant, dtype=bf16)
    assert isinstance(backward_weight, fp8.FP8Weight)
    with pytest.raises(TypeError):
        torch.add(x, backward_weight)


@pytest.mark.skipif(not CUDA, reason="the Triton kernel runs on a CUDA GPU")
def test_fp8_row_quantization_kernel_matches_the_cpu_reference():
    """fp8.quantize_rows on a GPU (one Triton kernel) against the same quantization in torch on the CPU:
    rows across 6 orders of magnitude and one of zeros, a row length that is no multiple of the kernel's block, rows
    further apart than their length, a transposed input."""
    from medical_r1.model import fp8

    torch.manual_seed(0)
    x = torch.randn(37, 3000, dtype=torch.bfloat16) * torch.logspace(-3, 3, 37).view(-1, 1)
    x[5] = 0
    for cpu in (x, x[:, :1000], x[:, :1000].t()):
        gpu_quantized, gpu_scale = fp8.quantize_rows(cpu.cuda())
        quantized, scale = fp8.quantize_rows(cpu)
        assert torch.allclose(gpu_scale.cpu(), scale, rtol=1e-6, atol=0)
        got, want = gpu_quantized.cpu().float(), quantized.float()
        differ = got != want  # a division rounded the other way: one float8 step apart at most
        step = torch.maximum(want.abs() / 8, torch.tensor(2.0**-9))  # float8_e4m3fn's smallest step near zero
        assert differ.float().mean() < 1e-3 and ((got - want).abs() <= step)[differ].all()


def test_fp8_weights_keep_their_backward_copies_through_peft_and_drop_them_with_the_model():
    """After to_fp8, PEFT's LoRA wrapping keeps every FP8 weight where its backward copy is found
    (require_fp8_weights passes); a weight cast back to bf16 is refused; the copies go when the model does, so no
    later tensor at a reused address finds a stale one."""
    import gc

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from medical_r1.model import fp8
    from medical_r1.config import PROJECTIONS

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).to(torch.bfloat16)
    expected = len(PROJECTIONS) * model.config.num_hidden_layers
    before = len(fp8._BACKWARD_WEIGHTS)
    converted = fp8.to_fp8(model, list(PROJECTIONS))
    model = get_peft_model(model, LoraConfig(r=4, target_modules=list(PROJECTIONS)))
    fp8.require_fp8_weights(model, converted)
    assert converted == expected and len(fp8._BACKWARD_WEIGHTS) == before + expected
    layer = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
    layer.weight = torch.nn.Parameter(layer.weight.to(torch.bfloat16), requires_grad=False)
    with pytest.raises(RuntimeError, match=f"left {expected - 1} of {expected} FP8 base weights"):
        fp8.require_fp8_weights(model, converted)
    del model, layer
    gc.collect()
    assert len(fp8._BACKWARD_WEIGHTS) == before
