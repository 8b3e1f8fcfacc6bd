"""The tiny random BERT of smoke runs and tests: a word-level vocabulary drawn from the data, random weights."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizer

from pipeline.core.config import ModelConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_random(out_dir: Path, texts: list[str], cfg: ModelConfig, seed: int, vocab_size: int = 4000) -> None:
    """A small randomly initialised BERT with a word-level vocabulary drawn from `texts` (smoke runs and tests)."""
    words = Counter(w for t in texts for w in _basic_split(t))
    vocab = SPECIAL_TOKENS + sorted(w for w, _ in words.most_common(vocab_size - len(SPECIAL_TOKENS)))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=cfg.tiny_hidden_size,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=cfg.tiny_heads,
        intermediate_size=4 * cfg.tiny_hidden_size,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out_dir)


def _basic_split(text: str) -> list[str]:
    out, word = [], []
    for ch in text.lower():
        if ch.isalnum():
            word.append(ch)
            continue
        if word:
            out.append("".join(word))
            word = []
        if not ch.isspace():
            out.append(ch)
    if word:
        out.append("".join(word))
    return out
