"""A tiny randomly initialised Qwen2 model with the bundled model's tokenizer, for fast unit tests.

Same vocabulary and tokenizer as Qwen2.5-Coder-0.5B, two layers of width 64: every code path of
the real model runs, in milliseconds. The weights are random but fixed by the seed.
"""

from __future__ import annotations

from typing import Any

import torch

from search.model.bundled import tokenizer_dir
from search.model.hf import HFModel, tokenizer_fingerprint
from search.model.lm import ModelIdentity


def bundled_tokenizer() -> Any:
    """A fresh copy of the bundled model's tokenizer (fresh: a test may change its settings)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir("bundled-default")))


def tiny_prm_config(tok: Any, **extra: Any) -> Any:
    """A one-layer Qwen2 configuration over ``tok``'s vocabulary, the shape the PRM tests build."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def make_tiny_lm(seed: int = 0, dtype: torch.dtype = torch.float32, layers: int = 2) -> HFModel:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = bundled_tokenizer()
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
