"""The embedded default: a small Llama and a byte-level BPE tokenizer trained on our own texts.

Both are seeded and saved in Hugging Face format, so every backend loads them like a hub model.
The tokenizer has its own EOS and a distinct pad token, and knows `<think>`/`</think>` as whole tokens.
"""

from __future__ import annotations

from pathlib import Path

from medical_r1 import runtime
from medical_r1.data import prompts

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"


def train_tokenizer(texts: list[str], vocab_size: int, max_length: int):
    """A byte-level BPE tokenizer (PreTrainedTokenizerFast) trained on `texts`."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    bpe.add_tokens([AddedToken(t, normalized=False) for t in (prompts.THINK_OPEN, prompts.THINK_CLOSE)])
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bpe.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=max_length, padding_side="right")


def build_model(tokenizer, shape, seed: int, max_position_embeddings: int):
    """A randomly initialised LlamaForCausalLM of the given shape, deterministic for a seed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, rope_theta=10000.0,
        torch_dtype="float32",
    )
    runtime.seed_all(seed)
    model = LlamaForCausalLM(config)
    # LoRA leaves lm_head frozen. At the usual std of 0.02 a 128-wide head caps every logit near 2.5,
    # so no adapter could push the loss below ~5 nats; unit-norm rows give it a pretrained model's range.
    torch.nn.init.normal_(model.lm_head.weight, std=shape.hidden_size ** -0.5)
    return model


def save(model, tokenizer, directory: Path) -> None:
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
