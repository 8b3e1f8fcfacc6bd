"""Tokenised splits on disk and the batches built from them.

A split is stored as flat `.npy` arrays (token ids of all examples end to end, their offsets, labels) plus the
example ids and texts in JSON: memory-mapped on load, no pickle. Two fingerprints: the examples' own (ids, texts,
labels, in order: what soft targets are joined by, whichever tokenizer reads them) and the tokenised split's (which
also changes with the tokenizer or the maximum length). Batches are padded to their own longest example (dynamic
padding). A student or teacher with a tokenizer of its own reads the examples retokenised (`retokenize`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.core.glue import Example
from pipeline.core.store import StoreError, digest, read_json, read_npy, write_json, write_npy
from pipeline.core.tasks import TaskSpec


@dataclass(frozen=True)
class TokenizedSplit:
    """One task's split, tokenised. `labels` are class indices (as float) or raw regression scores."""

    task: str
    split: str
    ids: list[str]
    input_ids: np.ndarray  # int32 [total tokens]
    token_type_ids: np.ndarray  # int8 [total tokens]
    offsets: np.ndarray  # int64 [N + 1]; example i is input_ids[offsets[i]:offsets[i + 1]]
    labels: np.ndarray  # float32 [N]
    fingerprint: str  # of the examples as tokenised here (examples, tokenizer, max length)
    examples_fingerprint: str  # of the examples alone: ids, texts and labels in order (`examples_fingerprint`)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def tokenize_split(
    examples: list[Example], tokenizer, max_length: int, task: str, split: str, batch: int = 2048
) -> TokenizedSplit:
    """Tokenise with the fast tokenizer in batches; pairs are truncated longest-first (a bar on a terminal)."""
    ids_parts, types_parts, lengths = [], [], []
    chunks = range(0, len(examples), batch)
    for start in tqdm(chunks, desc=f"tokenise {task}/{split}", disable=None, leave=False, dynamic_ncols=True):
        chunk = examples[start : start + batch]
        a = [ex.text_a for ex in chunk]
        b = [ex.text_b for ex in chunk] if chunk[0].text_b is not None else None
        enc = tokenizer(a, b, truncation=True, max_length=max_length, return_token_type_ids=True)
        for ids, types in zip(enc["input_ids"], enc["token_type_ids"]):
            ids_parts.append(np.asarray(ids, dtype=np.int32))
            types_parts.append(np.asarray(types, dtype=np.int8))
            lengths.append(len(ids))
    offsets = np.zeros(len(examples) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    input_ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int32)
    token_type_ids = np.concatenate(types_parts) if types_parts else np.zeros(0, np.int8)
    labels = np.asarray([float(ex.label) for ex in examples], dtype=np.float32)
    ids = [ex.id for ex in examples]
    tokenizer_id = f"{type(tokenizer).__name__}:{len(tokenizer)}:{digest(tokenizer.get_vocab())}:{max_length}"
    fingerprint = split_fingerprint(ids, input_ids, token_type_ids, offsets, labels, tokenizer_id)
    examples_id = examples_fingerprint(examples)
    return TokenizedSplit(task, split, ids, input_ids, token_type_ids, offsets, labels, fingerprint, examples_id)


