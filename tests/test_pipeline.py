"""End to end on the smoke config: the files each stage writes, skipping, staleness, the verified join, resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SMOKE, run_smoke
from safetensors.numpy import load_file

from pipeline.core.config import load_config
from pipeline.core.store import StoreError
from pipeline.dag import stage_status
from stages import STAGES as REGISTRY

TASKS = ["sst2", "mrpc", "stsb", "rte"]
GLUE_DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "rte": "RTE"}
SPLIT_FILES = [
    "ids.json",
    "input_ids.npy",
    "labels.npy",
    "offsets.npy",
    "split.json",
    "texts.json",
    "token_type_ids.npy",
]
MODEL_FILES = ["checksums.json", "config.json", "heads.json", "heads.safetensors", "model.safetensors",
               "tokenizer.json", "tokenizer_config.json"]  # fmt: skip


def expected_files() -> dict[str, set[str]]:
    data = {"data/sizes.json", "data/tasks.json"}
    data |= {f"data/synthetic-glue/{GLUE_DIRS[t]}/{s}.tsv" for t in TASKS for s in ("train", "dev")}
    data |= {f"data/tiny-random/{f}" for f in ("config.json", "model.safetensors", "tokenizer.json",
                                                 "tokenizer_config.json", "vocab.txt")}  # fmt: skip
    data |= {f"data/{t}/{s}/{f}" for t in TASKS for s in ("train", "dev") for f in SPLIT_FILES}
    teachers = {f"teachers/{t}/{f}" for t in TASKS for f in ("done.json", "log.jsonl", "metrics.json")}
    teachers |= {f"teachers/{t}/model/{f}" for t in TASKS for f in [*MODEL_FILES, "README.md"]}
    distill = {f"distill/{t}/{s}.{ext}" for t in TASKS for s in ("train", "dev") for ext in
               ("npy", "ids.json", "record.json")} | {f"distill/{t}/done.json" for t in TASKS}  # fmt: skip
    student = {"student/log.jsonl", "student/summary.json"} | {f"student/model/{f}" for f in MODEL_FILES}
    # the student's model card is the report's: it needs the dev scores of `evaluate`
    report = {"report.md", "plots/scores.png", "plots/training.png", "student/model/README.md"}
    return {"data": data, "teachers": teachers, "distill": distill, "student": student,
            "evaluate": {"metrics.json"}, "report": report}  # fmt: skip


def manifest(run: Path, stage: str) -> dict:
    return json.loads((run / "manifests" / f"{stage}.json").read_text())


def test_each_stage_writes_exactly_its_files(smoke_run: Path) -> None:
    expected = expected_files()
    for stage, files in expected.items():
        assert set(manifest(smoke_run, stage)["files"]) == files, stage
    on_disk = {p.relative_to(smoke_run).as_posix() for p in smoke_run.rglob("*") if p.is_file()}
    made = set().union(*expected.values())
    extra = on_disk - made - {"config.yaml", ".lock"} - {f"manifests/{s}.json" for s in expected}  # .lock: `run_lock`
    assert not extra, f"files no stage declared: {sorted(extra)}"
    assert not any(p.suffix == ".tmp" for p in smoke_run.rglob("*"))


def test_metrics_and_report(smoke_run: Path) -> None:
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    assert sorted(metrics["tasks"]) == sorted(TASKS)
    for name, m in metrics["tasks"].items():
        assert m["gain"] == pytest.approx(m["student_score"] - m["teacher_score"])
        teacher = json.loads((smoke_run / "teachers" / name / "metrics.json").read_text())
        assert m["teacher"] == teacher["dev"]
    scores = [m["student_score"] for m in metrics["tasks"].values()]
    assert metrics["average"]["student"] == pytest.approx(np.mean(scores))
    report = (smoke_run / "report.md").read_text()
    for name in TASKS:
        assert f"| {name} |" in report
    assert f"{metrics['average']['student']:.1f}" in report
    assert "This run exercises the code, not the method" in report  # a tiny random model on generated data
    # the synthetic sentiment task is easy: the teacher must have learnt it
    assert metrics["tasks"]["sst2"]["teacher_score"] > 75


def training_lines(run: Path) -> list[dict]:
    """The student log's step records (its last line holds the dev metrics)."""
    lines = [json.loads(x) for x in (run / "student" / "log.jsonl").read_text().splitlines()]
    return [x for x in lines if "dev" not in x]


