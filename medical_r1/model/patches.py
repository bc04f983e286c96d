"""Every runtime change we make to third-party code, in one place: what it replaces, why, the version of the package
it was written for (the pin in requirements.txt; tests/test_patches.py keeps the two equal), and how to undo it.

A patch refuses to go on a package of another version (PatchError names both): the code it replaces may have
changed, so whoever moves a pin reads the replaced code again and then moves `written_for`. The replacements
themselves live with the code they serve (model/trl_cpu.py, model/fp8.py, scripts/bench_flash_varlen.py); this
module applies them. Applying an applied patch again changes nothing.

Not patches, so not here: the static-cache decoder's attention joins transformers through its public extension
point (AttentionInterface.register, generation/decoding.py), and the environment every stage needs before the
libraries load is set by medical_r1/__init__.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module, metadata
from typing import Any, Callable

from medical_r1 import UserError


class PatchError(UserError):
    """A patch met a version of its package it was not written for."""


@dataclass(frozen=True)
class Patch:
    package: str
    """The distribution whose code is replaced."""
    written_for: str
    """Its version the patch was written against (the pin in requirements.txt)."""
    replaces: tuple[str, ...]
    """`module:attribute` of each replaced object."""
    why: str
    """What goes wrong without it."""


TRL_CPU_LOSS = Patch(
    "trl", "1.15.0", ("trl.trainer.utils:_ChunkedLogProbFunction",),
    "TRL computes the SFT loss through a Triton-only fused LM head: on a machine without a GPU every step fails; "
    "the replacement (model/trl_cpu.py) computes the same per-token outputs in plain PyTorch.")
UNSLOTH_FP8_PRODUCTS = Patch(
    "unsloth", "2026.10.9", ("unsloth.kernels.utils:fp8_linear", "unsloth.kernels.fast_lora:fast_dequantize"),
    "train.base_precision: fp8 multiplies the frozen weights in FP8 both ways; Unsloth's forward product is compiled "
    "for one scale layout and its backward dequantizes the weight to bf16 (model/fp8.py).")
UNSLOTH_VARLEN_ATTENTION = Patch(
    "unsloth", "2026.10.9", ("unsloth.utils.attention_dispatch:_TORCH_VARLEN_ATTN",
                             "unsloth.utils.attention_dispatch:_LEAN_VARLEN",
                             "unsloth.utils.attention_dispatch:_varlen_can_use_cudnn",
                             "unsloth.utils.attention_dispatch:_NATIVE_BEATS_XFORMERS"),
    "On torch < 2.12 Unsloth runs a packed batch's attention one run of equal-length rows at a time; this turns on "
    "the one-varlen-call-per-layer route it takes from torch 2.12 on, to measure the pinned torch's route on a GPU "
    "machine with an older torch (scripts/bench_flash_varlen.py).")
_APPLIED: dict[Patch, Callable[[], None]] = {}


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def require_version(patch: Patch) -> None:
    found = installed_version(patch.package)
    if found != patch.written_for:
        raise PatchError(f"the patch of {', '.join(patch.replaces)} was written for {patch.package} "
                         f"{patch.written_for}, and this machine has {found}; read the replaced code of {found} and "
                         "update the patch (medical_r1/model/patches.py)")


def apply(patch: Patch, *replacements: Any) -> Callable[[], None]:
    """Put `replacements` (one per `patch.replaces`, in order) in place; the function that puts the originals back.
    Applying an applied patch returns its undo and changes nothing."""
    if patch in _APPLIED:
        return _APPLIED[patch]
    require_version(patch)
    if len(replacements) != len(patch.replaces):
        raise ValueError(f"{len(replacements)} replacements for the {len(patch.replaces)} targets of {patch.replaces}")
    targets = [(import_module(module), name) for module, name in (t.split(":") for t in patch.replaces)]
    originals = [getattr(module, name) for module, name in targets]
    for (module, name), value in zip(targets, replacements):
        setattr(module, name, value)

    def undo() -> None:
        for (module, name), value in zip(targets, originals):
            setattr(module, name, value)
        _APPLIED.pop(patch, None)

    _APPLIED[patch] = undo
    return undo
