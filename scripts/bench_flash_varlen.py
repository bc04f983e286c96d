"""`python -m stages.bench` with Unsloth's packed attention on flash-attention's varlen kernel, on a torch older than
2.12 (whose torch.nn.attention.varlen lacks enable_gqa). There Unsloth runs a packed batch's attention one run of
equal-length rows at a time (unsloth/utils/attention_dispatch.py, _sdpa_packed_segments), and each run's slices of
Q, K and V cost a full-size zero-filled gradient in the backward; from torch 2.12 on (we pin 2.14.1) it runs the
whole packed batch in one varlen call per layer, for causal GQA through _LeanFlashVarlen (aten's flash varlen
kernels, which older torch has too). This turns that route on, as Unsloth does on torch >= 2.12, to measure on a GPU
machine with an older torch what the pinned one runs (reports/bench/NOTES.md). With flash-attn installed Unsloth
takes flash-attn's own varlen kernel instead, as it would anyway.

    python scripts/bench_flash_varlen.py run -S recipe=speed_8b -S train.gradient_checkpointing=off --name varlen-b8
"""

import sys
from pathlib import Path

import unsloth.models  # noqa: F401  (before transformers, as everywhere; and before attention_dispatch, its cycle)
from unsloth.utils import attention_dispatch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from medical_r1 import files  # noqa: E402
from medical_r1.model import patches  # noqa: E402
from stages import bench  # noqa: E402


def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
                enable_gqa=False):
    """torch >= 2.12's varlen_attn for the calls Unsloth makes (the same sequences for queries and keys)."""
    return attention_dispatch._LeanFlashVarlen.apply(query, key, value, cu_seq_q, max_q, tuple(window_size) == (-1, 0),
                                                     scale, *window_size)


patches.apply(patches.UNSLOTH_VARLEN_ATTENTION, varlen_attn, True,
              lambda *args, **kwargs: False,  # _varlen_can_use_cudnn: torch 2.14 says False for causal GQA
              True)  # _NATIVE_BEATS_XFORMERS: what Unsloth computes once torch has a varlen kernel
files.run_stage(bench.main)
