"""A small deterministic synthetic GLUE set in the original TSV layout, so smoke runs need no real data.

Four tasks, each learnable by a tiny model from a vocabulary of about 100 lowercase words (no GLUE text):

* sst2: a bag of words; label 1 when positive keywords outnumber negative ones.
* mrpc: a pair; label 1 when the second sentence is a shuffled copy of the first with at most one word replaced.
* stsb: a pair; score = 5 × the Jaccard word overlap |A ∩ B| / |A ∪ B|, rounded to 0.2 steps.
* rte: a pair; "entailment" when every hypothesis word occurs in the premise.

Example:
    python -c "from pipeline.core.synthetic import write_synthetic_glue as w; w('artifacts/synthetic_glue')"
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from pipeline.core.tasks import TASKS

SYNTHETIC_TASKS = ("sst2", "mrpc", "stsb", "rte")

POSITIVE = ("good", "great", "lovely", "bright", "warm", "happy", "brilliant", "superb", "charming", "pleasant")
NEGATIVE = ("bad", "awful", "dull", "grim", "boring", "sad", "terrible", "poor", "weak", "bleak")
NEUTRAL = (
    "the", "a", "film", "story", "actor", "scene", "plot", "music", "city", "river", "garden", "house", "road",
    "tree", "stone", "cloud", "window", "table", "chair", "book", "letter", "song", "dog", "cat", "horse", "bird",
    "ship", "train", "car", "boat", "bridge", "market", "school", "teacher", "doctor", "farmer", "child", "friend",
    "king", "queen", "village", "forest", "mountain", "lake", "island", "kitchen", "lamp", "door", "wall", "clock",
    "coin", "map", "walks", "runs", "sees", "holds", "finds", "opens", "carries", "reads", "paints", "builds",
    "watches", "near", "under", "over", "behind", "with", "from", "into", "red", "green", "blue", "old", "new",
    "small",
)  # fmt: skip

Row = list[str]


def _balanced_labels(rng: random.Random, n: int, classes: int) -> list[int]:
    """`n` labels cycling through `classes` values, shuffled: every class appears whenever n >= classes."""
    labels = [i % classes for i in range(n)]
    rng.shuffle(labels)
    return labels


def _sst2_rows(rng: random.Random, n: int) -> tuple[Row, list[Row]]:
    rows = []
    for label in _balanced_labels(rng, n, 2):
        major = rng.randint(1, 3)
        minor = rng.randint(0, major - 1)
        positive, negative = (major, minor) if label == 1 else (minor, major)
        words = rng.choices(POSITIVE, k=positive) + rng.choices(NEGATIVE, k=negative)
        words += rng.choices(NEUTRAL, k=rng.randint(3, 6))
        rng.shuffle(words)
        rows.append([" ".join(words), str(label)])
    return ["sentence", "label"], rows


def _mrpc_rows(rng: random.Random, n: int) -> tuple[Row, list[Row]]:
    rows = []
    for label in _balanced_labels(rng, n, 2):
        first = rng.sample(NEUTRAL, 8)
        others = [w for w in NEUTRAL if w not in first]
        if label == 1:  # a shuffled near copy: at most one word replaced
            second = first[:]
            if rng.random() < 0.5:
                second[rng.randrange(len(second))] = rng.choice(others)
        else:  # a different sentence sharing at most two words
            shared = rng.randint(0, 2)
            second = rng.sample(first, shared) + rng.sample(others, 8 - shared)
        rng.shuffle(second)
        ids = [str(rng.randrange(100000, 3000000)) for _ in range(2)]
        rows.append([str(label), *ids, " ".join(first), " ".join(second)])
    return ["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"], rows


def _stsb_rows(rng: random.Random, n: int) -> tuple[Row, list[Row]]:
    header = "index genre filename year old_index source1 source2 sentence1 sentence2 score".split()
    rows = []
    for index, kept in enumerate(_balanced_labels(rng, n, 7)):  # kept = 0..6 words shared by the pair
        first = rng.sample(NEUTRAL, 6)
        others = [w for w in NEUTRAL if w not in first]
        second = rng.sample(first, kept) + rng.sample(others, rng.randint(0 if kept else 1, 6 - kept))
        rng.shuffle(second)
        overlap = len(set(first) & set(second)) / len(set(first) | set(second))
        score = int(5 * overlap * 5 + 0.5) / 5  # 5 × overlap, rounded half up to a multiple of 0.2
        meta = [str(index), "synthetic", "synthetic", "2024", f"{index:04d}", "none", "none"]
        rows.append([*meta, " ".join(first), " ".join(second), f"{score:.3f}"])
    return header, rows


def _rte_rows(rng: random.Random, n: int) -> tuple[Row, list[Row]]:
    rows = []
    for index, label in enumerate(_balanced_labels(rng, n, 2)):
        premise = rng.sample(NEUTRAL, 8)
        size = rng.randint(3, 4)
        if label == 0:  # entailment: the hypothesis words are a subset of the premise
            hypothesis = rng.sample(premise, size)
        else:
            novel = rng.randint(1, 2)
            others = [w for w in NEUTRAL if w not in premise]
            hypothesis = rng.sample(premise, size - novel) + rng.sample(others, novel)
            rng.shuffle(hypothesis)
        rows.append([str(index), " ".join(premise), " ".join(hypothesis), TASKS["rte"].tsv_labels[label]])
    return ["index", "sentence1", "sentence2", "label"], rows


_BUILDERS: dict[str, Callable[[random.Random, int], tuple[Row, list[Row]]]] = {
    "sst2": _sst2_rows,
    "mrpc": _mrpc_rows,
    "stsb": _stsb_rows,
    "rte": _rte_rows,
}


def write_synthetic_glue(out_dir: str | Path, n_train: int = 160, n_dev: int = 48, seed: int = 0) -> list[str]:
    """Write `out_dir/<glue_dir>/{train,dev}.tsv` for `SYNTHETIC_TASKS` in each task's original GLUE layout.

    The same arguments always give byte-identical files.

    Args:
        out_dir: Root of the GLUE TSV layout to write (created if missing; existing files are overwritten).
        n_train: Rows per train split (at least 2, so every binary class appears).
        n_dev: Rows per dev split (at least 2).
        seed: Random seed; each (task, split) gets its own stream derived from it.

    Returns:
        The sorted list of every word used in the text columns.

    Raises:
        ValueError: `n_train` or `n_dev` is below 2.
    """
    if n_train < 2 or n_dev < 2:
        raise ValueError(f"n_train and n_dev must be at least 2, got n_train={n_train}, n_dev={n_dev}")
    vocabulary: set[str] = set()
    for name in SYNTHETIC_TASKS:
        task = TASKS[name]
        folder = Path(out_dir) / task.glue_dir
        folder.mkdir(parents=True, exist_ok=True)
        for split, n in (("train", n_train), ("dev", n_dev)):
            rng = random.Random(f"{seed}/{name}/{split}")  # str seeds hash with SHA-512: stable across runs
            header, rows = _BUILDERS[name](rng, n)
            text_index = [[h.lstrip("\ufeff") for h in header].index(c) for c in task.text_columns]
            for row in rows:
                vocabulary.update(word for i in text_index for word in row[i].split())
            lines = ["\t".join(header), *("\t".join(row) for row in rows)]
            with open(folder / f"{split}.tsv", "w", encoding="utf-8", newline="\n") as f:
                f.write("\n".join(lines) + "\n")
    return sorted(vocabulary)


# ---- the samples of configs/custom-tasks.yaml ------------------------------------------------------------------------
# Three task shapes users bring, one per file format: five-class review sentiment (CSV, some rows quoted), question-pair
# duplicates (TSV with an index column) and sentence-pair similarity scored 0-5 (JSON Lines). Made from templates:
# no real text.

_GRADES = {  # stars → adjectives
    1: ("appalling", "horrible", "terrible"), 2: ("poor", "dull", "disappointing"), 3: ("fine", "average", "okay"),
    4: ("good", "decent", "pleasant"), 5: ("excellent", "superb", "outstanding"),
}  # fmt: skip
_ASPECTS = ("screen", "battery", "price", "soup", "coffee", "service", "music", "bed", "breakfast", "waiter", "manual")
_ASKS = (("how do i {v} a {o} {m}?", "what is the best way to {v} a {o} {m}?"),
         ("how should i {v} {o} {m}?", "what is the right way to {v} {o} {m}?"))  # fmt: skip
_VERBS = {
    "fix": ("bike", "laptop", "car", "phone"), "cook": ("rice", "pasta", "fish", "beans"),
    "learn": ("spanish", "guitar", "chess", "python"), "clean": ("oven", "carpet", "window", "fridge"),
}  # fmt: skip
_MANNERS = ("quickly", "cheaply", "at home", "without help")
_SCENE = {"subject": ("A child", "A cat", "An old man", "A woman"), "verb": ("is playing with", "is cleaning",
          "is holding", "is painting"), "object": ("a ball", "a small boat", "an apple", "a fence"),
          "place": ("on the beach", "in the kitchen", "near the river", "in a garden")}  # fmt: skip


def _review(rng: random.Random, stars: int) -> str:
    # mostly the review's own grade, at most one aspect a grade off: the stars stay learnable from the words
    grades = [stars] * rng.randint(2, 3)
    grades[0] = min(5, max(1, stars + rng.choice((-1, 0, 1))))
    parts = [f"the {a} was {rng.choice(_GRADES[g])}" for a, g in zip(rng.sample(_ASPECTS, len(grades)), grades)]
    text = ", ".join(parts[:-1]) + rng.choice((" and ", ", ")) + parts[-1]
    return text[0].upper() + text[1:] + rng.choice((".", "!", "..."))


def _question_pair(rng: random.Random, duplicate: bool) -> tuple[str, str]:
    verb = rng.choice(sorted(_VERBS))
    first, second = rng.sample(_VERBS[verb], 2)
    manner = rng.choice(_MANNERS)
    ask, paraphrase = rng.choice(_ASKS)
    if not duplicate and rng.random() < 0.5:  # a different question asked the same way
        paraphrase = ask
    other = first if duplicate else second
    return ask.format(v=verb, o=first, m=manner), paraphrase.format(v=verb, o=other, m=manner)


def _similar_pair(rng: random.Random) -> tuple[str, str, float]:
    a = {slot: rng.choice(words) for slot, words in _SCENE.items()}
    shared = rng.randint(0, len(_SCENE))  # slots b keeps from a; the score follows them, with a little noise
    kept = set(rng.sample(sorted(_SCENE), shared))
    b = {slot: a[slot] if slot in kept else rng.choice([w for w in words if w != a[slot]])
         for slot, words in _SCENE.items()}  # fmt: skip
    score = round(min(5.0, max(0.0, 5 * shared / len(_SCENE) + rng.uniform(-0.4, 0.4))), 1)
    return (" ".join(a[s] for s in _SCENE) + ".", " ".join(b[s] for s in _SCENE) + ".", score)


def write_custom_examples(out_dir: str | Path, n_train: int = 200, n_dev: int = 50, seed: int = 0) -> list[Path]:
    """Write the sample files `configs/custom-tasks.yaml` reads into `out_dir`: reviews-{train,dev}.csv,
    questions-{train,dev}.tsv and similarity-{train,dev}.jsonl. The same arguments give byte-identical files.

    Returns:
        The files written.
    """
    import csv
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split, n in (("train", n_train), ("dev", n_dev)):
        rng = random.Random(f"{seed}/custom/{split}")
        path = out_dir / f"reviews-{split}.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:  # csv quotes the rows with commas
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["review", "stars"])
            writer.writerows([_review(rng, label + 1), label + 1] for label in _balanced_labels(rng, n, 5))
        written.append(path)
        path = out_dir / f"questions-{split}.tsv"
        rows = ["id\tquestion1\tquestion2\tis_duplicate"]
        for i, label in enumerate(_balanced_labels(rng, n, 2)):
            rows.append("\t".join([str(i), *_question_pair(rng, bool(label)), str(label)]))
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        written.append(path)
        path = out_dir / f"similarity-{split}.jsonl"
        pairs = [_similar_pair(rng) for _ in range(n)]
        lines = [json.dumps({"sentence_a": a, "sentence_b": b, "score": s}) for a, b, s in pairs]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written
