"""The LoRA SFT recipe: setup -> fit. stages/train.py, stages/bench.py and the tests all train through it.

    session = finetune.setup(base, train, lora, seed, lengths)   # base + LoRA on this machine, a step log
    seconds = finetune.fit(session, train_rows, eval_rows, train, seed, output_dir, callbacks)

`setup` fixes threads and seeds, loads the base with the `train.backend` backend, resolves
`train.gradient_checkpointing` from the memory estimate and adds LoRA. `fit` trains TRL's SFTTrainer on the rows'
`text` (held-out loss every save_steps) and returns the wall time. Callers add what is theirs around it: train
resuming and saving, bench its timing and profiling callbacks. Nothing here knows which backend it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medical_r1 import UserError, distributed, files, runtime
from medical_r1.model import backends, base_model, memory, precision
from medical_r1.training import steplog
from medical_r1.model.base_model import BaseModel


@dataclass
class Session:
    model: Any
    """The base model with LoRA adapters (a PEFT model), on this machine's device."""
    tokenizer: Any
    """The tokenizer prepare formatted the rows with."""
    backend: backends.Backend
    """The backend that loaded the model (train.backend)."""
    gradient_checkpointing: bool
    """train.gradient_checkpointing as resolved for this model, rows and device."""
    estimated_peak_gib: float | None
    """Estimated peak of the largest micro-batch without recomputation (None on the CPU)."""
    log: Any
    """The step log (medical_r1/training/steplog.py); fit records into it."""
    packing: bool = False
    """Whether fit's trainer packed rows: train.packing as it ran (Unsloth turns packing off where it cannot pack)."""


def resolve_optim(optim: str, cuda: bool) -> str:
    """`auto`: 8-bit AdamW where bitsandbytes runs (a CUDA GPU), plain AdamW elsewhere. (The fused AdamW, one
    kernel for all LoRA tensors, measured no faster on the H200: reports/bench/NOTES.md.)"""
    if optim != "auto":
        return optim
    return "adamw_8bit" if cuda else "adamw_torch"


def check_optimizer(train) -> None:
    """Build train.optim and the schedule (train.lr_scheduler_type with train.lr_scheduler_kwargs) once on a dummy
    parameter, as the trainer will: a name transformers knows can still miss its package (galore_adamw) or its
    arguments (cosine_with_min_lr needs min_lr or min_lr_rate); one sentence then, before any work."""
    import tempfile

    import torch
    from transformers import Trainer, TrainingArguments, get_scheduler

    optim = resolve_optim(train.optim, torch.cuda.is_available())
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(output_dir=scratch, optim=optim, learning_rate=train.learning_rate,
                                 weight_decay=train.weight_decay, report_to="none")
        try:
            optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
            optimizer = optimizer_class([torch.nn.Parameter(torch.zeros(2))], **kwargs)
        except (ImportError, ValueError, TypeError, RuntimeError) as err:
            raise UserError(f"train.optim {train.optim!r}: cannot be built on this machine ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:160]}); use auto or adamw_torch") from None
    try:
        get_scheduler(train.lr_scheduler_type, optimizer, num_warmup_steps=train.warmup_steps,
                      num_training_steps=train.max_steps, scheduler_specific_kwargs=dict(train.lr_scheduler_kwargs))
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"train.lr_scheduler_type {train.lr_scheduler_type!r} with train.lr_scheduler_kwargs "
                        f"{dict(train.lr_scheduler_kwargs)}: cannot be built ({type(err).__name__}: "
                        f"{str(err).splitlines()[0][:160]}); give the arguments it needs in "
                        "train.lr_scheduler_kwargs, or use linear or cosine") from None


def check_processes(train, processes: int) -> None:
    """Refuse what cannot train data-parallel: FP8's converted projections are not measured under DDP."""
    if processes > 1 and precision.for_training(train).name == "fp8":
        raise UserError(f"train.base_precision fp8 trains in one process; set train.num_processes: 1 or "
                        f"train.base_precision: bf16 for {processes} processes")


def setup(base: BaseModel, train, lora, seed: int, lengths: list[int]) -> Session:
    """The base model with LoRA, ready to train on rows of these token lengths."""
    base_model.check_lora(base, lora)
    stored_as = precision.for_training(train)
    stored_as.require_machine()  # before the weights load
    runtime.setup(seed)
    backend = backends.get(train.backend)
    model, tokenizer = backend.load(base, stored_as, train.max_seq_length)
    checkpointing, estimate = decide_checkpointing(train, backend, model, lengths)
    try:
        model = stored_as.add_lora(backend, model, lora, seed, checkpointing)
    except ValueError as err:  # PEFT: a target module the model does not have
        raise UserError(f"lora.target_modules: {str(err).splitlines()[0]}") from None
    return Session(model, tokenizer, backend, checkpointing, estimate,
                   steplog.step_logger(model, tokenizer.pad_token_id))