def examples_fingerprint(examples: Sequence[Example]) -> str:
    """The examples themselves, in order: ids, both texts (a missing second text apart from an empty one) and labels
    as stored (float32). The same for every tokenizer; another example, text, label, order or a missing row changes
    it."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.id, ex.text_a, ex.text_b], ensure_ascii=False).encode() + b"\n")
    h.update(np.asarray([float(ex.label) for ex in examples], dtype=np.float32).tobytes())
    return h.hexdigest()


def split_fingerprint(ids, input_ids, token_type_ids, offsets, labels, tokenizer_id: str = "") -> str:
    """Changes with the examples, their labels, the token ids, the tokenizer's vocabulary and the max length."""
    h = hashlib.sha256()
    h.update(tokenizer_id.encode())
    h.update("\n".join(ids).encode())
    for arr in (input_ids, token_type_ids, offsets, labels):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def save_split(split: TokenizedSplit, out_dir: Path, texts: dict[str, list[str | None]] | None = None) -> None:
    """Write `split` into `out_dir`; with `texts` (`split_texts`, the data stage's), its examples' texts too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("input_ids", "token_type_ids", "offsets", "labels"):
        write_npy(out_dir / f"{name}.npy", getattr(split, name))
    write_json(out_dir / "ids.json", split.ids)
    if texts is not None:
        write_json(out_dir / "texts.json", texts)
    write_json(
        out_dir / "split.json",
        {
            "task": split.task,
            "split": split.split,
            "rows": len(split),
            "tokens": int(split.offsets[-1]),
            "fingerprint": split.fingerprint,
            "examples_fingerprint": split.examples_fingerprint,
        },
    )


def split_texts(examples: Sequence[Example]) -> dict[str, list[str | None]]:
    """The texts `save_split` keeps beside the token ids, so that another tokenizer can read the same examples."""
    return {"text_a": [ex.text_a for ex in examples], "text_b": [ex.text_b for ex in examples]}


def split_dir(run_dir: Path, task: str, split: str) -> Path:
    return run_dir / "data" / task / split


def load_split(run_dir: Path, task: str, split: str) -> TokenizedSplit:
    """Load a tokenised split written by the data stage (memory-mapped)."""
    d = split_dir(run_dir, task, split)
    if not (d / "split.json").is_file():
        raise StoreError(f"no tokenised data at {d}; run the data stage")
    meta = read_json(d / "split.json")
    if "examples_fingerprint" not in meta:
        raise StoreError(f"{d / 'split.json'}: made by an older run-folder format (no examples fingerprint); rerun it")
    arrays = {name: read_npy(d / f"{name}.npy") for name in ("input_ids", "token_type_ids", "offsets", "labels")}
    return TokenizedSplit(
        task, split, read_json(d / "ids.json"), fingerprint=meta["fingerprint"],
        examples_fingerprint=meta["examples_fingerprint"], **arrays,
    )  # fmt: skip


def load_examples(run_dir: Path, task: str, split: str) -> list[Example]:
    """The examples of a split the data stage stored (ids, texts, labels as stored: float), to be tokenised by another
    tokenizer."""
    d = split_dir(run_dir, task, split)
    if not (d / "texts.json").is_file():
        raise StoreError(f"no example texts at {d}; run the data stage")
    ids, texts, labels = read_json(d / "ids.json"), read_json(d / "texts.json"), read_npy(d / "labels.npy")
    if not len(ids) == len(texts["text_a"]) == len(texts["text_b"]) == len(labels):
        raise StoreError(f"{d}: {len(ids)} ids, {len(texts['text_a'])} texts and {len(labels)} labels; rerun data")
    return [Example(*row) for row in zip(ids, texts["text_a"], texts["text_b"], labels.tolist())]


def retokenize(run_dir: Path, stored: TokenizedSplit, tokenizer, max_length: int) -> TokenizedSplit:
    """The examples of `stored` (a split of `run_dir` as the data stage wrote it) tokenised by another `tokenizer` (a
    student's or an ensemble member's own), in memory; checked to be the examples `stored` records."""
    examples = load_examples(run_dir, stored.task, stored.split)
    tokenized = tokenize_split(examples, tokenizer, max_length, stored.task, stored.split)
    if tokenized.examples_fingerprint != stored.examples_fingerprint:
        d = split_dir(run_dir, stored.task, stored.split)
        raise StoreError(f"{d}: the stored texts are not the examples it records; rerun the data stage")
    return tokenized


def scaled_labels(task: TaskSpec, labels: np.ndarray) -> np.ndarray:
    """Regression labels scaled to [0, 1] by the task's range (STS-B: score / 5); class indices unchanged."""
    if task.kind == "regression":
        lo, hi = task.label_range
        return (labels - lo) / (hi - lo)
    return labels


