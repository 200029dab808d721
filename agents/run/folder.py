"""Run folders: their file names, the checks a folder must pass before a run writes into it, and the lock.

    RunFiles(root)          the paths of one run folder (`RUN_FILE_NAMES`, plus the lock file `.lock`)
    make_run_folder(root)   create the folder (and missing parents), or undo every folder it made and explain why not
    RunLock(root)           an exclusive `fcntl.flock` on `root/.lock`, held while a process writes the run

The lock is the operating system's: the kernel drops it when its process ends, however it ends (`kill -9`
included), so a `.lock` left behind by a dead process is reused, never "stale". The holder writes its PID into the
file so that a refused process can name it. Nothing here prints; every refusal is a `RunFolderError` (a
`ValueError`: the folder given is not one a run can use) whose message names the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

RUN_FILE_NAMES = ("config.json", "progress.csv", "evals.csv", "checkpoint.npz", "best.npz", "final.npz",
                  "summary.json", "learning_curve.png")
"""The files a run writes; a fresh run refuses a folder that holds any of them (`.lock` is not one)."""

LOCK_NAME = ".lock"


class RunFolderError(ValueError):
    """A run folder cannot be used: not creatable or writable, already holding a run, or locked by a process."""


class RunFiles:
    """The paths of one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.progress = self.root / "progress.csv"
        self.evals = self.root / "evals.csv"
        self.checkpoint = self.root / "checkpoint.npz"
        self.best = self.root / "best.npz"
        self.final = self.root / "final.npz"
        self.summary = self.root / "summary.json"
        self.curve = self.root / "learning_curve.png"
        self.lock = self.root / LOCK_NAME

    def existing(self) -> list[Path]:
        """The run files (`RUN_FILE_NAMES`) present in the folder, in that order."""
        return [self.root / name for name in RUN_FILE_NAMES if (self.root / name).exists()]


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def make_run_folder(root: Path) -> list[Path]:
    """Create `root` and its missing parents; returns the folders created (outermost first).

    Raises:
        RunFolderError: `root` is a file, lies under a file, is on a read-only or unwritable file system, or has a
            name too long; every folder this call created is removed again, so a refusal leaves nothing behind.
    """
    if root.exists() and not root.is_dir():
        raise RunFolderError(f"{root}: cannot be the run folder: it is a file, not a folder")
    missing = []
    for folder in (root, *root.parents):
        if folder.is_dir():
            break
        if folder.exists() or folder.is_symlink():  # a file (or a dangling link) where a folder should be
            raise RunFolderError(f"{root}: cannot create the run folder: {folder} is not a folder")
        missing.append(folder)
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
    except OSError as e:
        remove_folders(created)
        where = "" if e.filename in (None, str(root)) else f" ({e.filename})"
        raise RunFolderError(f"{root}: cannot create the run folder: {_reason(e)}{where}") from e
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove the (empty) folders `make_run_folder` created, innermost first; anything else stays."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


class RunLock:
    """An exclusive, non-blocking `flock` on `root/.lock`, released by `release()` or by the process ending.

    Args:
        root: an existing run folder.

    Raises:
        RunFolderError: another process holds the lock (the message names its PID), or the folder is not writable
            (the message names the reason). A refused lock writes nothing: an existing `.lock` keeps its bytes and
            times.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_NAME
        while True:
            self.created = not self.path.exists()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise RunFolderError(f"{root}: cannot write into the run folder: {_reason(e)}") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise RunFolderError(f"{root}: cannot lock {self.path}: {_reason(e)}") from e
                raise RunFolderError(f"{root}: in use by another process (PID {holder}, which holds {self.path}); "
                                     "wait for it to end or stop it, then try again") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # a refused process removed the .lock it had created in between: lock the one there now
        self._fd: int | None = fd
        self._before = os.pread(fd, 64, 0)  # a dead holder's PID, put back by `release(undo=True)`
        stat = os.fstat(fd)
        self._times = (stat.st_atime_ns, stat.st_mtime_ns)  # ... and its times, so a refusal leaves it untouched
        with contextlib.suppress(OSError):  # a full disk: the lock holds all the same, its PID just goes unnamed
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, undo: bool = False) -> None:
        """Drop the lock (idempotent). `undo` leaves `.lock` as it was: removed if this lock created it, else with
        its earlier bytes and times (for a process refused after locking, which must leave the folder as it found
        it)."""
        if self._fd is None:
            return
        if undo and self.created:
            self.path.unlink(missing_ok=True)
        elif undo:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, self._before, 0)
                os.utime(self._fd, ns=self._times)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
