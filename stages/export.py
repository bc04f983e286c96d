"""export: the tuned model as a hub repo: the merged model at the root, the adapter alone in adapter/, a card in each.

    python -m stages.export                                # models/export/ (and reports/export/metrics.json)
    python -m stages.export --push-to-hub you/medical-r1   # then upload it: private, token from HF_TOKEN
    dvc repro export/dvc.yaml                              # the same as a DVC stage, never part of `dvc repro`

Reads   params.yaml: seed, model.*, data.source, data.config, data.revision, lora.*, train.*;
        models/base/, models/tuned/, data/prepared/eval.jsonl, reports/eval/base/metrics.json,
        reports/eval/tuned/metrics.json,
        reports/train/run.json
Writes  models/export/          the adapter merged into the base (config.json, safetensors in 5 GB shards, tokenizer,
                                generation_config.json) and its model card README.md (huggingface_hub ModelCard: base
                                model, data, LoRA and training params, the prompt template with an example, base and
                                tuned scores as metadata, how to load it). Pushed, it loads with plain transformers, no
                                PEFT or Unsloth: AutoModelForCausalLM.from_pretrained("you/medical-r1"). A 4-bit run
                                merges into its base dequantized to 16-bit (the card says so).
        models/export/adapter/  the LoRA adapter alone (PEFT format, models/tuned/ as rl hands it on) with a card of its
                                own, for those who keep the base: PeftModel.from_pretrained(base, "you/medical-r1",
                                subfolder="adapter")
        reports/export/metrics.json  the merge check: teacher-forced loss on the held-out rows with the adapter and
                                after the merge; seconds, peak memory, the merged model's size on disk (merged_bytes:
                                the root's files but its card)
The cards load from the repo given with --push-to-hub (else `you/<model name>`, for the reader to replace).
The merged weights keep the dtype the model ran in: bf16 on a GPU, float32 for the tiny model on a CPU. A bf16 merge
rounds away part of a small adapter (medical_r1/generation/inference.py, load): the check measures how much, and the
card says it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

from medical_r1 import UserError, artifacts, config, files, runtime
from medical_r1.artifacts import BASE, EVAL_ROWS, EXPORT, MODELS, TUNED
from medical_r1.generation import inference
from medical_r1.model import base_model
from medical_r1.model.base_model import BaseModel
from medical_r1.reporting import model_card

SHARD_SIZE = "5GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--push-to-hub", metavar="REPO", help=f"upload {EXPORT.path}/ to this hub repo (private)")
    args = parser.parse_args()
    params = config.load()
    export(params, args.push_to_hub)
    if args.push_to_hub:
        push(EXPORT.path, args.push_to_hub)


def export(params, repo: str | None = None) -> None:
    """Merge the adapter into the base, check the merge on the held-out rows, and write models/export/ with cards
    that load from `repo`."""
    files.require_inputs([BASE.path / base_model.BASE_FILE, EVAL_ROWS.path], "prepare")
    files.require_inputs([TUNED.path / "adapter_config.json"], "rl")
    base_model.require_adapter(TUNED.path, BASE.path, "train and rl")
    artifacts.require_all(*artifacts.read_by("export"))
    artifacts.require_outputs_writable("export")
    runtime.setup()
    rows = files.read_jsonl(EVAL_ROWS.path)
    model, tokenizer = inference.load(BaseModel.read(BASE.path), TUNED.path, params.train.load_in_4bit, merge=False)
    started = time.perf_counter()
    with_adapter = inference.teacher_forced_loss(model, tokenizer, rows, "auto", params.train.max_seq_length)["full"]
    merge_started = time.perf_counter()
    model = model.merge_and_unload()
    merge_seconds = time.perf_counter() - merge_started
    merged = inference.teacher_forced_loss(model, tokenizer, rows, "auto", params.train.max_seq_length)["full"]
    facts = model_card.Export(params, {name: artifacts.load_scores(name) for name in MODELS},
                              artifacts.load_run_info(), rows[0]["prompt"], commit(), repo)
    with files.replaced_dir(EXPORT.path) as work_dir:
        model.save_pretrained(work_dir, safe_serialization=True, max_shard_size=SHARD_SIZE)
        base_model.save_tokenizer(tokenizer, work_dir)
        shutil.copytree(TUNED.path, work_dir / model_card.ADAPTER_FOLDER,  # the PEFT adapter as users load it:
                        ignore=shutil.ignore_patterns(base_model.TRAINED_ON))  # without this repo's record of its base
        model_card.save(work_dir, facts, str(model.dtype).removeprefix("torch."), (with_adapter, merged))
    artifacts.EXPORT_METRICS.write_json({
        "loss_with_adapter": round(with_adapter, 6), "loss_merged": round(merged, 6),
        "loss_difference": round(abs(merged - with_adapter), 8), "merge_seconds": round(merge_seconds, 2),
        "export_seconds": round(time.perf_counter() - started, 2), **runtime.peak_memory(),
        "merged_bytes": sum(p.stat().st_size for p in merged_files(EXPORT.path))})
    print(f"export: {EXPORT.path} (merged loss {merged:.5f}, with the adapter {with_adapter:.5f})")


def merged_files(folder: Path) -> list[Path]:
    """The merged model's files in an export: everything but the adapter's folder and the card."""
    return [p for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).parts[0] not in (model_card.ADAPTER_FOLDER, model_card.CARD)]


def commit() -> str:
    """The commit the export came from (with `+changes` when the working tree differs), or `unknown`."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "stages", "medical_r1",
                                "params.yaml"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty else "")


def upload_list(folder: Path) -> list[str]:
    """The files `--push-to-hub` uploads, relative to the folder."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def push(folder: Path, repo: str) -> None:
    """Upload the export to a private hub repo with the token from the environment."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    names = upload_list(folder)
    if not token:
        raise UserError(f"--push-to-hub {repo}: no token in HF_TOKEN, so the {len(names)} files of {folder} "
                        f"({', '.join(names)}) stay here; set HF_TOKEN to a write token and run again")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo, private=True, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="medical-r1-lora export")
    except OSError as err:  # requests/httpx connection errors are OSErrors
        raise UserError(f"--push-to-hub {repo}: the hub is not reachable ({str(err).splitlines()[0]}); "
                        f"{folder} is complete here") from None
    print(f"export: uploaded {len(names)} files to https://huggingface.co/{repo} (private)")


if __name__ == "__main__":
    files.run_stage(main)
