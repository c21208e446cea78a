"""``--pidfile``: created atomically, removed on exit, a stale one detected and replaced."""

from __future__ import annotations

import os

from pyucarp.errors import ConfigError
from pyucarp.shell.atomic import atomic_write


def _exists(pid: int) -> bool:
    """The kernel's word: a process (maybe a zombie) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return True


def pid_alive(pid: int, proc: str = "/proc") -> bool:
    """Whether ``pid`` is a running process: it exists and is not a zombie.

    The kernel says whether the pid exists, procfs (at ``proc``) whether it is a zombie.
    When procfs cannot tell (not mounted, or hiding other users' processes), the pid's
    existence decides: a process that may be running is never taken for a dead one.
    """
    if pid <= 0 or not _exists(pid):
        return False  # pid 0 or below would address a process group, not one process
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return _exists(pid)  # no answer from procfs; gone by now if it just ended
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(b")", 1)[-1].split()[:1] not in ([b"Z"], [b"X"])


def daemon_alive(pid: int, proc: str = "/proc") -> bool:
    """Whether ``pid`` is a running ucarp or pyucarp process (not a zombie, not a reused pid).

    :func:`pid_alive`, and procfs must show a ucarp: after a crash the pid may have been
    reused by any program. When procfs cannot tell, the pid's existence decides, as there.
    The pid file and ``pyucarp status`` both judge pids with this function.
    """
    if not pid_alive(pid, proc):
        return False
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return _exists(pid)
    return b"ucarp" in cmdline


class PidFile:
    """The file holding the daemon's pid."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._written_pid: int | None = None

    def read(self) -> int | None:
        """The pid in the file, or None when absent or unreadable."""
        try:
            with open(self.path) as handle:
                return int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def check_free(self) -> bool:
        """Refuse to start beside a live daemon; True when a stale file was found."""
        if not os.path.exists(self.path):
            return False
        pid = self.read()
        if pid is not None and pid != os.getpid() and daemon_alive(pid):
            raise ConfigError(f"Already running with pid {pid} (pid file [{self.path}])")
        # Stale (its daemon died without cleaning up): remove it now, so that a start
        # failing later does not leave it behind either.
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        return True

    def check_writable(self) -> None:
        """Fail now (one clear line) if the pid file could not be written later."""
        directory = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(self.path):
            raise ConfigError(f"Unable to write pid file [{self.path}]: Is a directory")
        if not os.path.isdir(directory):
            raise ConfigError(f"Unable to write pid file [{self.path}]: No such directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"Unable to write pid file [{self.path}]: Permission denied")

    def write(self) -> None:
        """Write our pid atomically (a reader sees the old file or the whole new one)."""
        try:
            atomic_write(self.path, f"{os.getpid()}\n".encode(), make_dirs=False)
        except OSError as exc:
            raise ConfigError(f"Unable to write pid file [{self.path}]: {exc.strerror}") from None
        self._written_pid = os.getpid()

    def remove(self) -> None:
        """Remove the file if it is still ours (a newer daemon may have replaced it)."""
        if self._written_pid is None or self._written_pid != os.getpid():
            return
        if self.read() == self._written_pid:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
