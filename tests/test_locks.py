"""The kernel lock helper both the engine (a run folder's lock) and reproduce-glue (OUT's locks) take locks with."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.core.errors import StoreError
from pipeline.core.locks import acquire, file_lock


def test_a_held_lock_is_refused_naming_its_file_and_free_again_once_let_go(tmp_path: Path) -> None:
    path = tmp_path / "made" / "x.lock"
    first = file_lock(path)  # its folder is made
    with acquire(first, "busy here", StoreError, "the folder"):
        with pytest.raises(StoreError, match=r"busy here \(.*made/x\.lock\)"):
            acquire(file_lock(path), "busy here", StoreError, "the folder")  # another holder, even in this process
    with acquire(file_lock(path), "busy here", StoreError, "the folder"):
        assert file_lock(path).is_locked is False and first.is_locked is False


def test_a_call_that_waits_says_so_once_and_gets_the_lock_when_it_is_let_go(tmp_path: Path) -> None:
    held, said = threading.Event(), []

    def hold() -> None:  # another thread holds it for a moment
        with file_lock(tmp_path / "x.lock"):
            held.set()
            threading.Event().wait(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    with acquire(file_lock(tmp_path / "x.lock"), "busy", StoreError, "the folder", -1, lambda: said.append(1)) as got:
        assert got.is_locked
    holder.join()
    assert said == [1]
    with acquire(file_lock(tmp_path / "x.lock"), "busy", StoreError, "the folder", -1, lambda: said.append(2)):
        pass
    assert said == [1]  # free at once: not said
