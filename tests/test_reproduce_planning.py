"""What a reproduce-glue call plans to run: which recorded runs and tuning choices still hold (run keys: the GLUE
files by content, the run-folder format, Multi without teachers, a choice tuned without them), --tune values,
calls with their own seeds (--only-seeds) filling one OUT, and bad arguments or test files refused."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import SMOKE

from pipeline.cli import main
from pipeline.core.config import RunConfig, load_config
from pipeline.core.submission import read_test_split
from pipeline.core.tasks import get_glue_task
from pipeline.experiments import results
from pipeline.experiments.run import _shared, say_other_threads
from pipeline.experiments.variants import ReproduceError


def test_tune_argument_errors(tmp_path: Path, capsys) -> None:
    base = ["reproduce-glue", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--dry-run", "--tune"]
    for value, message in (
        ("lr=1e-4,2e-4", "expected student.KEY=V1,V2"),
        ("student.seed=1,2", "is set by --seeds"),
        ("student.lr=1e-4,1e-4", "given twice"),
        ("student.lr=1e-4,fast", "'student.lr' expects float, got 'fast'"),
        ("student.warmup=0.1,2", "warmup"),
    ):
        assert main([*base, value]) == 2, value
        assert message in capsys.readouterr().err, value
    assert not (tmp_path / "o").exists()
    # every setting must be valid for every variant it tunes: PCGrad takes no adversarial loss
    assert main([*base, "student.adversarial=none,fgm", "--variants", "bam,pcgrad"]) == 2
    err = capsys.readouterr().err
    assert "adversarial=fgm for the variant pcgrad" in err and "student.adversarial" in err


def test_tune_values_are_read_as_the_config_holds_them(tmp_path: Path) -> None:
    from pipeline.experiments.variants import parse_tune

    cfg = load_config(SMOKE)  # student.epochs is a float: 8 and 8.0 are one setting, the config's own
    assert parse_tune(["student.epochs=8,9", "student.mixing=mixed,summed", "teachers.epochs=20,30"], cfg) == (
        {"epochs": [8.0, 9.0], "mixing": ["mixed", "summed"]}, {"epochs": [20.0, 30.0]}
    )  # fmt: skip
    with pytest.raises(ReproduceError, match="given twice"):
        parse_tune(["student.epochs=8,8.0"], cfg)
    for text in ("teachers.seed=1,2", "teachers.init_from=a,b", "teachers.per_task=1"):  # not a per-task setting
        with pytest.raises(ReproduceError, match="teachers.KEY=V1,V2,... with KEY one of epochs, batch_size, lr"):
            parse_tune([text], cfg)
    with pytest.raises(ReproduceError, match="'teachers.lr' must be a finite number > 0"):
        parse_tune(["teachers.lr=1e-3,0"], cfg)


def test_test_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("index\tsentence1\n0\ta\n")
    with pytest.raises(ValueError, match=r"test.tsv: line 1: header lacks column 'sentence2'"):
        read_test_split(get_glue_task("rte"), path)
    path.write_text("index\tsentence1\tsentence2\n0\ta\n")
    with pytest.raises(ValueError, match=r"test.tsv: line 2: 2 fields, expected 3"):
        read_test_split(get_glue_task("rte"), path)


def test_bad_arguments_exit_2(tmp_path: Path, capsys) -> None:
    base = ["reproduce-glue", "--config", str(SMOKE), "--out", str(tmp_path / "o")]
    assert main([*base, "--variants", "bam,nope"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main([*base, "--seeds", "0"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err


def test_run_keys_count_the_glue_files_by_content_not_by_their_folder(tmp_path: Path) -> None:
    """A results.json made with the GLUE copy in one folder holds for the same files elsewhere (e.g. a committed
    one on another machine), not for edited ones; so do its tuning runs."""
    from pipeline.experiments.choices import variant_key
    from pipeline.experiments.results import record_tuning_run, recorded_tuning_runs
    from pipeline.experiments.runs import finished_run
    from pipeline.experiments.tuning import tuning_run
    from pipeline.experiments.variants import seed_config

    def glue(name: str, dev: str) -> RunConfig:
        for split, text in (("train", "index\tsentence1\tsentence2\tscore\n0\ta\tb\t1.0\n"), ("dev", dev)):
            (tmp_path / name / "STS-B").mkdir(parents=True, exist_ok=True)
            (tmp_path / name / "STS-B" / f"{split}.tsv").write_text(text)
        over = ["--data.source=glue", "--data.tasks=['stsb']", f"--data.data_dir={tmp_path / name}"]
        return seed_config(load_config(SMOKE, over), 1)

    dev = "index\tsentence1\tsentence2\tscore\n0\tc\td\t2.0\n"
    here, moved, edited = glue("here", dev), glue("moved", dev), glue("edited", dev + "1\te\tf\t3.0\n")
    out = tmp_path / "out"
    out.mkdir()
    key = variant_key(here, "bam", out)
    assert variant_key(moved, "bam", out) == key != variant_key(edited, "bam", out)
    assert variant_key(here, "multi", out) != key  # still one key per variant

    run = {"variant": "bam", "seed": 1, "average": 50.0, "tasks": {}, "key": key}
    assert finished_run(moved, out, 1, "bam", {("bam", 1): run}) == run  # found wherever the same files are
    assert finished_run(edited, out, 1, "bam", {("bam", 1): run}) is None

    setting = {"lr": 0.001}
    assert tuning_run(here, out, "bam", setting) is None
    tuned = {"variant": "bam", "seed": 1, "setting": setting, "average": 40.0, "tasks": {},
             "key": variant_key(here, "bam", out, setting=setting)}  # fmt: skip
    record_tuning_run(out, tuned)
    record_tuning_run(out, tuned)  # recorded once
    assert recorded_tuning_runs(out) == [tuned]
    assert tuning_run(moved, out, "bam", setting) == tuned and tuning_run(edited, out, "bam", setting) is None


def test_keys_carry_the_run_folder_format(tmp_path: Path, monkeypatch) -> None:
    """A run key, a tuning-run key and a tuning base of another run-folder format never match: such a results.json
    finds none of its runs done (scripts/migrate_results.py rewrites it)."""
    from pipeline.experiments import choices, results
    from pipeline.experiments.variants import seed_config

    cfg, grid = seed_config(load_config(SMOKE), 1), {"lr": [0.002, 0.001]}
    now = (choices.variant_key(cfg, "bam", tmp_path), choices.tuning_run_key(cfg, "teachers", tmp_path, {"lr": 1.0}),
           choices.tuning_base(cfg, "multi", tmp_path, grid))  # fmt: skip
    monkeypatch.setattr(results, "FORMAT_VERSION", results.FORMAT_VERSION + 1)
    later = (choices.variant_key(cfg, "bam", tmp_path), choices.tuning_run_key(cfg, "teachers", tmp_path, {"lr": 1.0}),
             choices.tuning_base(cfg, "multi", tmp_path, grid))  # fmt: skip
    assert all(a != b for a, b in zip(now, later))


def test_multis_key_and_record_hold_when_the_teachers_change(tmp_path: Path, capsys) -> None:
    """Multi (λ = 1) never reads the teachers: other teacher settings leave its key, its recorded run and its tuning
    as they are, while every variant learning from them (or reporting them) gets a new key."""
    from pipeline.core.config import to_dict
    from pipeline.experiments.choices import tuned_choice, tuning_base, tuning_record, variant_key
    from pipeline.experiments.runs import finished_run
    from pipeline.experiments.variants import seed_config

    out = tmp_path / "out"
    out.mkdir()
    cfg = seed_config(load_config(SMOKE), 1)
    other = seed_config(load_config(SMOKE, ["--teachers.lr=0.001", "--teachers.per_task.rte.epochs=2"]), 1)
    assert variant_key(other, "multi", out) == variant_key(cfg, "multi", out)
    for variant in ("single", "bam", "no-annealing", "single-single", "bam-ft"):
        assert variant_key(other, variant, out) != variant_key(cfg, variant, out), variant

    old = {"variant": "multi", "seed": 1, "average": 60.0, "tasks": {}, "wall_s": 60.0, "config": to_dict(cfg)}
    old["key"] = variant_key(cfg, "multi", out)
    assert finished_run(other, out, 1, "multi", {("multi", 1): old}) == old  # whatever the teachers now

    # a tuned Multi: its tuning record holds for other teachers too, while BAM's does not
    grid = {"lr": [0.002, 0.001]}
    (out / "tuning").mkdir()
    for variant in ("multi", "bam"):
        record = {"variant": variant, "grid": grid, "chosen": {"lr": 0.001}, "runs": [],
                  "base": tuning_base(cfg, variant, out, grid)}  # fmt: skip
        (out / "tuning" / f"{variant}.json").write_text(json.dumps(record))
        assert tuned_choice(cfg, variant, out) == {"lr": 0.001}
    assert tuning_record(other, "multi", out) is not None and tuning_record(other, "bam", out) is None
    shutil.rmtree(out / "tuning")  # untuned again

    # a dry run tuning the teachers plans Multi's recorded runs as done, BAM's as to run once they are tuned
    runs = []
    for seed in (1, 2):
        scfg = seed_config(load_config(SMOKE), seed)
        runs += [{**old, "variant": v, "seed": seed, "key": variant_key(scfg, v, out)} for v in ("multi", "bam")]
    (out / "results.json").write_text(json.dumps({"runs": runs}))
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "multi,bam"]
    assert main([*argv, "--tune", "teachers.lr=0.002,0.001", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for seed in (1, 2):
        assert f"seed {seed}  multi         done" in printed
        assert f"seed {seed}  bam           to run" in printed
    assert "multi         to run" not in printed


@contextlib.contextmanager
def lock_held_elsewhere(path: Path, seconds: float = 120):
    """`path` locked by another process (as a concurrent call would hold it) for `seconds` or until the block ends:
    then killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import filelock, time; held = filelock.FileLock({str(path)!r}); held.acquire(); "
         f"print('held', flush=True); time.sleep({seconds})"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_calls_with_their_own_seeds_fill_one_out(tmp_path: Path, capsys, monkeypatch) -> None:
    """--only-seeds: each call runs its seeds into the same OUT (one per process or machine); the table counts every
    finished run of the N, the data are tokenised once, a run another process holds is refused, not shared, and a
    seed's shared stages that another call is running are waited for."""
    out = tmp_path / "out"
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "single"]
    assert main([*argv, "--only-seeds", "2"]) == 0
    assert not (out / "runs" / "seed-1").exists()
    first = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in first["runs"]] == [("single", 2)]
    assert main([*argv, "--only-seeds", "1"]) == 0
    both = json.loads((out / "results.json").read_text())
    assert sorted((r["variant"], r["seed"]) for r in both["runs"]) == [("single", 1), ("single", 2)]
    assert both["runs"][1] == first["runs"][0]  # seed 2's record as it was
    assert both["summary"]["single"]["seeds"] == [1, 2]
    data = sorted(
        p.relative_to(out / "runs" / "seed-2") for p in (out / "runs" / "seed-2").glob("teachers/data/*/*/*.npy")
    )
    assert data and all(
        os.path.samefile(out / "runs" / "seed-1" / p, out / "runs" / "seed-2" / p) for p in data
    )  # seed 1 took seed 2's tokenised data

    # another process runs seed 2's single: a call for it stops before touching anything; once that process is gone
    # (killed: the kernel drops its lock), the call goes on
    before = (out / "results.json").read_bytes()
    with lock_held_elsewhere(out / "locks" / "seed-2-single.lock"):
        capsys.readouterr()
        assert main([*argv, "--only-seeds", "2"]) == 2
        err = capsys.readouterr().err
        assert "seed 2's single in" in err and "another call" in err and "seed-2-single.lock" in err
        assert (out / "results.json").read_bytes() == before
        assert main([*argv, "--only-seeds", "1"]) == 0  # seed 1 is free
    assert main([*argv, "--only-seeds", "2"]) == 0

    # another process runs seed 2's shared stages: a call of seed 2 waits for them, then goes on
    with lock_held_elsewhere(out / "locks" / "seed-2.lock", seconds=3):
        capsys.readouterr()
        other = ["--only-seeds", "2", "--variants", "multi"]
        assert main([*argv[:-2], *other]) == 0
        assert "another call is running seed 2's shared stages; waiting" in capsys.readouterr().out
    assert {(r["variant"], r["seed"]) for r in json.loads((out / "results.json").read_text())["runs"]} >= {
        ("multi", 2),
        ("single", 2),
        ("single", 1),
    }

    # another call is tuning on seed 1: a call for seed 2 would run without the choice, so it waits its turn
    with lock_held_elsewhere(out / "locks" / "tuning.lock"):
        assert main([*argv, "--only-seeds", "2"]) == 2
        assert "another call is tuning on seed 1" in capsys.readouterr().err
    assert main([*argv, "--only-seeds", "2"]) == 0
    # a call that would tune does not start beside another call of seed 1: it would change that call's teachers
    # (it waits TUNING_WAIT for the shared stages, which a call checking done stages holds for a moment)
    monkeypatch.setattr(results, "TUNING_WAIT", 0.5)
    tune = [*argv[:-2], "--variants", "bam", "--tune", "student.lr=1e-4,2e-4", "--only-seeds", "2"]
    with lock_held_elsewhere(out / "locks" / "seed-1.lock"):
        assert main(tune) == 2
        assert "another call is running seed 1's shared stages" in capsys.readouterr().err
    with lock_held_elsewhere(out / "locks" / "seed-1-multi.lock"):
        assert main(tune) == 2
        assert "another call is running seed 1's multi" in capsys.readouterr().err
    # a call that only looks at the tuning lock holds it for a moment: a call started then waits, it does not fail
    with lock_held_elsewhere(out / "locks" / "tuning.lock", seconds=1):
        assert main([*argv, "--only-seeds", "2"]) == 0