def unscale(task: TaskSpec, outputs: np.ndarray) -> np.ndarray:
    """Model outputs back to the label's own scale for metrics (inverse of `scaled_labels`)."""
    if task.kind == "regression":
        lo, hi = task.label_range
        return outputs[:, 0] * (hi - lo) + lo
    return outputs


def collate(
    items: list[tuple[int, int]],
    splits: Sequence[TokenizedSplit] | Mapping[int, TokenizedSplit],
    tasks: Sequence[TaskSpec],
    teacher: Sequence[np.ndarray | None] | None = None,
    max_outputs: int = 1,
    split_pairs: bool = False,
    pad_id: int = 0,
    swapped: Sequence[bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Build one padded batch from (task index, row) pairs; examples of different tasks may share a batch.

    Returns input_ids / attention_mask / token_type_ids [B, T], task_ids [B], labels [B] (regression scaled to
    [0, 1]) and, when teacher outputs are given, teacher [B, C_max] (each row's own task in the first C_τ columns).

    With `split_pairs` (a siamese model), a sentence pair, stored as [CLS] a [SEP] b [SEP] with token types 0 then
    1, is cut in two by token type: input_ids holds [CLS] a [SEP], and input_ids_b / attention_mask_b [B, T_b] hold
    [CLS] b [SEP] (the example's first token put before b, token types 0). A single sentence stays whole in
    input_ids, with an empty second part.

    Padding uses `pad_id` (the tokenizer's pad token: 0 for BERT, 1 for RoBERTa; `MultiTaskModel.pad_id`).
    `swapped[i]` reads item i's sentence pair in the other order (`swap_pair`).
    """
    n = len(items)
    firsts, seconds = [], []
    labels = np.zeros(n, dtype=np.float32)
    teacher_out = np.zeros((n, max_outputs), dtype=np.float32)
    for i, (t, r) in enumerate(items):
        s = splits[t]
        lo, hi = s.offsets[r], s.offsets[r + 1]
        ids, types = s.input_ids[lo:hi], s.token_type_ids[lo:hi]
        if swapped is not None and swapped[i]:
            ids, types = swap_pair(ids, types)
        if split_pairs:
            b = types == 1
            seconds.append(np.concatenate([ids[:1], ids[b]]) if b.any() else ids[:0])
            ids, types = ids[~b], types[~b]
        firsts.append((ids, types))
        labels[i] = scaled_labels(tasks[t], s.labels[r])
        if teacher is not None and teacher[t] is not None:
            row = teacher[t][r]
            teacher_out[i, : row.shape[0]] = row
    input_ids, mask = _pad([ids for ids, _ in firsts], pad_id)
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
        "token_type_ids": torch.from_numpy(_pad([types for _, types in firsts])[0]),
        "task_ids": torch.tensor([t for t, _ in items], dtype=torch.long),
        "labels": torch.from_numpy(labels),
    }
    if split_pairs:
        input_ids_b, mask_b = _pad(seconds, pad_id)
        batch |= {"input_ids_b": torch.from_numpy(input_ids_b), "attention_mask_b": torch.from_numpy(mask_b)}
    if teacher is not None:
        batch["teacher"] = torch.from_numpy(teacher_out)
    return batch


def swap_pair(ids: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pair stored as [CLS] a [SEP] b [SEP] (token types 0 then 1) as [CLS] b [SEP] a [SEP], token types 0 for
    [CLS] b [SEP] and 1 for a [SEP]: the same tokens, the sentences in the other order. A single sentence is kept."""
    second = types == 1
    if not second.any():
        return ids, types
    first = ids[~second]  # [CLS] a [SEP]
    b = ids[second]  # b [SEP]
    new_types = np.concatenate([np.zeros(1 + len(b), types.dtype), np.ones(len(first) - 1, types.dtype)])
    return np.concatenate([first[:1], b, first[1:]]), new_types


def _pad(rows: list[np.ndarray], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of token ids → [N, longest] int64, padded on the right with `pad_id`, and its attention mask."""
    out = np.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=np.int64)
    mask = np.zeros_like(out)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return out, mask
