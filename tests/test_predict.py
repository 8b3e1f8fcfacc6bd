"""Predicting with a saved student: files in, JSON Lines out, same answers as during evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main

GLUE = {"sst2": "SST-2", "stsb": "STS-B"}


def run_predict(capsys, *args: str) -> tuple[int, list[dict], str]:
    rc = main(["predict", *args])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_reloaded_student_reproduces_its_dev_metrics(smoke_run: Path, capsys) -> None:
    """Saved → reloaded → predicted from the raw TSV gives the dev scores measured in memory."""
    from pipeline.core.glue import read_tsv_split
    from pipeline.core.metrics import compute_metrics
    from pipeline.core.tasks import get_glue_task

    metrics = json.loads((smoke_run / "metrics.json").read_text())
    model = str(smoke_run / "student" / "model")
    for name in ("sst2", "stsb"):
        task = get_glue_task(name)
        tsv = smoke_run / "data" / "synthetic-glue" / GLUE[name] / "dev.tsv"
        rc, rows, err = run_predict(capsys, "--model", model, "--task", name, "--input", str(tsv))
        assert rc == 0, err
        gold = np.array([ex.label for ex in read_tsv_split(task, "dev", smoke_run / "data" / "synthetic-glue")])
        assert len(rows) == len(gold)
        if name == "stsb":
            preds = np.array([r["score"] for r in rows])
        else:
            preds = np.array([[r["probabilities"][label] for label in task.labels] for r in rows])
            assert all(r["label"] == task.labels[int(np.argmax(p))] for r, p in zip(rows, preds))
            np.testing.assert_allclose(preds.sum(1), 1.0, rtol=1e-5)
        got = compute_metrics(task, preds, gold)
        for key, value in metrics["tasks"][name]["student"]["dev"].items():
            assert got[key] == pytest.approx(value, abs=1e-4), (name, key)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "stdin"])
def test_input_formats_give_the_same_predictions(smoke_run: Path, tmp_path: Path, capsys, monkeypatch, fmt) -> None:
    import io

    texts = ["superb happy story", 'a "quoted", awful boring film', "ünïcode brilliant song"]
    model = str(smoke_run / "student" / "model")
    path = tmp_path / "in.tsv"
    path.write_text("sentence\n" + "".join(t + "\n" for t in texts), encoding="utf-8")
    _, reference, _ = run_predict(capsys, "--model", model, "--task", "sst2", "--input", str(path))
    if fmt == "jsonl":
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps({"text_a": t}) + "\n" for t in texts), encoding="utf-8")
        arg = str(path)
    elif fmt == "csv":
        path = tmp_path / "in.csv"
        path.write_text(
            "sentence\n" + "".join(f'"{t.replace(chr(34), chr(34) * 2)}"\n' for t in texts), encoding="utf-8"
        )
        arg = str(path)
    else:
        monkeypatch.setattr("sys.stdin", io.StringIO("".join(json.dumps({"sentence": t}) + "\n" for t in texts)))
        arg = "-"
    rc, rows, err = run_predict(capsys, "--model", model, "--task", "sst2", "--input", arg)
    assert rc == 0, err
    assert rows == reference and len(rows) == 3


def test_bad_prediction_input_is_a_clear_error(smoke_run: Path, tmp_path: Path, capsys) -> None:
    model = str(smoke_run / "student" / "model")
    path = tmp_path / "in.tsv"
    path.write_text("text\nhello\n", encoding="utf-8")
    rc, _, err = run_predict(capsys, "--model", model, "--task", "sst2", "--input", str(path))
    assert rc == 2 and "in.tsv: line 1: header lacks column 'sentence' or 'text_a'" in err
    rc, _, err = run_predict(capsys, "--model", model, "--task", "cola", "--input", str(path))
    assert rc == 2 and "no head for 'cola'" in err


# ------------------------------------------------------------------------------------------- what predict refuses


BAD_INPUTS = {  # case: (file name, content, what the message must say besides the file)
    "array line": ("in.jsonl", '{"sentence": "fine"}\n["a list"]\n', ["line 2", "expected a JSON object"]),
    "number line": ("in.jsonl", '{"sentence": "fine"}\n5\n', ["line 2", "expected a JSON object", "got 5"]),
    "string line": ("in.jsonl", '"a sentence in a string"\n', ["line 1", "expected a JSON object"]),
    "null line": ("in.jsonl", "null\n", ["line 1", "expected a JSON object", "got None"]),
    "number as text": ("in.jsonl", '{"sentence": "fine"}\n{"sentence": 5}\n', ["line 2", "expected text, got 5"]),
    "null as text": ("in.jsonl", '{"sentence": null}\n', ["line 1", "'sentence'", "expected text, got None"]),
    "empty text": ("in.jsonl", '{"text_a": "  "}\n', ["line 1", "'text_a'", "the text is empty"]),
    "empty csv text": ("in.csv", 'sentence\nfine\n""\n', ["line 3", "the text is empty"]),
    "csv not utf-8": ("in.csv", b"sentence\nfine\ncaf\xe9 au lait\n", ["line 3", "not valid UTF-8"]),
    "tsv not utf-8": ("in.tsv", b"sentence\n\xff\xfe\n", ["line 2", "not valid UTF-8"]),
    "utf-16": ("in.csv", "sentence\nfine\n".encode("utf-16-le"), ["line 1", "NUL byte"]),
    "unclosed quote": ("in.csv", 'sentence\nfine\n"never closed\nmore\n', ["line 3", "unexpected end of data"]),
    "ragged row": ("in.csv", "sentence\nfine\none,two\n", ["line 3", "expected 1 comma-separated fields"]),
    "no text column": ("in.tsv", "text\nhello\n", ["line 1", "'sentence' or 'text_a'"]),
    "empty file": ("in.jsonl", "\n\n", ["line 1", "the file is empty"]),
    "long line": ("in.jsonl", "[" + "1, " * 50_000 + "1]\n", ["line 1", "expected a JSON object", "characters in all"]),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_unreadable_input_is_an_error_naming_file_and_line(smoke_run: Path, tmp_path: Path, capsys, case) -> None:
    name, content, fragments = BAD_INPUTS[case]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    rc, rows, err = run_predict(capsys, "--model", str(smoke_run / "student" / "model"), "--task", "sst2", "--input",
                                str(path))  # fmt: skip
    assert rc == 2 and not rows, err
    assert err.startswith(f"error: {path}: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert len(err) < len(str(path)) + 400, f"the message quotes too much of the input: {err[:500]!r}..."


def test_bad_stdin_is_an_error_naming_the_line(smoke_run: Path, capsys, monkeypatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"sentence": "ok"}\n{"sentence": "\xff"}\n')))
    rc, _, err = run_predict(capsys, "--model", str(smoke_run / "student" / "model"), "--task", "sst2", "--input", "-")
    assert rc == 2 and "<stdin>: line 2: not valid UTF-8" in err


def test_cr_only_line_ends_predict_as_lf(smoke_run: Path, tmp_path: Path, capsys) -> None:
    model = str(smoke_run / "student" / "model")
    out = []
    for end in ("\n", "\r"):
        path = tmp_path / "in.tsv"
        path.write_bytes(end.join(["sentence", "superb happy story", "awful boring film", ""]).encode())
        rc, rows, err = run_predict(capsys, "--model", model, "--task", "sst2", "--input", str(path))
        assert rc == 0 and len(rows) == 2, err
        out.append(rows)
    assert out[0] == out[1]


@pytest.mark.parametrize("size", ["0", "-3", "two"])
def test_batch_size_below_one_is_refused(smoke_run: Path, tmp_path: Path, capsys, size: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"sentence": "fine"}\n')
    with pytest.raises(SystemExit) as info:
        main(["predict", "--model", str(smoke_run / "student" / "model"), "--task", "sst2", "--input", str(path),
              "--batch-size", size])  # fmt: skip
    assert info.value.code == 2
    assert "--batch-size" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- damaged model folders


def _damage(model: Path, how: str) -> str:
    """Change a copied model folder as a bad copy or disk might; return what the error must name."""
    if how == "no checksums":
        (model / "checksums.json").unlink()
        return "no checksums.json: the folder was saved by an older format"
    name = {"weights": "model.safetensors", "heads": "heads.safetensors", "vocab": "tokenizer.json"}.get(how)
    if name is None:  # "missing"
        (model / "heads.safetensors").unlink()
        return "heads.safetensors (missing)"
    data = bytearray((model / name).read_bytes())
    data[-3] ^= 0x01  # one bit, near the end: still loads, silently wrong (safetensors' tensor data; JSON text)
    (model / name).write_bytes(bytes(data))
    return f"{name} (checksum differs)"


@pytest.mark.parametrize("how", ["weights", "heads", "vocab", "missing", "no checksums"])
def test_damaged_model_is_refused_before_predicting(smoke_run: Path, tmp_path: Path, capsys, how: str) -> None:
    import shutil

    from pipeline.core.model import ModelLoadError
    from pipeline.core.predict import load_student

    model = tmp_path / "model"
    shutil.copytree(smoke_run / "student" / "model", model)
    path = tmp_path / "in.jsonl"
    path.write_text('{"sentence": "superb happy story"}\n')
    rc, rows, err = run_predict(capsys, "--model", str(model), "--task", "sst2", "--input", str(path))
    assert rc == 0 and len(rows) == 1, err  # the intact copy (its model card added after saving is not checked)
    expected = _damage(model, how)
    rc, rows, err = run_predict(capsys, "--model", str(model), "--task", "sst2", "--input", str(path))
    assert rc == 2 and not rows
    assert f"error: {model}: " in err and expected in err, err
    assert "--force" in err  # how to get a sound folder
    with pytest.raises(ModelLoadError, match="checksum differs|missing|older format"):
        load_student(model)


def test_saved_model_lists_the_checksum_of_every_file(smoke_run: Path) -> None:
    from pipeline.core.store import file_sha256

    model = smoke_run / "student" / "model"
    listed = json.loads((model / "checksums.json").read_text())["files"]
    on_disk = {p.name for p in model.iterdir() if p.is_file()} - {"checksums.json", "README.md"}  # card: by report
    assert set(listed) == on_disk and {"model.safetensors", "heads.safetensors", "heads.json"} <= on_disk
    assert all(file_sha256(model / name) == sha for name, sha in listed.items())  # heads.json: re-recorded with specs


def test_mrpc_takes_the_hubs_column_names_as_well_as_the_tsvs(smoke_run: Path, tmp_path: Path, capsys) -> None:
    model = str(smoke_run / "student" / "model")
    pairs = [("the cat sat", "a cat was sitting"), ("stocks fell", "the river rose")]
    tsv, jsonl = tmp_path / "in.tsv", tmp_path / "in.jsonl"
    tsv.write_text("#1 String\t#2 String\n" + "".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    jsonl.write_text("".join(json.dumps({"sentence1": a, "sentence2": b}) + "\n" for a, b in pairs), encoding="utf-8")
    rc, from_tsv, err = run_predict(capsys, "--model", model, "--task", "mrpc", "--input", str(tsv))
    assert rc == 0, err
    rc, from_hub_names, err = run_predict(capsys, "--model", model, "--task", "mrpc", "--input", str(jsonl))
    assert rc == 0, err
    assert from_hub_names == from_tsv and len(from_tsv) == 2


def test_max_length_truncates_and_is_bounded_by_the_model(smoke_run: Path, tmp_path: Path, capsys) -> None:
    model = str(smoke_run / "student" / "model")
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"sentence": "superb happy story " * 10 + "awful boring film " * 10}) + "\n")
    args = ["--model", model, "--task", "sst2", "--input", str(path)]
    rc, full, err = run_predict(capsys, *args)
    assert rc == 0, err
    rc, short, err = run_predict(capsys, *args, "--max-length", "8")
    assert rc == 0, err
    assert short != full  # the first 6 words alone
    rc, _, err = run_predict(capsys, *args, "--max-length", "100000")
    assert rc == 2 and "--max-length 100000 is more than the model's 512 position embeddings" in err
