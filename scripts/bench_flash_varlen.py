"""`python -m stages.bench` with Unsloth's packed attention on flash-attention's varlen kernel, on a torch older than
2.12 (whose torch.nn.attention.varlen lacks enable_gqa). There Unsloth runs packed rows' attention one row at a
time (unsloth/utils/attention_dispatch.py, _sdpa_packed_segments), and each row's slices of Q, K and V cost a
full-size zero-filled gradient in the backward; from torch 2.12 on (we pin 2.14.1) it runs the whole packed batch
in one call of torch's flash varlen kernel (_LeanFlashVarlen, over aten._flash_attention_forward/backward, which
older torch has too). This turns that route on, as Unsloth does on torch >= 2.12 when cuDNN does not take the call,
to measure on a GPU machine with an older torch what the pinned one runs (reports/bench/NOTES.md).

    python scripts/bench_flash_varlen.py run --backend unsloth --precision bf16 --batch-size 8 --tag varlen-b8 ...
"""

import runpy
import sys
from pathlib import Path

import unsloth.models  # noqa: F401  (before transformers, as everywhere; and before attention_dispatch, its cycle)
from unsloth.utils import attention_dispatch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
attention_dispatch._TORCH_VARLEN_ATTN = attention_dispatch._LeanFlashVarlen.apply  # only checked for None here
attention_dispatch._LEAN_VARLEN = True
attention_dispatch._varlen_can_use_cudnn = lambda *args, **kwargs: False
sys.argv = ["stages.bench", *sys.argv[1:]]
runpy.run_module("stages.bench", run_name="__main__")
