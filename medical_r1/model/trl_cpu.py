"""Let TRL 1.x's SFTTrainer train on a CPU.

TRL computes the SFT loss through a fused LM head whose kernel is Triton-only, so on a machine without
a GPU every training step fails ("0 active drivers"). `install_if_no_gpu()` routes that head, on the CPU only,
to the plain-PyTorch computation below (patches.TRL_CPU_LOSS): the same per-token outputs, with the logits
materialized.
"""

from __future__ import annotations

from medical_r1.model import patches


class _TorchLogProbs:
    """Drop-in for trl's `_ChunkedLogProbFunction.apply`, in plain autograd."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs=()):
        import torch

        logits = torch.nn.functional.linear(hidden, weight, bias).float() * logit_scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        log_probs = torch.log_softmax(logits / temperature, dim=-1)
        target = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            probs = log_probs.exp()
            extra = {
                "entropy": -(probs * log_probs).sum(-1),
                "log_sum_sq_probs": torch.logsumexp(2 * log_probs, dim=-1),
                "mean_logits": logits.mean(-1),
                "is_top1": logits.argmax(-1) == targets,
            }
        return (target, *(extra[name] if name in outputs else None
                          for name in ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")))


def install_if_no_gpu() -> None:
    """Route TRL's fused LM head to plain PyTorch when there is no CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        patches.apply(patches.TRL_CPU_LOSS, _TorchLogProbs)
