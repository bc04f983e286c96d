"""Throwaway: decode attention kernel vs batched products, the 8B decode step at MedQA-like shapes, end to end.

Ran on the H100 on 2026-12-06 (the decoding code of commit 0d3e51b) from the repository root after the bench, as
`ROWS=160 SECTIONS=attention,step python3 profile_decode.py` (here copied from the ignored .gpu/ folder it ran from);
it wrote profile-h100.json and profile-table-h100.txt. The e2e section reads prompt lengths from .gpu/lengths.json
(the bench's 1,273 token counts) and was not run."""
import json
import os
import sys
import time
import traceback

import torch

sys.path.insert(0, ".")
from medical_r1.generation import decode_kernel, decoding, inference  # noqa: E402

OUT = os.environ.get("OUT", "/tmp")
R = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
try:
    import triton
    R["triton"] = triton.__version__
except Exception as e:  # noqa: BLE001
    R["triton"] = repr(e)
ROWS = int(os.environ.get("ROWS", "160"))
SECTIONS = os.environ.get("SECTIONS", "attention,step,e2e").split(",")


def save():
    json.dump(R, open(f"{OUT}/profile.json", "w"), indent=1)


def timed(fn, n=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1000


print(R, flush=True)
# 1. one layer's decode attention: rows ROWS, kv 8, heads 32, hd 128, cache 500 + 2048, per-row starts 0..300
try:
    assert "attention" in SECTIONS, "skipped"
    rows, kv, heads, hd, alloc = ROWS, 8, 32, 128, 2548
    g = torch.Generator(device="cuda").manual_seed(0)
    K = torch.randn(rows, kv, alloc, hd, device="cuda", dtype=torch.bfloat16, generator=g)
    V = torch.randn(rows, kv, alloc, hd, device="cuda", dtype=torch.bfloat16, generator=g)
    q = torch.randn(rows, 1, heads, hd, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2)
    starts = torch.randint(0, 300, (rows,), device="cuda", generator=g).int()
    att = {}
    for pos in (1500,):
        position = torch.tensor(pos, device="cuda")
        filled = (pos + 1 - starts).sum().item()
        nbytes = 2 * filled * kv * hd * 2
        window = min(alloc, -(-(pos + 1) // 256) * 256)
        vis = torch.arange(window, device="cuda")[None, None, None, :]
        vis = (vis >= starts.view(rows, 1, 1, 1)) & (vis <= pos)
        entry = {"gb_read": round(nbytes / 1e9, 3)}
        slow = lambda: decoding.cache_attention(None, q, K[:, :, :window], V[:, :, :window], vis, scaling=hd ** -0.5)
        ms = timed(slow)
        entry["products"] = {"ms": round(ms, 3), "gbs": round(nbytes / ms / 1e6)}
        ref = slow()[0].float()
        for block, warps, stages in ((64, 4, 3), (64, 4, 4), (32, 4, 3), (128, 8, 3), (64, 8, 3)):
            decode_kernel.BLOCK, decode_kernel.WARPS, decode_kernel.STAGES = block, warps, stages
            try:
                fast = lambda: decode_kernel.decode_attention(q, K, V, starts, position, hd ** -0.5)
                err = ((fast().float() - ref).abs().max() / ref.abs().max()).item()
                ms = timed(fast)
                entry[f"kernel_b{block}_w{warps}_s{stages}"] = {"ms": round(ms, 3), "gbs": round(nbytes / ms / 1e6),
                                                               "rel_err": round(err, 5)}
            except Exception as e:  # noqa: BLE001
                entry[f"kernel_b{block}_w{warps}_s{stages}"] = repr(e)[:300]
        att[pos] = entry
        print(pos, json.dumps(entry), flush=True)
    R["attention_one_layer"] = att
    del K, V
    torch.cuda.empty_cache()
except Exception:  # noqa: BLE001
    R["attention_error"] = traceback.format_exc()[-2000:]
    print(R["attention_error"], flush=True)
save()
best = min([(v["ms"], k) if k != "kernel_b64_w4_s3" else (v["ms"] * 0.97, k) for k, v in R.get("attention_one_layer", {}).get(1500, {}).items()
            if k.startswith("kernel") and isinstance(v, dict) and v["rel_err"] < 0.02] or [(0, "kernel_b64_w4_s3")])
b, w, s = (int(x[1:]) for x in best[1].split("_")[1:])
R["kernel_config_best"] = best[1]
decode_kernel.BLOCK, decode_kernel.WARPS, decode_kernel.STAGES = 64, 4, 3  # what the decoder runs
print("kernel config", best, flush=True)

# 2. the 8B decode step, rows ROWS, prompts up to 500 (left-padded), budget 2048
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

cfg = AutoConfig.from_pretrained("models/configs/DeepSeek-R1-Distill-Llama-8B")
torch.manual_seed(0)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
model.eval()
decoding.register_attention()
model.set_attn_implementation(decoding.ATTENTION)
lengths = json.load(open(".gpu/lengths.json"))
try:
    assert "step" in SECTIONS, "skipped"
    rows, prompt, budget = ROWS, 500, 2048
    step = {}
    for use_kernel in (True, False):
        dec = decoding.StaticDecoder(model, rows, prompt, budget, None, 0, cuda_graph=True)
        dec.kernel = dec.kernel and use_kernel
        gen = torch.Generator().manual_seed(0)
        lens = torch.randint(200, 501, (rows,), generator=gen)
        ids = torch.randint(100, 120000, (rows, prompt), generator=gen)
        mask = (torch.arange(prompt)[None] >= prompt - lens[:, None]).long()
        ids, mask = ids.cuda(), mask.cuda()
        with torch.no_grad():
            first = dec.prefill(ids, mask)
            dec.start(first, mask)
            for _ in range(3):
                dec.decode_step()
            name = "kernel" if dec.kernel else "products"
            if dec.kernel:
                torch.cuda.synchronize()
                from torch.profiler import ProfilerActivity, profile
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(3):
                        dec.step()
                    torch.cuda.synchronize()
                table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=30)
                print(table, flush=True)
                open(f"{OUT}/profile_table.txt", "w").write(table)
                step["eager_ms"] = round(timed(dec.step, 5), 2)
            for at in (520, 1290, 2300):
                dec.slot = at
                dec.cache.position.fill_(at)
                step[f"{name}_graph_ms_at_{at}"] = round(timed(dec.decode_step, 20), 3)
        step[f"{name}_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        print(step, flush=True)
        del dec
        torch.cuda.empty_cache()
    R["step"] = step
except Exception:  # noqa: BLE001
    R["step_error"] = traceback.format_exc()[-2000:]
    print(R["step_error"], flush=True)
save()

# 3. end to end through inference.generate_tokens: every 4th MedQA-mix prompt length, BUDGET tokens forced, auto
try:
    assert "e2e" in SECTIONS, "skipped"
    budget = int(os.environ.get("BUDGET", "1024"))
    gen = torch.Generator().manual_seed(0)
    chosen = lengths[::4]
    encoded = [[1] + torch.randint(100, 120000, (n - 1,), generator=gen).tolist() for n in chosen]
    torch.cuda.reset_peak_memory_stats()
    run = inference.generate_tokens(model, encoded, budget, "auto", "static", None, 0, "e2e")
    total = sum(map(len, run.tokens))
    R["e2e"] = {"prompts": len(encoded), "budget": budget, "tokens_per_second": round(total / run.seconds, 1),
                "seconds": round(run.seconds, 1), "prefill_s": round(run.prefill_seconds, 1),
                "batches": [(len(b.prompts), b.prompt_length) for b in run.plan], "attention": run.attention,
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)}
    print(R["e2e"], flush=True)
except Exception:  # noqa: BLE001
    R["e2e_error"] = traceback.format_exc()[-2000:]
    print(R["e2e_error"], flush=True)
save()
