"""medical_r1/generation/ (inference, decoding, batching, sampling) on the tiny model: the static engine against
generate(), the chunked loss against full logits, merged against unmerged adapters, and `eval.batch_size: auto`
sizing."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from medical_r1 import files
from medical_r1.generation import batching, decoding, inference, sampling
from medical_r1.model import lora_decoding, memory
from medical_r1.model.base_model import BaseModel
from tests.conftest import REPO

LLAMA_8B = SimpleNamespace(**json.loads((REPO / "models/configs/DeepSeek-R1-Distill-Llama-8B/config.json").read_text()))
GIB = 2**30


@pytest.fixture
def inside(trained):
    """Run in the trained workdir (models/base/base.json names its weights relative to it)."""
    cwd = os.getcwd()
    os.chdir(trained.path)
    yield trained
    os.chdir(cwd)


def load(adapter: bool):
    """The tiny model in float32 also on a GPU: in bf16 a random model's near-tied logits let two correct kernels
    pick different tokens, which would hide what these tests compare."""
    model, tokenizer = inference.load(BaseModel.read("models/base"), Path("models/adapter") if adapter else None, False)
    return model.float(), tokenizer


@pytest.mark.parametrize("adapter", [False, True])
def test_static_engine_writes_what_generate_writes(inside, adapter, monkeypatch):
    """Same greedy tokens from both engines on 7 prompts of different lengths in batches of 3 (3 + 3 + 1: the
    static engine pads the short batch with dummy rows), the prefill cut into chunks of one or two rows."""
    monkeypatch.setattr(decoding, "PREFILL_TOKENS", 400)
    model, tokenizer = load(adapter)
    prompts = [r["prompt"] for r in files.read_jsonl("data/prepared/eval.jsonl")]
    prompts[1] = prompts[1][:40]  # a short prompt: left padding in its batch
    plain = inference.generate(model, tokenizer, prompts, 48, 3, "generate", 2048, "generate")
    fast = inference.generate(model, tokenizer, prompts, 48, 3, "static", 2048, "static")
    assert fast.texts == plain.texts
    assert fast.new_tokens == plain.new_tokens and fast.stopped == plain.stopped
    assert fast.batch_size == plain.batch_size == 3
    assert len(set(fast.texts)) > 1


def test_both_engines_stop_each_row_at_its_first_eos(inside):
    """With a frequent token standing in for EOS, rows stop at different steps; both engines cut them alike."""
    model, tokenizer = load(True)
    encoded = [tokenizer(r["prompt"])["input_ids"] for r in files.read_jsonl("data/prepared/eval.jsonl")]
    pad = tokenizer.pad_token_id
    free_running = inference.generate_tokens(model, encoded, 32, 3, "generate", None, pad, "no stop").tokens

    def first_steps(token):  # the step at which each row would stop on `token` (None: never)
        return [row.index(token) if token in row else None for row in free_running]

    stop = max(sorted({t for row in free_running for t in row}), key=lambda t: len(set(first_steps(t))))
    plain = inference.generate_tokens(model, encoded, 32, 3, "generate", stop, pad, "generate").tokens
    fast = inference.generate_tokens(model, encoded, 32, 3, "static", stop, pad, "static").tokens
    assert fast == plain
    assert all(row.count(stop) <= 1 for row in fast)
    assert [len(row) for row in fast] == [32 if step is None else step + 1 for step in first_steps(stop)]
    assert len({len(row) for row in fast}) >= 2 and any(row[-1] == stop for row in fast)


def test_static_engine_without_eos_generates_the_whole_budget(inside):
    model, tokenizer = load(True)
    encoded = [tokenizer(r["prompt"])["input_ids"] for r in files.read_jsonl("data/prepared/eval.jsonl")]
    run = inference.generate_tokens(model, encoded, 20, "auto", "static", None, tokenizer.pad_token_id, "forced")
    assert [len(t) for t in run.tokens] == [20] * len(encoded)
    assert run.batch_size == len(encoded)  # auto: the tiny model's cache of every prompt fits in one batch


def test_chunked_loss_matches_the_loss_of_full_logits(inside, monkeypatch):
    """The loss computed LOGITS_CHUNK tokens at a time, rows batched by length, equals the plain computation."""
    model, tokenizer = load(True)
    rows = files.read_jsonl("data/prepared/eval.jsonl")
    monkeypatch.setattr(inference, "LOGITS_CHUNK", 37)  # several chunks per batch
    chunked = inference.teacher_forced_loss(model, tokenizer, rows, 3, 2048)
    full, response = [], []
    for row in rows:
        ids = torch.tensor([tokenizer(row["text"])["input_ids"]], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
        full.append(nll)
        response.append(nll[len(tokenizer(row["prompt"])["input_ids"]) - 1:])
    assert chunked["full"] == pytest.approx(torch.cat(full).mean().item(), rel=1e-6)
    assert chunked["response"] == pytest.approx(torch.cat(response).mean().item(), rel=1e-6)


def test_merged_adapter_gives_the_loss_of_the_unmerged_one(inside):
    """Merging W + BA into the weights changes rounding only: within 1e-5 relative where the merge is in float32
    (CPU), 1e-4 where it is in bf16 (GPU; the test then upcasts the merged weights)."""
    from peft import PeftModel

    rows = files.read_jsonl("data/prepared/eval.jsonl")
    base, tokenizer = load(False)
    unmerged = PeftModel.from_pretrained(base, "models/adapter").eval()
    merged, _ = load(True)
    loss_unmerged = inference.teacher_forced_loss(unmerged, tokenizer, rows, 4, 2048)
    loss_merged = inference.teacher_forced_loss(merged, tokenizer, rows, 4, 2048)
    tolerance = 1e-4 if torch.cuda.is_available() else 1e-5
    assert loss_merged["full"] == pytest.approx(loss_unmerged["full"], rel=tolerance)
    assert loss_merged["response"] == pytest.approx(loss_unmerged["response"], rel=tolerance)
    base_loss = inference.teacher_forced_loss(load(False)[0], tokenizer, rows, 4, 2048)
    assert base_loss["full"] > loss_merged["full"] + 1  # the adapter is really in the merged weights


def test_auto_generation_batch_fills_free_memory_with_kv_cache():
    """The 8B (bf16) with 320-token prompts and a 512-token budget: 128 KiB of K/V per token."""
    kv_row = memory.kv_bytes_per_token(LLAMA_8B, 2) * (320 + 512)
    assert memory.kv_bytes_per_token(LLAMA_8B, 2) == 128 * 1024
    h200 = memory.generation_batch(LLAMA_8B, 123 * GIB, 320, 512, 16384, 2)  # an H200 after the weights
    assert 900 < h200 < 1100
    assert h200 * kv_row <= 0.9 * 123 * GIB < (h200 + 30) * kv_row  # full, less a prefill chunk and the logits
    small_card = memory.generation_batch(LLAMA_8B, 7 * GIB, 320, 512, 16384, 2)  # a 24 GB card after the weights
    assert 30 < small_card < 70
    longer = memory.generation_batch(LLAMA_8B, 123 * GIB, 320, 1344, 16384, 2)  # twice the tokens per row
    assert longer == pytest.approx(h200 / 2, rel=0.02)
    assert memory.generation_batch(LLAMA_8B, 1 * GIB, 320, 512, 16384, 2) == 1  # never below one row


def test_auto_loss_batch_bounds_one_layer_of_activations():
    rows = memory.loss_batch(LLAMA_8B, 123 * GIB, 2048, inference.LOGITS_CHUNK, 2)
    assert 250 < rows < 500
    assert rows * 2048 * memory.forward_bytes_per_token(LLAMA_8B, 2) < 0.9 * 123 * GIB
    assert memory.loss_batch(LLAMA_8B, 123 * GIB, 4096, inference.LOGITS_CHUNK, 2) == pytest.approx(rows / 2, abs=1)


def test_batches_cut_sorted_prompts_into_the_fewest_batches():
    assert batching.batches(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batching.batches(list(range(9)), 8) == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    assert batching.batches(list(range(24)), 8) == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    assert batching.batches([5], 64) == [[5]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="NF4 needs a CUDA GPU")
def test_4bit_base_is_dequantized_before_the_merge(inside, tmp_path):
    """The tuned 4-bit model is evaluated as NF4-dequantized base + merged adapter: its loss matches the adapter
    applied to the 4-bit model layer by layer (bf16 rounding only)."""
    from peft import LoraConfig, get_peft_model

    rows = files.read_jsonl("data/prepared/eval.jsonl")
    base = BaseModel.read("models/base")
    quantized, tokenizer = inference.load(base, None, True)
    assert not any("4bit" in type(m).__name__ for m in quantized.modules())  # dequantized
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    four_bit = AutoModelForCausalLM.from_pretrained(base.weights, device_map={"": 0}, dtype=torch.bfloat16,
                                                    quantization_config=BitsAndBytesConfig(
                                                        load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                        bnb_4bit_use_double_quant=True,
                                                        bnb_4bit_compute_dtype=torch.bfloat16))
    torch.manual_seed(0)
    peft = get_peft_model(four_bit, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, weight in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.5)
    peft.save_pretrained(tmp_path / "adapter")
    unmerged = inference.teacher_forced_loss(peft.eval(), tokenizer, rows, 4, 2048)["full"]
    merged_model, _ = inference.load(base, tmp_path / "adapter", True)
    merged = inference.teacher_forced_loss(merged_model, tokenizer, rows, 4, 2048)["full"]
    base_loss = inference.teacher_forced_loss(quantized, tokenizer, rows, 4, 2048)["full"]
    assert abs(unmerged - base_loss) > 0.05  # the adapter moves the loss ...
    assert merged == pytest.approx(unmerged, abs=0.01 * abs(unmerged - base_loss))  # ... and merged, as much


def test_sampled_generations_reproduce_at_any_batch_size_and_follow_the_seed(inside):
    """Sampling is keyed by (seed, prompt, sample), not by a generator's state: the same keys give the same tokens
    byte for byte whatever the batch, and another seed other tokens."""
    model, tokenizer = load(True)
    encoded = [tokenizer(r["prompt"])["input_ids"] for r in files.read_jsonl("data/prepared/eval.jsonl")][:5]
    nucleus, pad = sampling.Sampling(temperature=1.0, top_p=0.95), tokenizer.pad_token_id

    def sampled(batch_size, seed):
        keys = [sampling.row_key(seed, i, 0) for i in range(len(encoded))]
        return inference.generate_tokens(model, encoded, 24, batch_size, "static", None, pad, "sampled", nucleus,
                                         keys).tokens

    first = sampled(2, seed=11)
    assert sampled(5, seed=11) == first == sampled(2, seed=11)
    assert sampled(2, seed=12) != first
    greedy = inference.generate_tokens(model, encoded, 24, 2, "static", None, pad, "greedy").tokens
    assert first != greedy


def test_the_sampler_draws_from_the_nucleus_in_its_proportions():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]]).repeat(40000, 1)
    keys = torch.tensor([sampling.row_key(7, i, 0) for i in range(40000)])
    probs = torch.softmax(logits[0], -1)
    drawn = sampling.sample_tokens(logits, sampling.Sampling(1.0, 1.0), keys, torch.tensor(3))
    assert torch.allclose(torch.bincount(drawn, minlength=5) / 40000, probs, atol=0.01)
    nucleus = sampling.sample_tokens(logits, sampling.Sampling(1.0, 0.8), keys, torch.tensor(3))
    shares = torch.bincount(nucleus, minlength=5) / 40000  # tokens 0 and 1 reach 0.83 >= 0.8: the rest never drawn
    assert torch.allclose(shares, torch.cat([probs[:2] / probs[:2].sum(), torch.zeros(3)]), atol=0.01)
    cold = sampling.sample_tokens(logits, sampling.Sampling(0.05, 1.0), keys, torch.tensor(3))
    assert (cold == 0).float().mean() > 0.99


def test_the_hash_is_lowbias32_on_ints_and_tensors():
    values = [0, 1, 12345, 2**31 - 1, 2**31, 2**32 - 1]

    def reference(x):  # the published lowbias32, with 32-bit wraparound
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    assert [sampling.mix32(v) for v in values] == [reference(v) for v in values]
    assert sampling.mix32(torch.tensor(values)).tolist() == [reference(v) for v in values]


def test_windowed_attention_and_length_tiers_write_what_generate_writes(inside, monkeypatch):
    """Decode attention over windows of the cache (here 8 slots, so a 40-token budget crosses several) and auto
    batches sized by their longest prompt give generate()'s greedy tokens."""
    monkeypatch.setattr(decoding, "WINDOW", 8)
    monkeypatch.setattr(memory, "generation_batch",  # memory for 1,000 cached tokens: fewer rows of longer prompts
                        lambda config, free, prompt, budget, *args: max(1, 1000 // (prompt + budget)))
    model, tokenizer = load(True)
    encoded = [tokenizer(r["prompt"])["input_ids"] for r in files.read_jsonl("data/prepared/eval.jsonl")]
    encoded[1] = encoded[1][:20]
    pad = tokenizer.pad_token_id
    plan = batching.plan_batches(model, list(map(len, encoded)), 40, "auto", False)
    assert len({(batch.rows, batch.prompt_length) for batch in plan}) >= 2  # tiers, each its own rows and cache
    plain = inference.generate_tokens(model, encoded, 40, 3, "generate", None, pad, "generate").tokens
    fast = inference.generate_tokens(model, encoded, 40, "auto", "static", None, pad, "static").tokens
    assert fast == plain


def test_auto_batches_fill_up_to_their_longest_prompts_cache():
    """Shortest first, each batch as many rows as the KV cache of its longest prompt allows: a few long prompts
    join the last batch instead of running as a batch of their own; a fixed size is evened out."""
    model = SimpleNamespace(device=torch.device("cpu"), config=LLAMA_8B, parameters=lambda: iter([torch.zeros(1)]))
    lengths = [100] * 5 + [300] * 6 + [900] * 2 + [50]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(memory, "generation_batch",  # memory for 6,000 cached tokens
                      lambda config, free, prompt, budget, *args: max(1, 6000 // (prompt + budget)))
        plan = batching.plan_batches(model, lengths, 900, "auto", False)
        assert [(len(b.prompts), b.rows, b.prompt_length) for b in plan] == [(6, 6, 100), (5, 5, 300), (3, 3, 900)]
        assert [lengths[i] for b in plan for i in b.prompts] == sorted(lengths)
        fixed = batching.plan_batches(model, lengths, 900, 4, False)
    assert [(len(b.prompts), b.rows, b.prompt_length) for b in fixed] == [(4, 4, 900)] * 3 + [(2, 4, 900)]


INTERPRETED = """
import os, sys, torch
sys.path.insert(0, os.environ["REPO"])
from medical_r1.generation import decode_kernel, decoding
"""


def interpreted(script: str, cwd: Path) -> str:
    """`script` in a fresh Python with Triton's interpreter (kernels run on the CPU); its stdout."""
    import subprocess
    import sys

    env = {**os.environ, "TRITON_INTERPRET": "1", "REPO": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", INTERPRETED + script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_decode_kernel_attends_to_each_rows_filled_slots_only(tmp_path):
    """decode_attention (Triton, run by its interpreter) against the batched products over a mask of the same
    slots: GQA groups of 4, rows starting at 0, inside and at the end of a kernel block, the current slot inside a
    block; the slots outside are filled with large values, so reading one would show."""
    pytest.importorskip("triton")
    out = interpreted("""
torch.manual_seed(0)
for dtype in (torch.float32, torch.float16):
    rows, heads, kv, hd, slots = 4, 8, 2, 32, 160
    q = torch.randn(rows, heads, 1, hd).to(dtype)
    k, v = (torch.randn(rows, kv, slots, hd).to(dtype) for _ in range(2))
    starts = torch.tensor([0, 5, 63, 100], dtype=torch.int32)
    for position in (100, 130):
        visible = torch.arange(slots)[None, None, None, :]
        visible = (visible >= starts.view(rows, 1, 1, 1)) & (visible <= position)
        k2, v2 = (torch.where(visible.view(rows, 1, slots, 1), t, torch.full_like(t, 300)) for t in (k, v))
        fast = decode_kernel.decode_attention(q, k2, v2, starts, torch.tensor(position), hd ** -0.5).float()
        slow = decoding.cache_attention(None, q.float(), k.float(), v.float(), visible, scaling=hd ** -0.5)[0]
        print(dtype, position, (fast - slow).abs().max().item())
""", tmp_path)
    errors = {tuple(line.split()[:2]): float(line.split()[2]) for line in out.splitlines()}
    assert len(errors) == 4
    assert all(e < (1e-5 if "float32" in dtype else 2e-3) for (dtype, _), e in errors.items()), errors


def test_the_decoder_with_the_kernel_writes_what_generate_writes(inside):
    """The static engine with decode attention in the kernel (forced on, Triton's interpreter on the CPU) gives
    generate()'s greedy tokens, left-padded rows included."""
    pytest.importorskip("triton")
    out = interpreted("""
import json
from pathlib import Path
from medical_r1 import files
from medical_r1.generation import inference
from medical_r1.model.base_model import BaseModel
decoding.kernel_usable = lambda model: True
model, tokenizer = inference.load(BaseModel.read("models/base"), Path("models/adapter"), False)
model = model.float()
encoded = [tokenizer(r["prompt"])["input_ids"] for r in files.read_jsonl("data/prepared/eval.jsonl")][:4]
encoded[1] = encoded[1][:20]
pad = tokenizer.pad_token_id
plain = inference.generate_tokens(model, encoded, 12, 4, "generate", None, pad, "generate")
fast = inference.generate_tokens(model, encoded, 12, 4, "static", None, pad, "static")
print(json.dumps({"same": fast.tokens == plain.tokens, "attention": fast.attention}))
""", Path.cwd())
    assert json.loads(out.splitlines()[-1]) == {"same": True, "attention": "kernel"}


BF16_NOISE = 3e-4
"""How far two bf16 computations of base + LoRA's loss may differ: on the tiny model PEFT's bf16 loss is ~2e-4 from
its float32 loss, and rounding either LoRA factor to bf16 moves it ~1.6e-4 (measured on the CPU, 2026-12-07)."""


def bf16(model):
    """`model` in bf16, attending eagerly: torch 2.14's CPU kernel for bf16 SDPA fails on some CPUs (a Xeon with AVX-512
    and AMX: "pack_vnni2 is only supported when avx512 is supported"); the attention kernel is not what is compared."""
    model = model.to(torch.bfloat16)
    model.set_attn_implementation("eager")
    return model


def bf16_tuned(scale: float, trainable: bool = False):
    """The trained adapter with its update scaled by `scale`, on the base in bf16 (as a GPU evaluates it)."""
    from peft import PeftModel

    tuned = PeftModel.from_pretrained(bf16(load(False)[0]), "models/adapter", is_trainable=trainable).eval()
    for layer in lora_decoding.lora_layers(tuned).values():
        layer.lora_B["default"].weight.data.mul_(scale)
    return tuned


def loss(model) -> float:
    """Teacher-forced loss of `model` on the held-out rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BaseModel.read("models/base").tokenizer)
    rows = files.read_jsonl("data/prepared/eval.jsonl")
    return inference.teacher_forced_loss(model, tokenizer, rows, 4, 2048)["full"]


def factor_error(peft_model) -> float:
    """max over projections of |(s B) A - s B A| / |s B A| with both factors as the LoRA products hold them (in the
    base's dtype): how much of the update they keep, as merge_error says it of a merge."""
    layers = {id(layer.get_base_layer()): layer for layer in lora_decoding.lora_layers(peft_model).values()}
    worst = 0.0
    for _, _, projection in lora_decoding.projections(peft_model):
        update = layers[id(projection.base)].get_delta_weight("default").float()
        kept = projection.up_t.float().t() @ projection.down.weight[projection.columns].float()
        worst = max(worst, ((kept - update).norm() / update.norm()).item())
    return worst


def test_a_bf16_merge_happens_only_where_it_keeps_the_adapter(inside):
    """On bf16 weights an update ~9% of a weight's size loses ~7% of itself in a merge: it runs as LoRA products
    instead, whose bf16 factors keep all but ~0.2% of it, and scores base + LoRA's loss within bf16's noise; the whole
    trained update (~90%) merges within MERGE_TOLERANCE."""
    base_loss = loss(bf16(load(False)[0]))
    small = bf16_tuned(0.1)
    small_loss = loss(small)
    assert small_loss < base_loss - 0.3  # the adapter changes the model ...
    merge_error = lora_decoding.merge_error(small)
    assert merge_error > lora_decoding.MERGE_TOLERANCE  # ... but a merge would lose part of it
    fused, route = lora_decoding.for_decoding(small)
    assert route.path == "lora" and not lora_decoding.lora_layers(fused)
    assert loss(fused) == pytest.approx(small_loss, abs=BF16_NOISE)
    assert factor_error(bf16_tuned(0.1)) < merge_error / 10  # a merge loses 10x more of the update

    large = bf16_tuned(1.0)
    large_loss = loss(large)
    merged, route = lora_decoding.for_decoding(large)
    assert route.path == "merged" and route.merge_error <= lora_decoding.MERGE_TOLERANCE
    assert loss(merged) == pytest.approx(large_loss, abs=0.01 * abs(large_loss - base_loss))


def test_rollouts_decode_the_current_adapter_fused_and_training_goes_on_with_peft_layers(inside):
    """Within `fused` the policy scores PEFT's loss through LoraProjections; afterwards its LoRA layers are back,
    still trainable, and the next `fused` decodes their new weights."""
    policy = bf16_tuned(0.1, trainable=True)
    layers = lora_decoding.lora_layers(policy)
    peft_loss = loss(policy)
    with lora_decoding.fused(policy) as decoding_model:
        assert not lora_decoding.lora_layers(decoding_model)
        assert loss(decoding_model) == pytest.approx(peft_loss, abs=BF16_NOISE)
    assert lora_decoding.lora_layers(policy) == layers and loss(policy) == peft_loss
    assert all(p.requires_grad for name, p in policy.named_parameters() if "lora_" in name)
    for layer in layers.values():
        layer.lora_B["default"].weight.data.mul_(10)  # an update moves the adapter
    moved_loss = loss(policy)
    assert abs(moved_loss - peft_loss) > 0.1
    with lora_decoding.fused(policy) as decoding_model:
        assert loss(decoding_model) == pytest.approx(moved_loss, abs=1e-3)


def test_lora_products_share_one_down_projection_per_input(inside):
    """q/k/v read one x [A_q; A_k; A_v]^T, gate/up one x [A_gate; A_up]^T; o and down each their own."""
    fused, _ = lora_decoding.for_decoding(bf16_tuned(0.1))
    layer = fused.model.layers[0]
    attention, mlp = layer.self_attn, layer.mlp
    assert attention.q_proj.down is attention.k_proj.down is attention.v_proj.down
    assert mlp.gate_proj.down is mlp.up_proj.down and mlp.down_proj.down is not mlp.up_proj.down
    rank = attention.o_proj.down.weight.shape[0]
    assert attention.q_proj.down.weight.shape[0] == 3 * rank and mlp.up_proj.down.weight.shape[0] == 2 * rank
