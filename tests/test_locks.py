"""The kernel lock helper both the engine (a run folder's lock) and reproduce-glue (OUT's locks) take locks with."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.core.errors import StoreError
from pipeline.core.locks import acquire, file_lock


def test_a_held_lock_is_refused_naming_its_file_and_free_again_once_let_go(tmp_path: Path) -> None:
    path = tmp_path / "made" / "x.lock"
    with acquire(file_lock(path), "busy here", StoreError, "the folder"):  # its folder is made
        with pytest.raises(StoreError, match=r"busy here \(.*made/x\.lock\)"):
            acquire(file_lock(path), "busy here", StoreError, "the folder")  # another holder, even in this process
    with acquire(file_lock(path), "busy here", StoreError, "the folder") as got:
        assert got.is_locked


def test_a_call_that_waits_says_so_once_and_gets_the_lock_when_it_is_let_go(tmp_path: Path) -> None:
    held, let_go, said = threading.Event(), threading.Event(), []

    def hold() -> None:  # another thread holds it until the waiting call has said that it waits
        with file_lock(tmp_path / "x.lock"):
            held.set()
            let_go.wait(60)

    def waiting() -> None:
        said.append("waiting")
        let_go.set()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(60)
    with acquire(file_lock(tmp_path / "x.lock"), "busy", StoreError, "the folder", -1, waiting) as got:
        assert got.is_locked
    holder.join()
    assert said == ["waiting"]
    with acquire(file_lock(tmp_path / "x.lock"), "busy", StoreError, "the folder", -1, waiting):
        pass
    assert said == ["waiting"]  # free at once: not said
