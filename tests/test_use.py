"""Using a run: the exported model folders and their cards, tracking, plots, and `status` showing the DAG."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMOKE, run_smoke

from pipeline.cli import main
from pipeline.core.accel import make_accelerator
from pipeline.core.config import load_config
from pipeline.core.training import flatten
from pipeline.dag import run_stages, stage_status
from stages import STAGES as REGISTRY

TASKS = ["sst2", "mrpc", "stsb", "rte"]
STAGES = ["data", "teachers", "distill", "student", "evaluate", "report"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tracked(smoke_run: Path, tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """The smoke run redone from scratch with `--report-to tensorboard`, and the student as it was in memory
    right before it was saved."""
    import student.train

    out = tmp_path_factory.mktemp("tracked") / "run"
    shutil.copytree(smoke_run, out)
    in_memory = []
    save_model = student.train.save_model

    def keep_a_copy(model, tokenizer, out_dir):
        in_memory.append(copy.deepcopy(model).eval())
        save_model(model, tokenizer, out_dir)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(student.train, "save_model", keep_a_copy)
        ran = run_stages(REGISTRY, load_config(SMOKE), out, make_accelerator("tensorboard", out), force=True)
    assert ran == STAGES
    return out, in_memory[0]


def sample_batch(run: Path, model_dir: Path, task_index: int, n: int = 6) -> dict[str, torch.Tensor]:
    """A padded batch of the run's raw dev texts of one task, tokenised by the tokenizer saved in `model_dir`."""
    from transformers import AutoTokenizer

    from pipeline.core.glue import read_tsv_split
    from pipeline.core.tasks import get_glue_task

    task = get_glue_task(TASKS[task_index])
    examples = read_tsv_split(task, "dev", run / "data" / "synthetic-glue")[:n]
    b = [e.text_b for e in examples] if examples[0].text_b is not None else None
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer([e.text_a for e in examples], b, padding=True, return_tensors="pt")
    return {**batch, "task_ids": torch.full((n,), task_index)}


