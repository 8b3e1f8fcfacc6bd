"""The kernel's file lock (flock), taken with an error that says which file and why: it goes with the process that
holds it, also a killed one, so no lock file is ever left to clean up. A filesystem without flock is an error,
never a soft lock that a crash would leave behind."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout


def file_lock(path: str | Path) -> FileLock:
    """A lock object on `path` (its folder made if missing). Each object is a holder of its own: another process,
    or another object in this process, is refused while it holds the file (in the same thread filelock refuses to
    wait for it at all: keep one object per file there)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), fallback_to_soft=False)


def acquire(lock: FileLock, busy: str, error: type[Exception], place: str, timeout: float = 0, waiting=None):
    """Take `lock` within `timeout` seconds (0: now or never; -1: wait as long as it takes) and return it as a context
    manager that lets it go; else `error` saying `busy` and which file, or that `place` needs a filesystem with flock.
    `waiting`, if given, is called once when the lock is not free at once and the call is about to wait for it."""
    try:
        if waiting is None or timeout == 0:
            return lock.acquire(timeout=timeout)
        try:
            return lock.acquire(timeout=0)
        except Timeout:
            pass  # held elsewhere: say so, then wait
    except Timeout:
        raise error(f"{busy} ({lock.lock_file})") from None
    except (OSError, NotImplementedError) as err:
        raise error(f"cannot lock {lock.lock_file}: {err} ({place} must be on a filesystem with flock)") from err
    waiting()
    return acquire(lock, busy, error, place, timeout)
