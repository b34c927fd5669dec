"""The run-directory lock: one ``curate run`` at a time per run directory.

``RUN_DIR/.lock`` is a small JSON file, ``{"pid", "host", "started", "curate_version"}``, naming its owner. The
lock itself is an exclusive ``flock`` on that file, held by the driver for the whole run:

- a second run on the same directory cannot take the ``flock`` and is refused with :class:`LockError`, whose
  message names the owner from the file (pid, host, start time);
- a run that died (kill -9, a lost machine) holds no ``flock`` any more, since the kernel drops it with the
  process: the next run takes the lock over and says whose stale lock it replaced. On the same host it also
  says whether that pid is gone; a lock file whose recorded pid is alive but not locked means pid reuse or a
  lock written by hand, and it is taken over too;
- on release the file is deleted while still locked. A process that opened the old file just before and then
  got the ``flock`` on it notices that the path now names another file (or none) and starts over, so two
  runs can never both believe they hold the lock.

Why: a run deletes stale temporary files at start-up and writes every output by rename; two runs on one
directory would delete each other's in-flight temporary files and interleave their outputs. Everything that
deletes or writes in the run directory (``--force`` cleaning, stale-temp cleanup, the phases) runs under the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from curate import __version__
from curate.errors import CurateError

LOCK_NAME = ".lock"


class LockError(CurateError):
    """Another ``curate run`` holds the run directory."""


def _owner_text(info: dict) -> str:
    if not info:
        return "an unknown process (its lock file is empty)"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Exclusive lock on ``run_dir`` (see the module docstring); use as a context manager."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        #: Set when the lock was taken over from a run that died: a sentence saying whose it was.
        self.took_over: str | None = None

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                info = {}
                for _ in range(20):  # the owner may be between creating and writing its file
                    if info := self._read():
                        break
                    time.sleep(0.05)
                msg = (f"{self.run_dir} is in use by another curate run ({_owner_text(info)}); wait for it to "
                       f"finish, or stop it, then rerun to resume (if that process is gone for good, delete "
                       f"{self.path})")
                raise LockError(msg) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # the file was released (deleted) between our open and our flock: try again
                os.close(fd)
                continue
            self._fd = fd
            break
        else:  # pragma: no cover - 50 consecutive races with other runs
            msg = f"{self.run_dir}: could not take the run lock {self.path} (other runs keep taking it)"
            raise LockError(msg)
        prev = self._read()
        if prev:
            dead = ""
            if prev.get("host") == socket.gethostname() and isinstance(prev.get("pid"), int):
                dead = ", which no longer runs" if not _pid_alive(prev["pid"]) else ", which no longer holds it"
            self.took_over = f"took over the stale run lock of {_owner_text(prev)}{dead}"
        info = {"pid": os.getpid(), "host": socket.gethostname(), "curate_version": __version__,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(info).encode(), 0)
        os.fsync(self._fd)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # gone already, or a folder made read-only under us
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_NAME", "LockError", "RunLock"]
