"""A tiny randomly initialised Qwen2 model with the bundled model's tokenizer, for fast unit tests.

Same vocabulary and tokenizer as Qwen2.5-Coder-0.5B, two layers of width 64: every code path of
the real model runs, in milliseconds. The weights are random but fixed by the seed.
"""

from __future__ import annotations

import torch

from search.model.bundled import tokenizer_dir
from search.model.hf import HFModel, tokenizer_fingerprint
from search.model.lm import ModelIdentity


def make_tiny_lm(seed: int = 0, dtype: torch.dtype = torch.float32, layers: int = 2) -> HFModel:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir("bundled-default")))
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(dtype)
    model.config._attn_implementation = "sdpa"
    identity = ModelIdentity(
        f"tiny-qwen2-seed{seed}",
        f"random-{seed}-{layers}",
        tokenizer_fingerprint(tok),
        str(dtype).replace("torch.", ""),
    )
    return HFModel(model, tok, identity, kv_cache_bytes=64 << 20)
