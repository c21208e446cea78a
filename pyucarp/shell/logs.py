"""Logging the way ucarp logs: syslog plus, in the foreground, a timestamped console.

What is copied from ucarp 1.5.2 (docs/compat.md §6, checked against /usr/sbin/ucarp):

* every line carries a level prefix such as ``[WARNING] ``, in syslog as well as on the
  console;
* syslog: ``openlog("ucarp", LOG_PID, facility)``, the facility named by ``-f`` (case
  does not matter), ``-f none`` switches syslog off, an unknown name is reported as
  ``[ERROR] Unknown syslog facility: [name]`` and the default, daemon, stays in use;
* console, while not daemonized: ``YYYY-MM-DDTHH:MM:SS.uuuuuu: [LEVEL] message`` in
  local time, WARNING and ERROR on stderr, everything else on stdout;
* DEBUG lines only with ``-D``.

Where pyucarp does better: every console line is flushed at once (ucarp leaves stdout
block-buffered when it is not a terminal, so its INFO lines are lost when it is killed),
and repeated warnings can be rate-limited (:meth:`UcarpLog.limited`) so a flood of bad
packets cannot flood the log.
"""

from __future__ import annotations

import enum
import sys
import syslog
import time

from pyucarp.config.options import NO_SYSLOG, SYSLOG_FACILITIES
from pyucarp.config.settings import DEFAULT_FACILITY
from pyucarp.records import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TextIO


class Level(enum.Enum):
    """A log level: its syslog priority and the prefix ucarp writes before the message."""

    DEBUG = (syslog.LOG_DEBUG, "[DEBUG] ")
    INFO = (syslog.LOG_INFO, "[INFO] ")
    NOTICE = (syslog.LOG_NOTICE, "[NOTICE] ")
    WARNING = (syslog.LOG_WARNING, "[WARNING] ")
    ERROR = (syslog.LOG_ERR, "[ERROR] ")

    def __init__(self, priority: int, prefix: str) -> None:
        self.priority = priority
        self.prefix = prefix

    @property
    def on_stderr(self) -> bool:
        """True for the levels ucarp prints on stderr (WARNING and ERROR)."""
        return self in (Level.WARNING, Level.ERROR)


def facility_code(name: str) -> int | None:
    """The syslog facility for a ``-f`` name (any case), or None if ucarp does not know it."""
    return SYSLOG_FACILITIES.get(name.lower())


def console_line(level: Level, message: str, when_ns: int) -> str:
    """One console line in ucarp's format, newline included; ``when_ns`` is time.time_ns().

    ucarp prints gettimeofday(): "%Y-%m-%dT%H:%M:%S" of localtime(), ".%06ld" microseconds
    (truncated), then ": ". The time module does it without datetime (~0.5 MiB per daemon).
    """
    seconds, nanoseconds = divmod(when_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds))
    return f"{stamp}.{nanoseconds // 1000:06d}: {level.prefix}{message}\n"


def _syslog_safe(text: str) -> str:
    # syslog(3) stops at a NUL and Python refuses one; text that came from the command
    # line may carry undecodable bytes as surrogates, which cannot be encoded strictly.
    text = text.replace("\0", "\\0")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Window:
    """Rate-limit bookkeeping for one key."""

    __slots__ = ("start", "level", "logged", "suppressed")

    def __init__(self, start: float, level: Level) -> None:
        self.start = start
        self.level = level
        self.logged = 0
        self.suppressed = 0