@torch.inference_mode()
def test_exported_student_answers_like_the_model_that_was_trained(tracked) -> None:
    """load_student, and the bare folder read with AutoModel + the safetensors heads, give the in-memory outputs."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    from pipeline import load_student

    run, in_memory = tracked
    model_dir = run / "student" / "model"
    loaded = load_student(model_dir)
    encoder = AutoModel.from_pretrained(model_dir, use_safetensors=True).eval()
    heads = load_file(str(model_dir / "heads.safetensors"))
    meta = json.loads((model_dir / "heads.json").read_text())
    assert meta["tasks"] == TASKS == loaded.task_names and meta["pooling"] == "pooler"
    for i, task in enumerate(TASKS):
        batch = sample_batch(run, model_dir, i)
        width = meta["heads"][task]["outputs"]
        expected = in_memory(**batch)[:, :width]
        np.testing.assert_allclose(loaded(**batch)[:, :width], expected, atol=1e-5)
        pooled = encoder(**{k: v for k, v in batch.items() if k != "task_ids"}).pooler_output
        by_hand = pooled @ heads[f"{task}.weight"].T + heads[f"{task}.bias"]
        np.testing.assert_allclose(by_hand, expected, atol=1e-5)


@torch.inference_mode()
def test_exported_teacher_loads_the_same_two_ways(smoke_run: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModel

    from pipeline import load_student

    model_dir = smoke_run / "teachers" / "rte" / "model"
    batch = sample_batch(smoke_run, model_dir, TASKS.index("rte"))
    batch["task_ids"] = torch.zeros_like(batch["task_ids"])  # the teacher's only head
    encoder = AutoModel.from_pretrained(model_dir, use_safetensors=True).eval()
    heads = load_file(str(model_dir / "heads.safetensors"))
    pooled = encoder(**{k: v for k, v in batch.items() if k != "task_ids"}).pooler_output
    np.testing.assert_allclose(
        load_student(model_dir)(**batch), pooled @ heads["rte.weight"].T + heads["rte.bias"], atol=1e-5
    )


def test_model_cards(smoke_run: Path) -> None:
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    summary = json.loads((smoke_run / "student" / "summary.json").read_text())
    card = (smoke_run / "student" / "model" / "README.md").read_text()
    for name in TASKS:  # teacher and student score side by side, as in metrics.json
        t = metrics["tasks"][name]
        assert f"| {name} | {t['metric']} | {t['teacher_score']:.1f} | {t['student_score']:.1f} |" in card
    assert "| sst2 | classification | negative, positive |" in card
    assert "| rte | classification | entailment, not_entailment |" in card
    assert "| stsb | regression |" in card
    assert f"**{metrics['average']['student']:.1f}**" in card
    assert "teacher annealing" in card and "from pipeline import load_student" in card
    assert "AutoModel.from_pretrained" in card and "heads.safetensors" in card
    assert summary["command"] in card and "  lr: 0.002\n" in card and "  log_every: 5\n" in card  # student section
    for name in TASKS:
        teacher = json.loads((smoke_run / "teachers" / name / "metrics.json").read_text())
        card = (smoke_run / "teachers" / name / "model" / "README.md").read_text()
        assert f"# BAM! teacher: {name} (smoke)" in card and "teachers:\n" in card
        for metric, value in teacher["dev"]["dev"].items():
            assert metric in card and f"{value:.1f}" in card


def read_tensorboard(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_trackers_get_the_records_of_the_jsonl_logs(tracked) -> None:
    run, _ = tracked
    scalars = read_tensorboard(run / "tracking" / "smoke")
    logs = {"student": run / "student" / "log.jsonl"}
    logs |= {f"teachers/{t}": run / "teachers" / t / "log.jsonl" for t in TASKS}
    expected: dict[str, dict[int, float]] = {}
    for prefix, path in logs.items():
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert set(records[-1]) == {"step", "dev", "score"}, "the log ends with the dev metrics"
        for record in records:
            for key, value in flatten(record).items():
                if key != "step":
                    expected.setdefault(f"{prefix}/{key}", {})[record["step"]] = value
    assert set(scalars) == set(expected)
    for tag, values in expected.items():
        assert scalars[tag] == pytest.approx(values, rel=1e-6), tag
    summary = json.loads((run / "student" / "summary.json").read_text())
    spearman = summary["dev"]["stsb"]["dev"]["spearman"]
    assert scalars["student/dev/stsb/dev/spearman"] == {summary["total_steps"]: pytest.approx(spearman)}
    assert {"student/lambda", "student/lr", "student/examples_per_s", "student/loss/mrpc"} <= set(scalars)
    assert {"teachers/sst2/loss", "teachers/sst2/lr", "teachers/sst2/dev/dev/accuracy"} <= set(scalars)


def test_tracking_is_no_stage_output_and_changes_no_digest(tracked, smoke_run: Path) -> None:
    run, _ = tracked
    cfg = load_config(SMOKE)
    for stage in STAGES:
        files = json.loads((run / "manifests" / f"{stage}.json").read_text())["files"]
        assert not any(f.startswith("tracking/") for f in files)
        assert stage_status(REGISTRY, stage, cfg, run)[0] == "done"
    for stage in ("data", "teachers"):  # same config, same data files: the same digest as the untracked run
        digests = [json.loads((r / "manifests" / f"{stage}.json").read_text())["digest"] for r in (run, smoke_run)]
        assert digests[0] == digests[1]
    assert run_smoke(run) == []  # without --report-to, nothing is out of date


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_a_tracker_that_is_not_installed_is_a_clear_error(tmp_path: Path, capsys) -> None:
    rc = main(["run", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "--report-to", "wandb"])
    err = capsys.readouterr().err
    assert rc == 2 and "needs the package wandb" in err and "pip install wandb" in err
    assert not (tmp_path / "run").exists()  # refused before any stage ran


def check_png(path: Path) -> tuple[int, int]:
    """Height and width of a valid, non-blank PNG."""
    import matplotlib.image

    assert path.read_bytes().startswith(PNG)
    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0.05, f"{path} is blank"
    assert not list(path.parent.glob("*.tmp")), "temporary file left behind"
    return pixels.shape[:2]


def test_report_links_its_plots(smoke_run: Path) -> None:
    report = (smoke_run / "report.md").read_text()
    for name in ("scores.png", "training.png"):
        assert f"(plots/{name})" in report
        check_png(smoke_run / "plots" / name)


def test_plot_scores(tmp_path: Path) -> None:
    from pipeline.core.plots import plot_scores

    small = {"teacher": {"sst2": 90.0, "cola": -3.5, "avg": 43.2}, "student": {"sst2": 91.0, "cola": 10.0, "avg": 50.5}}
    path = plot_scores(small, tmp_path / "plots" / "small.png", "two groups")
    assert path == tmp_path / "plots" / "small.png"
    tasks = [f"task{i}" for i in range(9)]
    many = {f"variant {v}": {t: 10.0 * v + i for i, t in enumerate(tasks) if (v, i) != (2, 3)} for v in range(6)}
    wide = plot_scores(many, tmp_path / "plots" / "many.png", "six variants, one score missing", ylabel="score")
    assert check_png(wide)[1] > check_png(path)[1]  # the figure widens with the number of bars
    with pytest.raises(ValueError, match="no scores"):
        plot_scores({"teacher": {}}, tmp_path / "empty.png", "nothing")


def test_plot_scores_draws_the_spread_as_whiskers(tmp_path: Path, monkeypatch) -> None:
    """Over seeds: a whisker from each bar's min to its max; none where there is nothing to spread (one seed)."""
    import pipeline.core.plots as plots

    figures, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    scores = {"single": {"cola": 20.0, "rte": 60.0}, "bam": {"cola": 25.0, "rte": 62.0}}
    spread = {"single": {"cola": (20.0, 20.0), "rte": (55.0, 95.0)}, "bam": {"cola": (18.0, 30.0)}}
    check_png(plots.plot_scores(scores, tmp_path / "s.png", "median", spread=spread))
    ax = figures[0].axes[0]
    segments = [
        [tuple(map(float, point)) for point in segment]
        for container in ax.containers
        if type(container).__name__ == "ErrorbarContainer"
        for segment in container.lines[2][0].get_segments()
    ]
    (single_rte,) = [s for s in segments if s[0][0] > 0.5 and s[0][0] < 1.0]
    assert [y for _, y in single_rte] == [55.0, 95.0]
    assert sorted(tuple(y for _, y in s) for s in segments) == [(18.0, 30.0), (55.0, 95.0)]  # not single's CoLA
    assert ax.get_ylim()[1] > 95.0  # the whisker fits