def test_student_log_records_lambda_and_task_losses(smoke_run: Path) -> None:
    log = [json.loads(x) for x in (smoke_run / "student" / "log.jsonl").read_text().splitlines()]
    summary = json.loads((smoke_run / "student" / "summary.json").read_text())
    total = summary["total_steps"]
    assert log[-1] == {"step": total, "dev": summary["dev"], "score": {t: log[-1]["score"][t] for t in TASKS}}
    assert summary["selected_step"] == total  # select: last
    lines = training_lines(smoke_run)
    assert lines[-1]["step"] == total
    steps = [x["step"] for x in lines]
    assert steps == sorted(steps)
    for x in lines:  # λ is logged for the step just taken: (step - 1) / total
        assert x["lambda"] == pytest.approx((x["step"] - 1) / total)
        assert set(x["loss"]) <= set(TASKS) and x["lr"] >= 0
    assert sum(summary["examples_per_task"].values()) == total * summary["batch_size"]
    assert lines[-1]["examples_seen"] == summary["examples_per_task"]


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


def _student_weights(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(run / "student" / "model" / "model.safetensors"))


LONG_STUDENT = ["--student.epochs=24", "--student.checkpoint_every=40", "--student.log_every=20"]


@pytest.fixture(scope="module")
def uninterrupted_student(smoke_run: Path, tmp_path_factory) -> Path:
    import shutil

    whole = tmp_path_factory.mktemp("whole") / "run"
    shutil.copytree(smoke_run, whole)
    assert run_smoke(whole, *LONG_STUDENT) == ["student", "evaluate", "report"]
    return whole


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_interrupted_student_resumes_to_the_same_weights(
    smoke_run: Path, uninterrupted_student: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """Kill the student after its first checkpoint (SIGTERM: it saves one more and exits); the rerun does only
    the remaining steps and ends where an uninterrupted run ends."""
    import shutil

    killed = tmp_path / "killed"
    shutil.copytree(smoke_run, killed)
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(SMOKE), "--out", str(killed),
           "--stage", "student", *LONG_STUDENT]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = killed / "student" / "checkpoints"
    deadline = time.time() + 600  # generous for a loaded machine; a healthy run stops waiting early
    while time.time() < deadline and not list(ckpts.glob("step-*/state.json")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    saved = sorted(int(p.parent.name.split("-")[1]) for p in ckpts.glob("step-*/state.json"))
    assert saved, f"the student finished or died before its first checkpoint:\n{stderr[-2000:]}"
    state_path = ckpts / f"step-{saved[-1]:06d}" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["elapsed_s"] > 0
    # pretend the killed process had trained for 1000 s: the resumed run's wall_s must count them
    elapsed = state["elapsed_s"] + 1000.0
    state_path.write_text(json.dumps({**state, "elapsed_s": elapsed}))
    assert stage_status(REGISTRY, "student", load_config(SMOKE, LONG_STUDENT), killed)[0] != "done"
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "Run the same command again to resume" in stderr
        assert f"after step {saved[-1]}/" in stderr

    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"resuming from step-{saved[-1]:06d}" in result.stdout
    a, b = _student_weights(uninterrupted_student), _student_weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    log = training_lines(killed)
    assert [x["step"] for x in log] == sorted({x["step"] for x in log}), "resumed log repeats steps"
    whole_log = training_lines(uninterrupted_student)
    assert [(x["step"], x["lambda"], x["examples_seen"]) for x in log] == [
        (x["step"], x["lambda"], x["examples_seen"]) for x in whole_log
    ], "the resumed run saw other examples or another λ schedule"
    summaries = [json.loads((r / "student" / "summary.json").read_text()) for r in (uninterrupted_student, killed)]
    assert summaries[0]["examples_per_task"] == summaries[1]["examples_per_task"]
    assert summaries[0]["compute"]["resumed_from_step"] == 0
    assert summaries[1]["compute"]["resumed_from_step"] == saved[-1]  # its wall time is two processes'
    # wall_s is the training time over both processes: the killed one's seconds up to its checkpoint count too
    rerun = json.loads((killed / "manifests" / "student.json").read_text())["wall_s"]
    assert elapsed < summaries[1]["wall_s"] <= elapsed + rerun


@pytest.mark.slow
def test_two_processes_match_one(smoke_run: Path, tmp_path: Path) -> None:
    """The whole pipeline under `accelerate launch` with 2 gloo ranks: same data, same teacher-output rows,
    same student plan and task counts, metrics on exactly the dev sets."""
    two = tmp_path / "two"
    with socket.socket() as probe:  # a free port: not 29500, which another job on the machine may hold
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
           "-m", "pipeline", "run", "--config", str(SMOKE), "--out", str(two)]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert manifest(two, "data")["files"] == manifest(smoke_run, "data")["files"]  # byte-identical data
    for task in TASKS:
        for split in ("train", "dev"):
            ids = json.loads((two / "distill" / task / f"{split}.ids.json").read_text())
            assert ids == json.loads((smoke_run / "data" / task / split / "ids.json").read_text())
            assert np.load(two / "distill" / task / f"{split}.npy").shape[0] == len(ids)
    one_summary = json.loads((smoke_run / "student" / "summary.json").read_text())
    two_summary = json.loads((two / "student" / "summary.json").read_text())
    assert two_summary["processes"] == 2 and one_summary["processes"] == 1
    assert two_summary["compute"]["processes"] == 2 and one_summary["compute"]["processes"] == 1
    assert two_summary["examples_per_task"] == one_summary["examples_per_task"]
    assert two_summary["total_steps"] == one_summary["total_steps"]
    assert two_summary["dev_examples"] == one_summary["dev_examples"] == {t: {"dev": 48} for t in TASKS}
    # only the main process wrote: one line per logged step, no duplicates
    steps = [x["step"] for x in training_lines(two)]
    assert steps == sorted(set(steps))
    assert set(manifest(two, "report")["files"]) == expected_files()["report"]


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


