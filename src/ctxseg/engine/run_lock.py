"""One training process per run folder: the lock file ``RUN_DIR/.lock``.

Two ``ctxseg train`` processes writing one run folder would leave one run's config beside the
other's checkpoints and metrics. The first process therefore takes an exclusive ``flock`` on
``RUN_DIR/.lock`` and writes its pid, host and start time into it; a second process fails to
take the lock and is refused with a message naming the holder.

The kernel drops an ``flock`` when its holder exits, however it exits (``kill -9`` included), so
a lock left by a killed process is recognised as stale - the file is there, nobody holds it -
and taken over (the takeover is logged with the dead holder's pid). Where the file system has
no ``flock`` (some network file systems), the pid in the file decides instead: a holder on this
host that no longer runs is stale; a holder on another host is trusted, and the message says
to delete the file if that process is gone.

Within one process a newer lock on the same folder takes over from an older one (a notebook
that built a trainer and never ran it must not lock itself out); the lock guards against other
processes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from ctxseg.errors import CLIError

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"

# flock is missing on some network file systems (Lustre without -o flock, old NFS set-ups).
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}

# Locks this process holds, by resolved folder: a newer RunLock takes an older one's place.
_HELD: dict[str, RunLock] = {}


class RunLockedError(CLIError):
    """The run folder is locked by another live process (the message names it)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (the lock file does not say which)"
    since = holder.get("since")
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (since {started})"


class RunLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    Args:
        run_dir: the run folder (created by :meth:`acquire` if missing).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def read_holder(self) -> dict[str, Any]:
        """The holder recorded in the lock file (``pid``, ``host``, ``since``); {} if unreadable."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLockedError` naming the live holder.

        Returns:
            ``self``.

        Raises:
            RunLockedError: another live process holds the folder.
            OSError: the folder or the lock file cannot be created (names the path).
        """
        if self._fd is not None:
            return self
        key = str(self.run_dir.resolve())
        previous = _HELD.pop(key, None)
        if previous is not None:  # an older lock of this very process: take its place
            previous.release()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                stale = self._lock(fd)
                # The holder we waited on may have deleted the file on release: the lock must
                # be on the file that is at the path now, else try again.
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    os.close(fd)
                    continue
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            break
        if stale:
            log.warning(
                "%s: taking over a stale lock of %s, which no longer runs",
                self.run_dir,
                _describe(stale),
            )
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        _HELD[key] = self
        return self

    def _lock(self, fd: int) -> dict[str, Any]:
        """Lock ``fd``; return the stale holder taken over ({} if none) or raise if held."""
        import fcntl

        holder = self.read_holder()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(self._refusal(holder)) from None
        except OSError as err:
            if err.errno not in _NO_FLOCK:
                raise
            return self._lock_by_pid(holder)
        return holder if holder.get("pid") != os.getpid() else {}

    def _lock_by_pid(self, holder: dict[str, Any]) -> dict[str, Any]:
        """The fallback without flock (best effort): the recorded holder decides."""
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return {}
        if holder.get("host") != socket.gethostname():
            raise RunLockedError(
                self._refusal(holder)
                + f"; if that process is gone, delete {self.path} and start again"
            )
        if _pid_alive(pid):
            raise RunLockedError(self._refusal(holder))
        return holder

    def _refusal(self, holder: dict[str, Any]) -> str:
        return (
            f"run folder {self.run_dir} is in use by {_describe(holder)}: one training process "
            "per run folder; wait for it to finish, stop it, or choose another --out"
        )

    def release(self) -> None:
        """Give the lock up and delete the lock file (nothing if not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        key = str(self.run_dir.resolve())
        if _HELD.get(key) is self:
            del _HELD[key]
        # Delete while still locked, so that no other process locks a file about to vanish.
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
