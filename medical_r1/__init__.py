"""medical_r1: the library the entry points in stages/ share (data, model, training, generation, evaluation,
reporting, speed; config and artifacts at the top).

Importing this package sets what must be set before the libraries load (every stage imports it first; no code of a
third-party package is changed here: that is model/patches.py):
- no usage pings: TRL's trainers report each run to huggingface.co through huggingface_hub's telemetry; a stage
  contacts the hub only to download what params.yaml names;
- CPU math pinned to code paths that compute the same bits on every x86-64 CPU with AVX2, Intel or AMD
  (docs/reliability.md): MKL's vendor-neutral branch (its faster branches differ between vendors) and ATen's AVX2
  kernels (AVX-512 kernels round differently);
- TRL's notice that `rollout_func` is experimental, printed on every GRPO run: the rl stage uses it on purpose
  (training/grpo.py) with trl pinned.
"""

import os
import platform

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")


class UserError(Exception):
    """A problem the user can fix (a param, a file, a row); stages print its one-sentence message and exit 2."""
