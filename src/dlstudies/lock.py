"""One writer per output folder: an advisory lock (`fcntl.flock`) on a file in OUT.

Two runs on one `--out` would both train every unit and overwrite each other's results.json and
report.html. The run takes the lock before its first unit trains and holds it until report.html
is written; a second run waits for it (one line says so) or, with `--no-wait`, stops at once
naming the other process. Only the process that writes takes the lock: pool and dask workers
return their units to it and never write to OUT themselves.

The kernel releases a flock when its holder dies, however it dies (kill -9 included), so the lock
of a dead run is taken over with no clean-up; the pid in the file is only there to name the holder.
Advisory locks are unreliable on some network filesystems (older NFS, some FUSE and SMB mounts may
grant both runs the lock): there, give each run its own --out.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dlstudies.errors import UsageError

LOCK_NAME = ".dlstudies.lock"


@dataclass(frozen=True)
class Held:
    """The lock this process holds; `check()` fails if the folder vanished under the run."""

    path: Path
    inode: int

    def check(self) -> None:
        try:
            same = os.stat(self.path).st_ino == self.inode
        except FileNotFoundError:
            same = False
        if not same:
            raise FileNotFoundError(errno.ENOENT, "the output folder was removed while the run wrote it", str(self.path))


def _say(message: str) -> None:
    print(f"dlstudies: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def output_lock(out: Path, wait: bool = True, say: Callable[[str], None] = _say) -> Iterator[Held]:
    """Hold the lock of `out` for the body; wait for another holder, or UsageError if `wait` is False."""
    fd = _open(Path(out))
    try:
        _acquire(fd, Path(out), wait, say)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield Held(Path(out) / LOCK_NAME, os.fstat(fd).st_ino)
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a waiting run)


def _open(out: Path) -> int:
    try:
        with contextlib.suppress(FileExistsError):  # a file named OUT: the open says 'Not a directory'
            out.mkdir(parents=True, exist_ok=True)
        return os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise UsageError(f"--out {out}: cannot write to '{out}': {err.strerror or err}") from None


def _acquire(fd: int, out: Path, wait: bool, say: Callable[[str], None]) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        holder = holder_pid(fd)
    if not wait:
        raise UsageError(f"--out {out}: another dlstudies run (pid {holder}) is writing this folder; "
                         "wait for it to end (run without --no-wait), or use another --out")
    say(f"waiting for the other dlstudies run (pid {holder}) that writes {out} to end")
    fcntl.flock(fd, fcntl.LOCK_EX)


def holder_pid(fd: int) -> str:
    """The pid the holder wrote, as text ('unknown' in the instant before it has written it)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"
