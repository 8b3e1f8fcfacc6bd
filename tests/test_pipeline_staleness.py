"""End to end on the smoke config: skipping and staleness (a change reruns the stages it reaches and keeps the
others, damaged or edited files make their stage stale) and the verified join of soft targets and data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import SMOKE, run_smoke
from pipeline_helpers import TASKS, manifest
from safetensors.numpy import load_file

from pipeline.core.config import load_config
from pipeline.core.store import StoreError
from pipeline.dag import stage_status
from stages import STAGES as REGISTRY


def test_second_run_skips_every_stage(smoke_copy: Path) -> None:
    assert run_smoke(smoke_copy) == []


def test_student_change_reruns_student_and_later_only(smoke_copy: Path) -> None:
    before = {s: manifest(smoke_copy, s)["digest"] for s in ("data", "teachers", "distill")}
    ran = run_smoke(smoke_copy, "--student.lr=0.0005")
    assert ran == ["student", "evaluate", "report"]
    assert {s: manifest(smoke_copy, s)["digest"] for s in before} == before
    cfg = load_config(SMOKE, ["--student.lr=0.0005"])
    assert all(stage_status(REGISTRY, s, cfg, smoke_copy)[0] == "done" for s in before)
    # and back at the old value, the status names the key that changed
    state, why = stage_status(REGISTRY, "student", load_config(SMOKE), smoke_copy)
    assert state == "stale" and "student.lr" in why


def test_a_rerun_in_a_hard_linked_copy_leaves_the_original_intact(smoke_run: Path, tmp_path: Path) -> None:
    """reproduce-glue links finished stages between run folders; a resumable stage that reruns in one (here the
    student, which appends to its log and saves its model over the old files) must not write into the other."""
    import shutil

    linked = tmp_path / "linked"
    shutil.copytree(smoke_run, linked, copy_function=os.link)
    weights = "student/model/model.safetensors"
    assert os.path.samefile(smoke_run / weights, linked / weights)
    before = (smoke_run / weights).read_bytes(), (smoke_run / "student/log.jsonl").read_bytes()
    assert run_smoke(linked, "--student.lr=0.0005") == ["student", "evaluate", "report"]
    # none of the rerun stage's files is the original's any more (config.json and the tokenizer files are saved
    # over the old ones in place: a crash half-way would otherwise truncate the original's)
    rerun = [p for p in (linked / "student").rglob("*") if p.is_file()]
    assert rerun and not any(os.path.samefile(p, smoke_run / p.relative_to(linked)) for p in rerun)
    assert ((smoke_run / weights).read_bytes(), (smoke_run / "student/log.jsonl").read_bytes()) == before
    cfg = load_config(SMOKE)
    assert all(stage_status(REGISTRY, s, cfg, smoke_run)[0] == "done" for s in ("student", "evaluate", "report"))
    assert os.path.samefile(smoke_run / "distill/rte/train.npy", linked / "distill/rte/train.npy")  # not rerun: shared


def test_teacher_change_reruns_from_teachers(smoke_copy: Path) -> None:
    ran = run_smoke(smoke_copy, "--teachers.lr=0.003", stage="distill")
    assert ran == ["teachers", "distill"]
    state, why = stage_status(REGISTRY, "student", load_config(SMOKE, ["--teachers.lr=0.003"]), smoke_copy)
    assert state == "stale" and "input 'distill' changed" in why


def test_corrupt_output_makes_stage_stale(smoke_copy: Path) -> None:
    path = smoke_copy / "distill" / "rte" / "train.npy"
    path.write_bytes(path.read_bytes()[:-16])  # truncated
    state, why = stage_status(REGISTRY, "distill", load_config(SMOKE), smoke_copy)
    assert state == "stale" and "distill/rte/train.npy" in why
    assert stage_status(REGISTRY, "student", load_config(SMOKE), smoke_copy) == ("stale", "needs 'distill' is stale")
    # distill is deterministic: it remakes the same files, so nothing after it has to run again
    assert run_smoke(smoke_copy) == ["distill"]


def test_half_finished_stage_is_not_done(smoke_copy: Path) -> None:
    (smoke_copy / "manifests" / "evaluate.json").unlink()  # as if killed before the manifest was written
    assert stage_status(REGISTRY, "evaluate", load_config(SMOKE), smoke_copy)[0] == "missing"
    assert run_smoke(smoke_copy) == ["evaluate"]  # same metrics.json again, so the report stays done


@pytest.mark.parametrize("damage", ["other_data", "reordered", "missing_rows"])
def test_soft_targets_that_do_not_match_the_data_are_refused(smoke_copy: Path, damage: str) -> None:
    from pipeline.core.data import load_split
    from pipeline.core.store import load_soft_targets, read_json, write_json

    data = load_split(smoke_copy, "mrpc", "train")
    store = smoke_copy / "distill" / "mrpc"
    if damage == "other_data":
        record = read_json(store / "train.record.json")
        record["examples_fingerprint"] = "0" * 64
        write_json(store / "train.record.json", record)
        match = "other examples"
    elif damage == "reordered":
        ids = read_json(store / "train.ids.json")
        write_json(store / "train.ids.json", ids[1:2] + ids[:1] + ids[2:])
        match = "first difference at row 0"
    else:
        write_json(store / "train.ids.json", read_json(store / "train.ids.json")[:-3])
        match = "3 missing"
    with pytest.raises(StoreError, match=match):
        load_soft_targets(store, "train", data.ids, data.examples_fingerprint)
    # The student's own loader refuses too (run through the DAG, the checksum mismatch would first make
    # `distill` stale and redo it), and nothing it depends on is touched.
    from pipeline.core.accel import make_accelerator
    from pipeline.core.tasks import read_task_specs
    from student.train import train_student

    cfg = load_config(SMOKE)
    before = {s: manifest(smoke_copy, s) for s in ("data", "teachers", "distill")}
    tasks = read_task_specs(smoke_copy, cfg.data.tasks)
    with pytest.raises(StoreError, match=match):
        train_student(cfg, tasks, smoke_copy, smoke_copy / "student", make_accelerator(), resume_key="key")
    assert {s: manifest(smoke_copy, s) for s in before} == before


def test_changed_teacher_outputs_make_distill_stale(smoke_copy: Path) -> None:
    """Staleness follows the files, not only the config: a teacher retrained to other weights (e.g. after a code
    fix and `--force`) makes the cached soft targets stale."""
    from safetensors.numpy import save_file

    from pipeline.core.checksums import record_checksum
    from pipeline.core.store import read_json, write_manifest
    from pipeline.dag import stage_record

    path = smoke_copy / "teachers" / "rte" / "model" / "heads.safetensors"
    heads = load_file(str(path))
    save_file({k: v + 0.5 for k, v in heads.items()}, str(path))
    record_checksum(path.parent, path.name)  # as saving does: a model whose files do not match is never loaded
    cfg = load_config(SMOKE)
    old = read_json(smoke_copy / "manifests" / "teachers.json")
    record = {**stage_record(REGISTRY, "teachers", cfg, smoke_copy), "finished": old["finished"]}
    write_manifest(smoke_copy, "teachers", [f"teachers/{t}" for t in TASKS], record)
    assert stage_status(REGISTRY, "teachers", cfg, smoke_copy)[0] == "done"
    state, why = stage_status(REGISTRY, "distill", cfg, smoke_copy)
    assert state == "stale" and "input 'teachers' changed" in why
    assert run_smoke(smoke_copy) == ["distill", "student", "evaluate", "report"]


def test_a_run_of_another_format_is_stale_with_a_message_and_reruns(smoke_copy: Path, capsys) -> None:
    """A run folder made by an earlier run-folder format (its manifests carry another `format_version`) reads as
    stale, saying which format made it; running again redoes it, and the new manifests carry this format."""
    from pipeline.core.store import FORMAT_VERSION, read_json, write_json

    cfg = load_config(SMOKE)
    for name in ("data", "student"):
        path = smoke_copy / "manifests" / f"{name}.json"
        write_json(path, {k: v for k, v in read_json(path).items() if k != "format_version"})  # as format 1 wrote it
    state, why = stage_status(REGISTRY, "data", cfg, smoke_copy)
    assert state == "stale" and f"made by run-folder format 1, this version writes {FORMAT_VERSION}" in why
    assert stage_status(REGISTRY, "teachers", cfg, smoke_copy) == ("stale", "needs 'data' is stale")
    assert "--out for a new folder" in stage_status(REGISTRY, "student", cfg, smoke_copy)[1]
    ran = run_smoke(smoke_copy)
    assert ran[0] == "data" and "student" in ran  # the student's own record was old too
    assert read_json(smoke_copy / "manifests" / "data.json")["format_version"] == FORMAT_VERSION
    assert all(stage_status(REGISTRY, s, cfg, smoke_copy)[0] == "done" for s in REGISTRY)


def test_soft_targets_follow_the_teachers_model_not_its_log_or_record(smoke_copy: Path, capsys) -> None:
    """A teacher's log and done record can change while its model stays (a record written anew for the same teacher):
    its soft targets are kept, so the student, whose inputs are the same files, is not redone."""
    from pipeline.core.store import read_json, write_manifest
    from pipeline.dag import stage_record

    folder = smoke_copy / "teachers" / "rte"
    with open(folder / "log.jsonl", "a", encoding="utf-8") as log:
        log.write('{"note": "resumed"}\n')
    done = read_json(folder / "done.json")
    (folder / "done.json").write_text(json.dumps({**done, "digest": "0" * 64}))
    cfg = load_config(SMOKE)
    old = read_json(smoke_copy / "manifests" / "teachers.json")
    record = {**stage_record(REGISTRY, "teachers", cfg, smoke_copy), "finished": old["finished"]}
    write_manifest(smoke_copy, "teachers", [f"teachers/{t}" for t in TASKS], record)
    targets = (smoke_copy / "distill" / "rte" / "train.npy").stat().st_ino
    assert stage_status(REGISTRY, "distill", cfg, smoke_copy)[0] == "stale"
    assert run_smoke(smoke_copy) == [
        "distill",
        "evaluate",
    ]  # evaluate reads the teachers' files itself; not the student
    assert "[distill] rte: soft targets made by this teacher from this data, kept" in capsys.readouterr().out
    assert (smoke_copy / "distill" / "rte" / "train.npy").stat().st_ino == targets


def test_an_edited_glue_file_makes_the_data_stale(smoke_run: Path, tmp_path: Path) -> None:
    """GLUE files read from data.data_dir count by content, as custom tasks' do: a row changed in place is noticed,
    and the file named."""
    import shutil

    glue = tmp_path / "glue"
    shutil.copytree(smoke_run / "data" / "synthetic-glue", glue)
    where = ["--data.source='glue'", f"--data.data_dir='{glue}'"]
    assert run_smoke(tmp_path / "run", *where, stage="data") == ["data"]
    cfg = load_config(SMOKE, where)
    assert stage_status(REGISTRY, "data", cfg, tmp_path / "run")[0] == "done"
    path = glue / "RTE" / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("entailment", "not_entailment") if "\tentailment" in lines[1] else lines[1] + " x"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    state, why = stage_status(REGISTRY, "data", cfg, tmp_path / "run")
    assert state == "stale" and "input 'glue:RTE/train.tsv' changed" in why
    assert "SST-2" not in why


def test_damaged_teacher_is_retrained_and_the_others_kept(smoke_copy: Path, capsys) -> None:
    weights = smoke_copy / "teachers" / "rte" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    kept = {t: (smoke_copy / "teachers" / t / "model" / "model.safetensors").read_bytes() for t in TASKS if t != "rte"}
    assert run_smoke(smoke_copy, stage="teachers") == ["teachers"]
    out = capsys.readouterr().out
    assert all(f"[teachers] {t}: already trained for this config, kept" in out for t in kept)
    assert "[teachers] rte: already trained" not in out
    assert all((smoke_copy / "teachers" / t / "model" / "model.safetensors").read_bytes() == b for t, b in kept.items())
    assert stage_status(REGISTRY, "teachers", load_config(SMOKE), smoke_copy)[0] == "done"


def test_adding_or_removing_a_task_keeps_the_other_teachers(smoke_copy: Path, capsys) -> None:
    """A teacher depends on its own task's data and the teacher settings, not on the task list: dropping RTE and
    adding it back retrains no teacher, while a changed teacher setting retrains them all."""
    weights = {t: (smoke_copy / "teachers" / t / "model" / "model.safetensors").read_bytes() for t in TASKS}
    three = "--data.tasks=[sst2,mrpc,stsb]"
    assert run_smoke(smoke_copy, three, stage="teachers") == ["data", "teachers"]
    out = capsys.readouterr().out
    assert all(f"[teachers] {t}: already trained for this config, kept" in out for t in TASKS[:3])
    assert "[teachers] rte" not in out
    assert run_smoke(smoke_copy, stage="teachers") == ["data", "teachers"]  # RTE back: its teacher is still there
    out = capsys.readouterr().out
    assert all(f"[teachers] {t}: already trained for this config, kept" in out for t in TASKS)
    assert all((smoke_copy / "teachers" / t / "model" / "model.safetensors").read_bytes() == weights[t] for t in TASKS)
    assert stage_status(REGISTRY, "teachers", load_config(SMOKE), smoke_copy)[0] == "done"
    # the soft targets too: same teacher, same data
    targets = {t: (smoke_copy / "distill" / t / "train.npy").stat().st_ino for t in TASKS[:3]}
    assert run_smoke(smoke_copy, three, stage="distill") == ["data", "teachers", "distill"]
    out = capsys.readouterr().out
    assert all(f"[distill] {t}: soft targets made by this teacher from this data, kept" in out for t in TASKS[:3])
    assert {t: (smoke_copy / "distill" / t / "train.npy").stat().st_ino for t in TASKS[:3]} == targets
    # a setting every teacher depends on is not kept over
    assert run_smoke(smoke_copy, three, "--teachers.lr=0.003", stage="teachers") == ["teachers"]
    assert "already trained" not in capsys.readouterr().out
    assert (smoke_copy / "teachers" / "sst2" / "model" / "model.safetensors").read_bytes() != weights["sst2"]
    # and soft targets of another teacher are made anew
    assert run_smoke(smoke_copy, three, "--teachers.lr=0.003", stage="distill") == ["distill"]
    assert "soft targets made by this teacher from this data, kept" not in capsys.readouterr().out
    assert (smoke_copy / "distill" / "sst2" / "train.npy").stat().st_ino != targets["sst2"]


def test_a_per_task_teacher_setting_retrains_that_task_alone(smoke_copy: Path, capsys) -> None:
    """`teachers.per_task.rte.lr` trains RTE's teacher at that rate and keeps the others; a per-task value equal to
    the section's changes no digest at all."""
    cfg = load_config(SMOKE)
    weights = {t: (smoke_copy / "teachers" / t / "model" / "model.safetensors").read_bytes() for t in TASKS}
    same = f"--teachers.per_task.rte.lr={cfg.teachers.lr}"
    assert stage_status(REGISTRY, "teachers", load_config(SMOKE, [same]), smoke_copy)[0] == "done"
    rate = cfg.teachers.lr / 4
    assert run_smoke(smoke_copy, f"--teachers.per_task.RTE.lr={rate}", stage="teachers") == ["teachers"]
    out = capsys.readouterr().out
    assert all(f"[teachers] {t}: already trained for this config, kept" in out for t in TASKS if t != "rte")
    assert "[teachers] rte: already trained" not in out
    for task in TASKS:
        changed = (smoke_copy / "teachers" / task / "model" / "model.safetensors").read_bytes() != weights[task]
        assert changed == (task == "rte")
        log = (smoke_copy / "teachers" / task / "log.jsonl").read_text().splitlines()
        peak = max(r["lr"] for r in map(json.loads, log) if "lr" in r)  # logged every 10 steps: near the peak
        expected = rate if task == "rte" else cfg.teachers.lr
        assert expected / 2 < peak <= expected * (1 + 1e-9), task
