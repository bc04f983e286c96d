"""Published MedQA / MedMCQA / PubMedQA accuracies of 8B models, shown in the report beside a run's own.

All are accuracies of generated answers (not of the options' log-likelihoods), each under its paper's own prompt
and generation settings.
"""

from __future__ import annotations

from dataclasses import dataclass

SETS = {"medqa": "MedQA", "medmcqa": "MedMCQA", "pubmedqa": "PubMedQA"}
"""The eval.mcq_sets the references report, and how the report names them."""


@dataclass(frozen=True)
class Reference:
    model: str
    accuracy: dict[str, float]
    """Set name (SETS) -> accuracy in %."""
    source: str
    """Paper and table."""


HUATUOGPT_O1 = "HuatuoGPT-o1 (Chen et al., 2024), table 1"
REFERENCES = (
    Reference("DeepSeek-R1-Distill-Llama-8B", {"medqa": 55.4, "medmcqa": 49.0, "pubmedqa": 73.9},
              "MedReason (Wu et al., 2025), table 3"),
    Reference("Llama-3.1-8B-Instruct", {"medqa": 58.7, "medmcqa": 56.0, "pubmedqa": 75.2}, HUATUOGPT_O1),
    Reference("HuatuoGPT-o1-8B, SFT only", {"medqa": 69.0, "medmcqa": 57.9, "pubmedqa": 77.7}, HUATUOGPT_O1),
    Reference("HuatuoGPT-o1-8B, SFT + RL", {"medqa": 72.6, "medmcqa": 60.4, "pubmedqa": 79.2}, HUATUOGPT_O1),
)
PROTOCOL = "generated answers, the paper's prompt and budget"
