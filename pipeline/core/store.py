"""The run folder on disk: atomic writes, checksums, stage manifests and the soft-target store.

A stage is done when its manifest exists and matches; the manifest is written last, atomically, and lists every
file the stage made with its sha256, so a half-written or truncated file is never taken for a finished one.
Nothing here uses pickle: arrays are `.npy` loaded with `allow_pickle=False`, records are JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import StoreError

# The run-folder format: every stage manifest, stage digest and per-task record carries it. Bump it whenever what a
# record means changes (a config key's effect, a file's layout, what a digest covers); a folder made by another
# format then reads as stale, with a message, and reruns. Format 2: config subsets hold every key, defaults included.
# Format 3: a split keeps its examples' texts and fingerprint, and soft targets are joined by that fingerprint (the
# examples themselves, whichever tokenizer reads them), no longer by the teachers' token ids.
FORMAT_VERSION = 3


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` in one `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise StoreError(f"{path}: not valid JSON ({err}); the file is corrupt") from None


def trim_log(path: Path, last_step: int) -> None:
    """Keep only the JSONL records up to `last_step` (the lines a resumed run will not write again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut short when the process died
            continue
    write_text(path, "".join(line + "\n" for line in kept))


def write_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def read_npy(path: str | Path, mmap: bool = True) -> np.ndarray:
    """Load an array without pickle, memory-mapped by default so large stores are not read whole."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:
        raise StoreError(f"{path}: not a plain .npy array ({err})") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_SHA_CACHE: dict[tuple[str, int, int, int, int, int], str] = {}


def source_sha256(path: str | Path) -> str:
    """`file_sha256` of an input read from outside the run folder (a data file, an init_from model), remembered
    for this process by the file's identity (device, inode, size, modification and change times in ns): the status
    of every stage and every variant of a reproduce call checks the same inputs, and hashing MNLI or a BERT-Large
    model each time would take seconds. A rewritten file gets new times, hence a new hash; a file changed in the
    last 2 s is hashed every time (timestamps are coarser than a nanosecond: two writes may share one)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _SHA_CACHE:
        return _SHA_CACHE[key]
    sha = file_sha256(path)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > 2_000_000_000:
        _SHA_CACHE[key] = sha
    return sha


def model_folder_digest(folder: Path) -> str:
    """A model folder outside the run folder by content (`source_sha256` of each file, not its model card, which a
    report rewrites); a missing folder is the digest of no files."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "README.md") if folder.is_dir() else []
    return digest({p.relative_to(folder).as_posix(): source_sha256(p) for p in files})


def replace_folder(new: Path, target: Path) -> None:
    """Put the finished folder `new` in the place of `target` (if any), by renames: `target` is never half old and
    half new, and its files are not written over in place (a hard link to one elsewhere stays as it was)."""
    old = target.with_name(target.name + ".replaced")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON form of `obj`."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def write_done(done: Path, made_for: str, folder: Path, files: list[Path], **extra: Any) -> None:
    """Record that `folder` holds finished work made for the digest `made_for`: `done.json` with the checksums of
    `files` (paths relative to `folder`), and `extra`. `done_intact` checks it."""
    sums = {p.relative_to(folder).as_posix(): file_sha256(p) for p in files}
    write_json(done, {"digest": made_for, **extra, "files": sums})


def done_intact(done: Path, digests: tuple[str, ...], folder: Path) -> bool:
    """Whether `done` (see `write_done`) was made for one of `digests` and every file it lists is unchanged."""
    if not done.is_file():
        return False
    record = read_json(done)
    files = record.get("files", {})
    return (
        record.get("digest") in digests
        and bool(files)
        and all((folder / rel).is_file() and file_sha256(folder / rel) == sha for rel, sha in files.items())
    )


# What a stage may make: records and logs, arrays, safetensors weights, tokenizer files, plots, generated TSVs and the
# model card. A file of another kind inside a stage's folders (a planted `pytorch_model.bin`, a `*.pkl`) is never
# recorded as an output: `status` lists it as an extra.
OUTPUT_SUFFIXES = (".json", ".jsonl", ".npy", ".safetensors", ".txt", ".model", ".md", ".png", ".tsv", ".yaml")
# Left behind by an interrupted write: a file or folder set aside while a stage reran, a temporary file or
# checkpoint, a model folder being saved or replaced, soft targets being made.
LEFTOVER_SUFFIXES = (".previous", ".tmp", ".saving", ".replaced", ".partial")


def _is_leftover(path: Path) -> bool:
    return path.name.endswith(LEFTOVER_SUFFIXES)


def _under(name: str, folders: Collection[str]) -> bool:
    return any(name == e or name.startswith(f"{e}/") for e in folders)


def _walk(run_dir: Path, makes: list[str]) -> Iterator[tuple[str, Path]]:
    """(name relative to the run folder, path) of every file of the declared outputs, checkpoints and leftovers
    left out (nothing below a leftover folder either)."""
    for rel in makes:
        path = run_dir / rel
        paths = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for p in paths:
            name = p.relative_to(run_dir).as_posix()
            inside = p.relative_to(run_dir).parts
            if p.is_file() and "checkpoints" not in inside and not any(_is_leftover(Path(x)) for x in inside):
                yield name, p


def list_files(run_dir: Path, makes: list[str], exclude: Collection[str] = ()) -> list[str]:
    """Every output file of the declared outputs (relative to the run folder): of a kind in OUTPUT_SUFFIXES, not a
    checkpoint or a leftover of an interrupted write, not in the files or folders `exclude`."""
    return [name for name, p in _walk(run_dir, makes) if p.name.endswith(OUTPUT_SUFFIXES) and not _under(name, exclude)]


def extra_files(run_dir: Path, makes: list[str], recorded: Collection[str], exclude: Collection[str] = ()) -> list[str]:
    """Files in the declared outputs that are not `recorded` (a finished stage's manifest) nor in `exclude`: put
    there by someone else, or of a kind no stage makes."""
    return [name for name, _ in _walk(run_dir, makes) if name not in recorded and not _under(name, exclude)]


def leftovers(run_dir: Path) -> list[Path]:
    """The leftovers of interrupted writes anywhere in the run folder (LEFTOVER_SUFFIXES), outermost only."""
    found: list[Path] = []
    for path in sorted(run_dir.rglob("*")) if run_dir.is_dir() else []:
        if _is_leftover(path) and not any(parent in found for parent in path.parents):
            found.append(path)
    return found


def manifest_path(run_dir: Path, stage: str) -> Path:
    return run_dir / "manifests" / f"{stage}.json"


def write_manifest(
    run_dir: Path, stage: str, makes: list[str], record: dict[str, Any], exclude: Collection[str] = ()
) -> dict[str, Any]:
    """Write `manifests/<stage>.json` last: the record plus every file the stage made (outside `exclude`: what
    other stages write inside its folders) and its sha256."""
    files = {rel: file_sha256(run_dir / rel) for rel in list_files(run_dir, makes, exclude)}
    manifest = {"format_version": FORMAT_VERSION, **record, "files": files}
    write_json(manifest_path(run_dir, stage), manifest)
    return manifest


def read_manifest(run_dir: Path, stage: str) -> dict[str, Any] | None:
    """The stage's manifest as written, whatever its format (`format_of` says which), or None when there is none."""
    path = manifest_path(run_dir, stage)
    return read_json(path) if path.is_file() else None


def format_of(record: dict[str, Any]) -> int:
    """The run-folder format a manifest or record was written in (1: before records carried it)."""
    return record.get("format_version", 1)


def verify_files(run_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Files listed in the manifest that are missing or whose checksum no longer matches."""
    bad = []
    for rel, sha in manifest.get("files", {}).items():
        path = run_dir / rel
        if not path.is_file():
            bad.append(f"{rel} (missing)")
        elif file_sha256(path) != sha:
            bad.append(f"{rel} (checksum differs)")
    return bad


# ---- soft-target store -------------------------------------------------------------------------------------------


def save_soft_targets(
    out_dir: Path, split: str, ids: list[str], outputs: np.ndarray, examples_fingerprint: str,
    members: list[str] | None = None,
) -> None:  # fmt: skip
    """Store one teacher's outputs for a split: `<split>.npy` float32 [N, C], `<split>.ids.json` and a record of the
    examples they were made from (`examples_fingerprint`: ids, texts, labels) and, with `members`, the teachers an
    ensemble's targets were averaged from."""
    if len(ids) != len(outputs):
        raise StoreError(f"soft targets for {split}: {len(ids)} ids but {len(outputs)} rows")
    outputs = np.ascontiguousarray(outputs, dtype=np.float32)
    write_npy(out_dir / f"{split}.npy", outputs)
    write_json(out_dir / f"{split}.ids.json", ids)
    write_json(
        out_dir / f"{split}.record.json",
        {
            "rows": len(ids),
            "columns": int(outputs.shape[1]),
            "examples_fingerprint": examples_fingerprint,
            "ids_sha256": digest(ids),
            "array_sha256": file_sha256(out_dir / f"{split}.npy"),
            **({"members": members} if members else {}),
        },
    )


def load_soft_targets(out_dir: Path, split: str, ids: list[str], examples_fingerprint: str) -> np.ndarray:
    """Load the stored outputs for `split` and verify they belong to exactly these examples (`ids`, and their
    `examples_fingerprint`: ids, texts and labels), in this order, whichever tokenizer the reader uses."""
    record_path = out_dir / f"{split}.record.json"
    if not record_path.is_file():
        raise StoreError(f"no soft targets at {record_path}; run the distill stage")
    record = read_json(record_path)
    array_path = out_dir / f"{split}.npy"
    if file_sha256(array_path) != record["array_sha256"]:
        raise StoreError(f"{array_path}: checksum does not match {record_path.name}; the file is truncated or changed")
    if record.get("examples_fingerprint") != examples_fingerprint:
        made = str(record.get("examples_fingerprint", "none recorded"))[:12]
        raise StoreError(
            f"{record_path}: soft targets were made from other examples (fingerprint {made}…, the data now has "
            f"{examples_fingerprint[:12]}…: other ids, texts, labels or order); rerun distill"
        )
    stored_ids = read_json(out_dir / f"{split}.ids.json")
    if stored_ids != ids:
        missing = len(set(ids) - set(stored_ids))
        first = next((i for i, (a, b) in enumerate(zip(stored_ids, ids)) if a != b), min(len(ids), len(stored_ids)))
        raise StoreError(
            f"{out_dir / (split + '.ids.json')}: example ids do not match the data ({len(stored_ids)} stored, "
            f"{len(ids)} in the data, {missing} missing, first difference at row {first}); rerun distill"
        )
    array = read_npy(array_path)
    if array.shape[0] != len(ids):
        raise StoreError(f"{array_path}: {array.shape[0]} rows for {len(ids)} examples")
    return array