def test_bf16_runs_end_to_end_and_counts_in_every_digest_after_the_data(smoke_run: Path, tmp_path: Path) -> None:
    """model.precision bf16: the whole pipeline runs under autocast (soft targets still stored as float32); the
    teachers', soft targets', student's and evaluation's digests change, the data's does not; an Accelerator of
    another precision is refused rather than run under the wrong digest."""
    from accelerate.state import AcceleratorState

    from pipeline.core.accel import make_accelerator
    from pipeline.core.config import ConfigError
    from pipeline.dag import run_stages
    from stages import STAGES

    fp32, bf16 = load_config(SMOKE), load_config(SMOKE, ["--model.precision=bf16"])
    for name, stage in STAGES.items():
        assert ("precision" in json.dumps(stage.config_subset(fp32))) == (name not in ("data", "evaluate", "report")), (
            name
        )
        assert (stage.config_subset(bf16) != stage.config_subset(fp32)) == (
            name not in ("data", "evaluate", "report")
        ), name
    out = tmp_path / "bf16"
    AcceleratorState._reset_state(True)  # one precision per process: the other tests' Accelerators are fp32
    try:
        acc = make_accelerator(precision="bf16")
        assert acc.mixed_precision == "bf16"
        with pytest.raises(ConfigError, match="model.precision 'fp32'"):
            run_stages(REGISTRY, fp32, tmp_path / "fp32", acc)
        assert run_stages(REGISTRY, bf16, out, acc) == ["data", "teachers", "distill", "student", "evaluate", "report"]
    finally:
        AcceleratorState._reset_state(True)
    assert not (tmp_path / "fp32" / "manifests").exists()
    for task in TASKS:
        logits = np.load(out / "distill" / task / "train.npy")
        assert logits.dtype == np.float32 and np.isfinite(logits).all()
        assert not np.array_equal(logits, np.load(smoke_run / "distill" / task / "train.npy"))
    # the same data, so the fp32 run's data stage is the bf16 run's; its teachers are not
    data = json.loads((out / "manifests" / "data.json").read_text())["digest"]
    assert data == json.loads((smoke_run / "manifests" / "data.json").read_text())["digest"]
    assert stage_status(REGISTRY, "teachers", bf16, smoke_run)[0] == "stale"
    metrics = json.loads((out / "metrics.json").read_text())["tasks"]
    assert all(np.isfinite(metrics[t]["student"]["dev"][k]) for t in TASKS for k in metrics[t]["student"]["dev"])


def test_accelerate_launch_asking_for_another_precision_is_refused(monkeypatch) -> None:
    from pipeline.core.accel import make_accelerator
    from pipeline.core.config import ConfigError

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(ConfigError, match=r"model.precision is 'fp32'.*--model.precision=bf16"):
        make_accelerator(precision="fp32")


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
