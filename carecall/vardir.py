"""The state directory of a ``serve`` or ``gate`` process (``--var-dir``), claimed for its lifetime.

Invariants, from ``claim()`` (before the process writes anything) until it exits:

- the var dir is mode 0700 and every file in it 0600: the process umask is 077, and
  group and other bits an older version left on the dir or its files are removed;
- the process holds an exclusive ``flock`` on ``VAR/carecall.lock``, which names its
  PID. A second server on the same var dir would share its SQLite file with a separate
  room registry (and a ``--demo`` of its own), so it refuses to start instead. The
  kernel drops a lock when its process dies: a crash leaves nothing stale behind;
- an SQLite database file is guarded the same way by ``PATH.lock`` beside it, wherever
  it lies, so two processes with different var dirs never share one file either.
  PostgreSQL needs no guard: several gates with separate var dirs may share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = "carecall.lock"
# How long to wait for a lock's holder to write its PID (it does so right after locking).
PID_WAIT = 1.0


class StateError(Exception):
    """The var dir or the database file cannot be used; one line for the operator."""


class InUse(StateError):
    """Another process holds the lock."""


class Lock:
    """An exclusive ``flock`` on a file that names the holder's PID."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path, what: str, hint: str) -> Lock:
        """Lock ``path`` or raise ``InUse`` naming ``what`` and the holder's PID."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StateError(f"cannot write in {_folder(path)}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InUse(f"{what} is in use by another carecall process ({holder}); "
                        f"{hint}") from None
        except OSError as error:
            os.close(fd)
            raise StateError(f"cannot lock {path}: {error.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            # Emptied first, so nobody reads a stale PID after the lock is gone.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None


def _folder(path: Path) -> str:
    return f"{path.parent}{os.sep}"


def _holder(fd: int) -> str:
    deadline = time.monotonic() + PID_WAIT
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"pid {text}"
        if time.monotonic() > deadline:
            return "pid unknown"
        time.sleep(0.05)


def _restrict(path: Path) -> None:
    """Remove the group and other bits of ``path`` (the owner's are left as they are)."""
    current = stat.S_IMODE(path.lstat().st_mode)
    wanted = current & 0o700
    if wanted != current:
        try:
            path.chmod(wanted)
        except OSError as error:
            raise StateError(f"cannot restrict {path} to its owner: {error.strerror}"
                             ) from None


def _prepare(var_dir: Path) -> None:
    try:
        var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # reported below
    except OSError as error:
        raise StateError(f"cannot create {var_dir}{os.sep}: {error.strerror}") from None
    if not var_dir.is_dir():
        raise StateError(f"{var_dir} is not a directory (see --var-dir)")
    _restrict(var_dir)


def _restrict_contents(var_dir: Path) -> None:
    for entry in var_dir.iterdir():
        if not entry.is_symlink():
            _restrict(entry)


@contextlib.contextmanager
def claim(var_dir: Path, database: Path | None = None) -> Iterator[None]:
    """Hold ``var_dir`` (and the SQLite file ``database``) for the ``with`` block.

    Raises ``StateError`` (``InUse`` when another process holds either) before
    anything but the var dir itself and the lock files has been written.
    """
    os.umask(0o077)
    _prepare(var_dir)
    locks = [Lock.take(var_dir / LOCK_NAME, f"{var_dir}{os.sep}",
                       "stop it or use --var-dir")]
    try:
        if database is not None:
            sidecar = database.with_name(database.name + ".lock")
            if sidecar.resolve() != locks[0].path.resolve():
                locks.append(Lock.take(sidecar, str(database),
                                       "stop it or use another --db"))
        _restrict_contents(var_dir)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()