class _Levels:
    """The level shorthands, for every logger that has ``log(level, message)``."""

    __slots__ = ()

    def log(self, level: Level, message: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def debug(self, message: str) -> None:
        """Log at DEBUG (shown only with ``-D``)."""
        self.log(Level.DEBUG, message)

    def info(self, message: str) -> None:
        """Log at INFO."""
        self.log(Level.INFO, message)

    def notice(self, message: str) -> None:
        """Log at NOTICE."""
        self.log(Level.NOTICE, message)

    def warning(self, message: str) -> None:
        """Log at WARNING."""
        self.log(Level.WARNING, message)

    def error(self, message: str) -> None:
        """Log at ERROR."""
        self.log(Level.ERROR, message)


class UcarpLog(_Levels):
    """The daemon's logger: syslog and console, ucarp's formats, never raises."""

    def __init__(
        self,
        *,
        facility: str = DEFAULT_FACILITY,
        debug: bool = False,
        console: bool = True,
        ident: str = "ucarp",
        syslog_enabled: bool = True,
        burst: int = 5,
        window: float = 10.0,
    ) -> None:
        """Open syslog (unless disabled or ``facility`` is ``none``) and start logging.

        ``burst`` and ``window`` configure :meth:`limited`: at most ``burst`` lines per key
        in each ``window`` seconds.
        """
        if burst < 1 or window <= 0:
            raise ValueError("burst must be >= 1 and window > 0")
        self.debug_enabled = debug
        self.burst = burst
        self.window = window
        self._console = console
        self._windows: dict[str, _Window] = {}
        self._facility: int | None = None
        self._ident = ident

        unknown = False
        if syslog_enabled and facility.lower() != NO_SYSLOG:
            code = facility_code(facility)
            if code is None:
                unknown = True
                code = SYSLOG_FACILITIES[DEFAULT_FACILITY]
            self._facility = code
            try:
                syslog.openlog(ident, syslog.LOG_PID, code)
            except (OSError, ValueError):
                self._facility = None
        if unknown:
            # ucarp's own words (its -f handler), then it carries on with daemon.
            self.error(f"Unknown syslog facility: [{facility}]")

    @property
    def syslog_facility(self) -> int | None:
        """The facility in use, or None when nothing goes to syslog."""
        return self._facility

    @property
    def console(self) -> bool:
        """Whether lines are also written to stdout/stderr."""
        return self._console

    def set_console(self, on: bool) -> None:
        """Turn console output on or off (off once daemonized, as ucarp's ``-B``)."""
        self._console = on

    def close(self) -> None:
        """Close the syslog connection (before daemonizing closes every descriptor)."""
        if self._facility is not None:
            syslog.closelog()

    def reopen(self) -> None:
        """Open syslog again with our ident, pid and facility after :meth:`close`.

        Python's syslog module would otherwise reopen on its own with the program name,
        no pid and facility user.
        """
        if self._facility is not None:
            try:
                syslog.openlog(self._ident, syslog.LOG_PID, self._facility)
            except (OSError, ValueError):
                self._facility = None

    def wants(self, level: Level) -> bool:
        """False for DEBUG unless debugging is on: callers may skip building the text."""
        return level is not Level.DEBUG or self.debug_enabled

    def log(self, level: Level, message: str) -> None:
        """Send one line to syslog and, in the foreground, the console."""
        if not self.wants(level):
            return
        if self._facility is not None:
            try:
                syslog.syslog(level.priority, _syslog_safe(level.prefix + message))
            except (OSError, ValueError):
                pass  # logging must never take the daemon down
        if self._console:
            self._write_console(level, message)

    def _write_console(self, level: Level, message: str) -> None:
        stream: TextIO | None = sys.stderr if level.on_stderr else sys.stdout
        if stream is None:
            return
        line = console_line(level, message, time.time_ns())
        try:
            try:
                stream.write(line)
            except UnicodeEncodeError:
                encoding = getattr(stream, "encoding", None) or "utf-8"
                stream.write(line.encode(encoding, "backslashreplace").decode(encoding))
            # One flush per line: stdout and stderr stay in time order and nothing is
            # lost when the process is killed (ucarp block-buffers stdout).
            stream.flush()
        except (OSError, ValueError):
            pass  # closed or broken console (e.g. after daemonizing)


    # -- rate limiting ---------------------------------------------------------------

    def limited(self, key: str, level: Level, message: str, now: float) -> None:
        """Log ``message`` unless ``key`` already logged ``burst`` lines in this window.

        A window opens with the first line of a key and lasts ``window`` seconds.  When a
        window that suppressed lines is over, one summary line reports how many (written
        by the next line of that key or by :meth:`flush`).  ``now`` is the caller's
        monotonic clock.
        """
        if not self.wants(level):
            return
        win = self._windows.get(key)
        if win is not None and now >= win.start + self.window:
            self._close_window(key, win)
            win = None
        if win is None:
            win = _Window(start=now, level=level)
            self._windows[key] = win
        win.level = level
        if win.logged < self.burst:
            win.logged += 1
            self.log(level, message)
        else:
            win.suppressed += 1

    def flush(self, now: float) -> None:
        """Close every window that is over, writing the summaries that are due."""
        for key, win in list(self._windows.items()):
            if now >= win.start + self.window:
                self._close_window(key, win)

    def next_deadline(self) -> float | None:
        """When :meth:`flush` next has a summary to write, or None."""
        due = [w.start + self.window for w in self._windows.values() if w.suppressed]
        return min(due) if due else None

    def suppressed(self, key: str) -> int:
        """How many lines of ``key`` the current window has held back so far."""
        win = self._windows.get(key)
        return win.suppressed if win is not None else 0

    def _close_window(self, key: str, win: _Window) -> None:
        del self._windows[key]
        if win.suppressed:
            self.log(
                win.level,
                f'{win.suppressed} more "{key}" messages suppressed'
                f" in the last {self.window:g} s",
            )


class InstanceLog(_Levels):
    """One instance's view of the daemon's log: its lines carry the instance's name.

    With a single instance (the ``ucarp`` command) the prefix is empty and every line is
    exactly ucarp's; in ``pyucarp run`` each line starts with ``[eth0-1] `` so that an
    admin can tell the instances apart. Rate-limiting keys are per instance as well.
    """

    __slots__ = ("base", "prefix")

    def __init__(self, base: UcarpLog, prefix: str = "") -> None:
        self.base = base
        self.prefix = prefix

    def wants(self, level: Level) -> bool:
        """False for DEBUG unless debugging is on."""
        return self.base.wants(level)

    def log(self, level: Level, message: str) -> None:
        """One line, with the instance's prefix."""
        self.base.log(level, self.prefix + message)


    def limited(self, key: str, level: Level, message: str, now: float) -> None:
        """Rate-limited, per instance (see :meth:`UcarpLog.limited`)."""
        self.base.limited(self.prefix + key, level, self.prefix + message, now)