def test_plot_training_curves(smoke_run: Path, tmp_path: Path) -> None:
    from pipeline.core.plots import plot_training_curves

    log = smoke_run / "student" / "log.jsonl"
    cut = tmp_path / "cut.jsonl"  # a log still being written: its last line is cut short
    lines = log.read_text().splitlines()
    cut.write_text("\n".join(lines[: len(lines) // 2]) + "\n" + lines[len(lines) // 2][:25])
    path = plot_training_curves({"bam": log, "half": cut}, tmp_path / "training.png")
    check_png(path)
    only_dev = tmp_path / "dev.jsonl"
    only_dev.write_text(lines[-1] + "\n")
    with pytest.raises(ValueError, match="no training records"):
        plot_training_curves({"x": only_dev}, tmp_path / "none.png")


@pytest.mark.parametrize("adversarial", [False, True])
def test_a_training_curve_kept_in_results_json_gives_back_the_logs_records(tmp_path: Path, adversarial: bool) -> None:
    """`training_curve` keeps at most CURVE_POINTS evenly spaced records, the last among them, as columns (a task
    missing from a record is null there); turned back into records they are the log's own, with the loss at the
    adversarial embeddings when the student logged one."""
    from pipeline.core.plots import CURVE_POINTS, _records, _training_records, plot_training_curves, training_curve

    log = tmp_path / "log.jsonl"
    lines = []
    for step in range(1, 301):
        loss = {"cola": 1 / step, **({"rte": 2 / step} if step % 3 else {})}
        seen = {"cola": 10 * step, **({"rte": 5 * step} if step % 3 else {})}
        adv = {"adv_loss": {task: 1.5 * value for task, value in loss.items()}} if adversarial else {}
        lines.append(json.dumps({"step": step, "lr": 1e-4 / step, "lambda": step / 300, "loss": loss, **adv,
                                 "examples_seen": seen, "examples_per_s": 50.0}))  # fmt: skip
    log.write_text("\n".join(lines + ['{"dev": {"cola": {"mcc": 1.0}}}']) + "\n")
    curve = training_curve(log)
    json.dumps(curve)  # plain JSON
    assert len(curve["step"]) == CURVE_POINTS and curve["step"][0] == 1 and curve["step"][-1] == 300
    missing = [i for i, step in enumerate(curve["step"]) if step % 3 == 0]
    assert missing and all(curve["loss"]["rte"][i] is None for i in missing)  # RTE absent from those records
    assert ("adv_loss" in curve) == adversarial
    originals = {r["step"]: r for r in _training_records(log)}
    for record in _records(curve):
        original = originals[record["step"]]
        assert record["loss"] == original["loss"] and record["examples_seen"] == original["examples_seen"]
        assert record.get("adv_loss") == original.get("adv_loss")
        assert (record["lr"], record["lambda"]) == (original["lr"], original["lambda"])
    check_png(plot_training_curves({"from log": log, "from results.json": curve}, tmp_path / "both.png"))


def test_status_shows_the_dag(smoke_copy: Path, capsys) -> None:
    (smoke_copy / "distill" / "rte" / "dev.npy").unlink()
    assert main(["status", "--config", str(SMOKE), "--out", str(smoke_copy)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert list(lines) == STAGES
    needs = {"data": "-", "teachers": "data", "distill": "data, teachers", "student": "data, distill",
             "evaluate": "data, teachers, student", "report": "student, evaluate"}  # fmt: skip
    for stage, upstream in needs.items():
        assert lines[stage].split()[1:][: len(upstream.split())] == upstream.split(), lines[stage]
    assert " done " in lines["teachers"] and "distill/rte/dev.npy (missing)" in lines["distill"]
    assert "stale" in lines["student"] and "needs 'distill' is stale" in lines["student"]


@pytest.mark.parametrize(
    ("probed", "share_of", "panels"),
    [([], ["stsb"], []), (["bam"], ["stsb"], [(None, "bam")]), (["bam", "std"], [], [(None, "bam")]),
     (["bam", "std"], ["stsb"], [("stsb", None)]), (["bam", "std"], ["qqp"], [(None, "bam")])],
)  # fmt: skip
def test_gradient_share_panels_follow_the_regression_tasks_across_runs(probed, share_of, panels) -> None:
    """One probed student: every task's share in its run; several: the share of each task asked for (the
    regression tasks, from reproduce-glue), a line per student, so a setting that starves it stands out."""
    from pipeline.core.plots import share_panels

    assert share_panels(probed, ["sst2", "stsb"], share_of) == panels


def test_a_task_share_panel_draws_one_line_per_probed_student(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from pipeline.core.plots import _plot_task_share

    def log(share: float) -> list[dict]:  # stsb's share of the squared gradient is `share` at every record
        norms = {"stsb": share**0.5, "sst2": (1 - share) ** 0.5}
        return [{"step": s, "grad_norm": norms} for s in range(1, 40)]

    ax = Figure().subplots()
    _plot_task_share(ax, {"a": log(0.1), "b": log(0.6)}, "stsb", lambda r: r["step"], {"a": "C0", "b": "C1"})
    levels = sorted(float(np.mean(line.get_ydata())) for line in ax.get_lines())
    assert levels == pytest.approx([0.1, 0.6])
    assert ax.get_title() == "stsb: gradient share at the heads' input"
