"""The checksums of a saved model folder: `checksums.json` lists every file `save_model` wrote with its sha256, and
`load_model` refuses a folder whose files no longer match (damaged, truncated, edited) or that has no such list (an
older format), so a broken model never predicts garbage.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.store import StoreError, file_sha256, read_json, source_sha256, write_json

CHECKSUMS = "checksums.json"  # {"files": {path relative to the folder: sha256}}
_REDO = (
    "rerun the stage that saved it: `python -m pipeline run --config CONFIG --out RUN --stage student --force` "
    "(`--stage teachers --force` for a teacher)"
)


def write_checksums(folder: Path) -> None:
    """Record the sha256 of every file now in `folder` (call when the folder is complete)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    write_json(folder / CHECKSUMS, {"files": {p.relative_to(folder).as_posix(): file_sha256(p) for p in files}})


def record_checksum(folder: str | Path, name: str) -> None:
    """Record anew the sha256 of the file `name` of a saved model, changed on purpose (`save_task_specs`)."""
    path = Path(folder) / CHECKSUMS
    record = read_json(path)
    record["files"][name] = file_sha256(Path(folder) / name)
    write_json(path, record)


def checksum_problem(folder: Path) -> str | None:
    """What is wrong with a saved model folder, for an error message; None when every file `checksums.json` lists is
    there with its recorded sha256 (files added later, such as a model card, are not checked: nothing loads them)."""
    if not (folder / "heads.json").is_file():
        return f"{folder}: not a model folder saved by this pipeline (no heads.json)"
    if not (folder / CHECKSUMS).is_file():
        return (
            f"{folder}: no {CHECKSUMS}: the folder was saved by an older format of this pipeline, before saved models "
            f"recorded the checksums of their files, and is not loaded unverified. To get a new one, {_REDO}"
        )
    try:
        record = read_json(folder / CHECKSUMS)
    except StoreError:
        record = None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or not files:
        return f"{folder}: {CHECKSUMS} is corrupt or lists no files; the folder is damaged. To get a new one, {_REDO}"
    bad = []
    for name, sha in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            bad.append(f"{name} (missing)")
        elif source_sha256(path) != sha:  # remembered per file identity: reloading an unchanged model hashes nothing
            bad.append(f"{name} (checksum differs)")
    if not bad:
        return None
    return (
        f"{folder}: {', '.join(bad)}: not the files that were saved (see {CHECKSUMS}); the folder is damaged or was "
        f"changed after saving. Copy it again from where it was made, or {_REDO}"
    )