def test_only_seeds_arguments(tmp_path: Path, capsys) -> None:
    base = ["reproduce-glue", "--config", str(SMOKE), "--out", str(tmp_path / "o"), "--seeds", "3"]
    assert main([*base, "--only-seeds", "4"]) == 2
    assert "--only-seeds: [4] not among the seeds 1..3" in capsys.readouterr().err
    assert main([*base, "--only-seeds", "2,x"]) == 2
    assert "expected comma-separated integers, got '2,x'" in capsys.readouterr().err
    assert main([*base, "--only-seeds", "3,2", "--variants", "single,bam", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "seeds 2, 3 of 3" in printed
    assert sorted({line.split()[1] for line in printed.splitlines() if line.startswith("  seed ")}) == ["2", "3"]
    # while a variant's tuning is pending, seed 1 runs too (the other seeds run with its choice)
    assert main([*base, "--only-seeds", "3", "--variants", "bam", "--tune", "student.lr=1e-4,2e-4", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "tuning is pending: seed 1 runs first" in printed
    assert {line.split()[1] for line in printed.splitlines() if line.startswith("  seed ")} == {"1", "3"}


def test_a_tuned_choice_without_teachers_is_tuned_again_when_the_teachers_are(tmp_path: Path, capsys) -> None:
    """A student tuned over λ that chose 1.0 (no distillation) still had its grid's other settings learn from the
    teachers: its tuning record counts them, so tuning the teachers plans its tuning and runs anew."""
    from pipeline.core.config import to_dict
    from pipeline.experiments.choices import tuning_base, variant_key
    from pipeline.experiments.variants import seed_config

    out = tmp_path / "out"
    (out / "tuning").mkdir(parents=True)
    cfg, grid = load_config(SMOKE), {"fixed_lambda": [0.5, 1.0]}
    record = {"variant": "bam", "seed": 1, "grid": grid, "chosen": {"fixed_lambda": 1.0}, "runs": [],
              "base": tuning_base(cfg, "bam", out, grid)}  # fmt: skip
    (out / "tuning" / "bam.json").write_text(json.dumps(record))
    runs = [
        {"variant": "bam", "seed": s, "average": 60.0, "tasks": {}, "wall_s": 60.0, "config": to_dict(cfg),
         "key": variant_key(seed_config(cfg, s), "bam", out)}
        for s in (1, 2)
    ]  # fmt: skip
    (out / "results.json").write_text(json.dumps({"runs": runs, "tuning": {"bam": record}}))
    argv = ["reproduce-glue", "--config", str(SMOKE), "--out", str(out), "--seeds", "2", "--variants", "bam",
            "--tune", "student.fixed_lambda=0.5,1.0", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    assert "0 of 4 steps to run" in capsys.readouterr().out  # tuned, and run with the choice: all done
    assert main([*argv, "--tune", "teachers.lr=0.002,0.001"]) == 0
    printed = capsys.readouterr().out
    assert "seed 1  tune bam fixed_lambda=0.5" in printed and "seed 1  tune bam fixed_lambda=1.0" in printed
    assert "bam           done" not in printed and "done" not in printed.split("tune bam", 1)[1]


def test_a_call_of_several_processes_stops_rather_than_wait_for_shared_stages(tmp_path: Path, monkeypatch) -> None:
    """Its other ranks would wait in a barrier meanwhile, which times out: every rank stops, naming the lock; one
    process waits instead (test_calls_with_their_own_seeds_fill_one_out)."""
    # what rank 0 sends, every rank gets
    monkeypatch.setattr("pipeline.experiments.run.broadcast_object_list", lambda objects: objects)
    two = SimpleNamespace(is_main_process=True, num_processes=2, print=print)
    with lock_held_elsewhere(tmp_path / "locks" / "seed-3.lock"):
        with pytest.raises(ReproduceError, match=r"seed 3's shared stages.*does not wait.*seed-3\.lock"):
            with _shared(tmp_path, 3, two):
                pass
    with _shared(tmp_path, 3, two):  # free again: taken at once
        assert (tmp_path / "locks" / "seed-3.lock").exists()


def test_teachers_trained_again_at_another_thread_count_are_said_to_differ() -> None:
    """On a CPU the torch thread count changes the order of sums: a seed's teachers trained again at another count
    differ slightly from the recorded ones its recorded runs learnt from."""
    said: list[str] = []
    cpu = SimpleNamespace(device=SimpleNamespace(type="cpu"), print=said.append)
    now, other = torch.get_num_threads(), torch.get_num_threads() + 1
    single = {"compute": {t: {"device": "cpu", "threads": other} for t in ("cola", "rte")}}
    say_other_threads(single, 2, cpu)
    assert len(said) == 1 and f"seed 2's recorded teachers were trained at {other} torch" in said[0]
    assert f"at {now}:" in said[0] and f"OMP_NUM_THREADS={other}" in said[0]
    single["compute"]["rte"]["threads"] = now  # a mix: no one count trains them as they were
    say_other_threads(single, 2, cpu)
    assert "different counts" in said[1] and "OMP_NUM_THREADS" not in said[1]
    for quiet in (  # the same count, nothing recorded (also as an older record's None), or a GPU: nothing to say
        {"compute": {"cola": {"device": "cpu", "threads": now}}},
        None,
        {"compute": None},
        {"compute": {"cola": None, "rte": None}},
    ):
        say_other_threads(quiet, 2, cpu)
    say_other_threads(single, 2, SimpleNamespace(device=SimpleNamespace(type="cuda"), print=said.append))
    assert len(said) == 2