def decide_checkpointing(train, backend: backends.Backend, model, lengths: list[int]) -> tuple[bool, float | None]:
    """train.gradient_checkpointing resolved for this model on this device, and the estimated peak (GiB) of the
    largest micro-batch of rows of these lengths without recomputation (None on the CPU). See medical_r1/model/memory.py."""
    import torch

    if not torch.cuda.is_available():
        return memory.choose_checkpointing(train.gradient_checkpointing, None, None), None
    batch = train.per_device_train_batch_size
    lengths = [min(n, train.max_seq_length) for n in lengths]
    tokens = (batch * train.max_seq_length if train.packing
              else memory.worst_batch_tokens(lengths, batch, padding_free=backend.padding_free))
    loaded = torch.cuda.memory_allocated() / 2**30
    estimate = memory.estimated_peak_gib(backend.activation_bytes_per_token(model.config), tokens, loaded)
    gpu = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2**30
    return memory.choose_checkpointing(train.gradient_checkpointing, estimate, gpu), round(estimate, 2)


def fit(session: Session, train_rows: list[dict], eval_rows: list[dict] | None, train, seed: int,
        output_dir: str | Path, callbacks: list = (), resume_from: Path | None = None) -> float:
    """Train on the rows' `text` (prompt + reasoning + answer + EOS); the wall time in seconds, counting the time
    a resumed run had spent before (session.log restored from its checkpoint). A run whose loss or gradient norm
    stops being finite ends at that step with steplog.Diverged (a UserError)."""
    trainer = sft_trainer(session, train_rows, eval_rows, train, seed, str(output_dir), [session.log, *callbacks])
    session.packing = bool(trainer.args.packing)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if session.log.diverged:
        raise steplog.Diverged(session.log.diverged)
    return time.perf_counter() - started + session.log.offset


def sft_trainer(session: Session, train_rows: list[dict], eval_rows: list[dict] | None, train, seed: int,
                output_dir: str, callbacks: list):
    """TRL's SFTTrainer configured from train.*; held-out loss every save_steps when there are held-out rows."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    dtype = getattr(session.model, "dtype", torch.float32)
    args = SFTConfig(
        output_dir=output_dir, seed=seed, data_seed=seed, report_to="none",
        max_steps=train.max_steps, per_device_train_batch_size=train.per_device_train_batch_size,
        per_device_eval_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps, learning_rate=train.learning_rate,
        warmup_steps=train.warmup_steps, optim=resolve_optim(train.optim, cuda), weight_decay=train.weight_decay,
        lr_scheduler_type=train.lr_scheduler_type, lr_scheduler_kwargs=dict(train.lr_scheduler_kwargs),
        logging_steps=train.logging_steps, save_steps=train.save_steps,
        save_total_limit=2, eval_strategy="steps" if eval_rows else "no", eval_steps=train.save_steps,
        bf16=cuda and dtype == torch.bfloat16, fp16=cuda and dtype == torch.float16,
        max_length=train.max_seq_length, packing=train.packing, dataset_text_field="text",
        dataloader_num_workers=0, logging_nan_inf_filter=False,  # a NaN loss must reach steplog, not be averaged away
        dataloader_pin_memory=cuda, accelerator_config={"non_blocking": cuda},  # a batch's copy waits for no GPU work
        ddp_find_unused_parameters=False if distributed.active() else None,  # LoRA: every trainable weight is used
        use_cpu=not cuda,  # else accelerate runs gloo processes as unrelated single ones, each on all the rows
        **session.backend.trainer_args(session.gradient_checkpointing))
    to_dataset = lambda rows: Dataset.from_list([{"text": r["text"]} for r in rows])  # noqa: E731
    return SFTTrainer(model=session.model, args=args, processing_class=session.tokenizer,
                      train_dataset=to_dataset(train_rows), eval_dataset=to_dataset(eval_rows) if eval_rows else None,
                      callbacks=callbacks)


def save_adapter(model, tokenizer, directory: Path, base_dir: Path) -> None:
    """The trainable adapter (`default`; not a frozen reference copy), the tokenizer and which base in `base_dir` it
    was trained on, replacing `directory` whole. PEFT writes target_modules from a set, in an order that changes with
    Python's hash seed: sorted here, so that reruns write byte-identical adapters."""
    with files.replaced_dir(directory) as work_dir:
        model.save_pretrained(work_dir, safe_serialization=True, selected_adapters=["default"])
        config_path = work_dir / "adapter_config.json"
        adapter_config = files.read_json(config_path)
        if isinstance(adapter_config.get("target_modules"), list):
            adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
        files.write_json(config_path, adapter_config)
        base_model.save_tokenizer(tokenizer, work_dir)
        base_model.record_base(work_dir, base_dir)
