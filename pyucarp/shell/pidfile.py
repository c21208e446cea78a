"""``--pidfile``: created atomically, removed on exit, a stale one detected and replaced."""

from __future__ import annotations

import os

from pyucarp.shell.atomic import atomic_write
from pyucarp.errors import ConfigError


def _alive(pid: int) -> bool:
    """True if ``pid`` is a live ucarp or pyucarp process (not a zombie, not a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    if state in (b"Z", b"X"):
        return False
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
        if pid is not None and pid != os.getpid() and _alive(pid):
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
