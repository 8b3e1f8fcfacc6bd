"""Bad input met by the loaders themselves: no pickle is ever opened (weights, a planted file, object .npy
arrays), any override string gives a config or a ConfigError naming its key (property tests), a model of another
vocabulary as teachers.init_from is an error, and a file's hash is remembered only while the file is unchanged."""

from __future__ import annotations

import ast
import dataclasses
import os
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bad_input_helpers import STAGES
from conftest import SMOKE, run_smoke
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.config import ConfigError, RunConfig, load_config
from pipeline.core.store import StoreError, file_sha256
from pipeline.dag import stage_status
from stages import STAGES as REGISTRY

# ----------------------------------------------------------------------------------------- 11: no pickle, ever


def test_pickled_weights_in_a_run_folder_are_refused(smoke_copy: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from pipeline.core.model import ModelLoadError, load_model

    model_dir = smoke_copy / "teachers" / "sst2" / "model"
    torch.save(load_file(str(model_dir / "model.safetensors")), model_dir / "pytorch_model.bin")  # a pickle
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as info:
        load_model(model_dir)
    assert str(model_dir) in str(info.value)
    state, why = stage_status(REGISTRY, "teachers", load_config(SMOKE), smoke_copy)
    assert state == "stale"
    assert "teachers/sst2/model/model.safetensors (missing)" in why


class _Trap:
    """Unpickling this creates `marker` (what a malicious pickle would do with os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_planted_pickle_is_never_opened(smoke_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    evil = smoke_copy / "distill" / "sst2" / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Trap(marker)))
    cfg = load_config(SMOKE)
    memo: dict = {}
    assert all(stage_status(REGISTRY, name, cfg, smoke_copy, memo)[0] == "done" for name in STAGES)
    assert run_smoke(smoke_copy) == []
    from pipeline.core.data import load_split
    from pipeline.core.store import load_soft_targets

    for split in ("train", "dev"):  # the soft-target store's own reader, on the folder holding the pickle
        data = load_split(smoke_copy, "sst2", split)
        load_soft_targets(smoke_copy / "distill" / "sst2", split, data.ids, data.examples_fingerprint)
    assert not marker.exists(), "a code path unpickled distill/sst2/evil.pkl"
    assert evil.is_file()
    pickle.loads(evil.read_bytes())  # the trap is armed: unpickling it does create the marker
    assert marker.exists()


@pytest.mark.parametrize("mmap", [True, False])
def test_object_npy_is_refused(tmp_path: Path, mmap: bool) -> None:
    from pipeline.core.store import read_npy

    path = tmp_path / "train.npy"
    np.save(path, np.array([{"a": 1}, None, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(StoreError, match="not a plain .npy array") as info:
        read_npy(path, mmap=mmap)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------- override strings, properties


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


SECTIONS = {name: f.type for name, f in _fields(RunConfig).items() if name != "name"}
SECTION_CLASSES = {name: type(getattr(RunConfig(), name)) for name in SECTIONS}
KEYS = ["name"] + [f"{s}.{k}" for s, cls in SECTION_CLASSES.items() for k in _fields(cls)]
INT_KEYS = [f"{s}.{k}" for s, cls in SECTION_CLASSES.items() for k, f in _fields(cls).items() if f.type in ("int", int)]

literal = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
).map(repr)
value_text = st.one_of(st.text(), literal, st.sampled_from(["null", "None", "nan", "inf", "-1", "0", "1e-4", "{}"]))


def _config_or_config_error(token: str) -> RunConfig | None:
    try:
        return load_config(None, [token])
    except ConfigError:
        return None


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), st.builds(lambda k, v: f"--{k}={v}", st.text(), value_text)))
def test_any_override_string_gives_a_config_or_a_config_error(token: str) -> None:
    _config_or_config_error(token)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KEYS), value_text)
def test_an_accepted_override_changes_only_its_own_key(key: str, value: str) -> None:
    cfg = _config_or_config_error(f"--{key}={value}")
    if cfg is None:
        return
    default = RunConfig()
    section, _, leaf = key.partition(".")
    for name in _fields(RunConfig):
        if name != section:
            assert getattr(cfg, name) == getattr(default, name), f"--{key} changed {name}"
    if leaf:
        for name in _fields(SECTION_CLASSES[section]):
            if name != leaf:
                assert getattr(getattr(cfg, section), name) == getattr(getattr(default, section), name)


def _is_int_literal(text: str) -> bool:
    try:
        value = ast.literal_eval(text)
    except Exception:  # anything that is not a literal is not an int
        return False
    return isinstance(value, int) and not isinstance(value, bool)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.builds(
            lambda s, k: (f"{s}.{k}", "1"),
            st.sampled_from(sorted(SECTIONS)),
            st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True),
        ),
        st.tuples(st.sampled_from(INT_KEYS), value_text.filter(lambda v: not _is_int_literal(v))),
    )
)
def test_a_rejected_override_names_its_key(key_value: tuple[str, str]) -> None:
    key, value = key_value
    section, _, leaf = key.partition(".")
    if leaf in _fields(SECTION_CLASSES[section]) and key not in INT_KEYS:
        return  # a real key drawn by the unknown-key branch
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"--{key}={value}"])
    assert f"'{key}'" in str(info.value)


@pytest.mark.parametrize(
    "value", ["-" * 5000 + "1", "not " * 3000 + "1", "[" * 2000 + "]" * 2000], ids=["minus", "not", "brackets"]
)
def test_deeply_nested_override_value_is_a_config_error_not_a_crash(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"--student.lr={value}"])
    assert "'student.lr'" in str(info.value)


def test_init_from_a_model_with_another_vocabulary_is_an_error(tmp_path: Path) -> None:
    """A teacher started from a model whose tokenizer is not the run's would read the data's token ids as other
    words; the error names teachers.init_from. The same vocabulary loads, with the saved head for the task."""
    import torch

    from pipeline.core.config import ModelConfig
    from pipeline.core.model import build_model, build_model_from, load_tokenizer, save_model
    from pipeline.core.tasks import get_glue_task
    from pipeline.core.tiny import build_tiny_random

    cfg = ModelConfig(tiny_hidden_size=16, tiny_layers=1, tiny_heads=2)
    tasks = [get_glue_task("sst2"), get_glue_task("rte")]
    for name, words in (("ours", "good bad film"), ("other", "cat dog bird fish")):
        build_tiny_random(tmp_path / name, [words], cfg, seed=0)
    saved = tmp_path / "student"
    save_model(build_model(str(tmp_path / "ours"), tasks, cfg, seed=0), load_tokenizer(str(tmp_path / "ours")), saved)
    with pytest.raises(ValueError, match=r"teachers.init_from '.*student': its tokenizer's vocabulary is not"):
        build_model_from(saved, [get_glue_task("rte")], cfg, seed=1, tokenizer=load_tokenizer(str(tmp_path / "other")))
    ours = load_tokenizer(str(tmp_path / "ours"))
    model = build_model_from(saved, [get_glue_task("rte")], cfg, seed=1, tokenizer=ours)
    source = build_model(str(tmp_path / "ours"), tasks, cfg, seed=0)
    assert torch.equal(model.heads["rte"].weight, source.heads["rte"].weight)  # the saved head, not a new one
    # a task without a saved head gets a new one when trained, and is an error when the model is taken as it is
    cola = build_model_from(saved, [get_glue_task("cola")], cfg, seed=1, tokenizer=ours)
    assert cola.heads["cola"].weight.shape[0] == 2
    with pytest.raises(ValueError, match=r"has no head for task 'cola'.*heads: \['rte', 'sst2'\]"):
        build_model_from(saved, [get_glue_task("cola")], cfg, seed=1, tokenizer=ours, need_heads=True)


def test_input_hashes_are_remembered_only_while_the_file_is_unchanged(tmp_path: Path, monkeypatch) -> None:
    import pipeline.core.store as store

    hashed, clock = [], {"later": 0}
    monkeypatch.setattr(store, "file_sha256", lambda p: hashed.append(p) or file_sha256(p))
    monkeypatch.setattr(store, "time", SimpleNamespace(time_ns=lambda: time.time_ns() + clock["later"]))
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\na\t1\n")
    first = store.source_sha256(path)
    assert store.source_sha256(path) == first and len(hashed) == 2  # changed in the last 2 s: hashed every time
    clock["later"] = 60 * 10**9  # a minute on
    assert store.source_sha256(path) == first and store.source_sha256(path) == first and len(hashed) == 3
    stamp = path.stat().st_mtime_ns
    path.write_text("sentence\tlabel\nb\t1\n")  # same size; even with the old modification time put back,
    os.utime(path, ns=(stamp, stamp))  # its change time is new
    assert store.source_sha256(path) == file_sha256(path) != first
