"""The LoRA SFT recipe (setup -> fit), its step log, checkpoints and timing callbacks."""
