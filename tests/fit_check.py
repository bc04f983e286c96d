"""`python -m tests.fit_check <backend>` in a prepared working directory: one finetune.setup + finetune.fit on the
prepared rows, then print how many LoRA and base tensors the training changed (tests/test_train.py reads it).
A process of its own, since Unsloth patches transformers for the whole process."""

import sys
import tempfile

from medical_r1 import config, files
from medical_r1.training import finetune
from medical_r1.model.base_model import BaseModel


def main(backend: str) -> None:
    import torch

    params = config.load(overrides={"train.backend": backend})
    rows = files.read_jsonl("data/prepared/train.jsonl")
    session = finetune.setup(BaseModel.read("models/base"), params.train, params.lora, params.seed,
                             [r["n_tokens"] for r in rows])
    before = {name: p.detach().clone() for name, p in session.model.named_parameters()}
    with tempfile.TemporaryDirectory() as scratch:
        finetune.fit(session, rows, rows[:2], params.train, params.seed, scratch)
    after = dict(session.model.named_parameters())
    lora = [name for name in before if "lora_" in name]
    frozen = [name for name in before if "lora_" not in name]
    changed = lambda names: sum(not torch.equal(before[n], after[n]) for n in names)  # noqa: E731
    print(len(lora), changed(lora), len(frozen), changed(frozen), len(session.log.rows), len(session.log.evals))


if __name__ == "__main__":
    main(sys.argv[1])
