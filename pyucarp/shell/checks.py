"""Running the tracked checks (``--track-script``) on their own schedule, never blocking.

Each check is a shell command, run as ``/bin/sh -c COMMAND`` every ``interval`` seconds
(from one start to the next) in its own session, stdin from /dev/null, stdout and stderr
into a pipe whose last line is kept for ``pyucarp status``. A run still going at
``timeout`` seconds gets SIGKILL (its whole process group) and counts as failed; a check
is never started again while its previous run is still going. The checks of one instance
run independently of each other and of its up/down scripts: a hung upscript never delays
a health verdict, and a hung check never delays an upscript.

The loop calls :meth:`CheckRunner.handle` at :meth:`CheckRunner.next_deadline` and on
SIGCHLD; the results go to the core's :class:`~pyucarp.core.health.HealthJudge`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence

from pyucarp.records import NamedTuple  # lean: no dataclasses/typing, ~3 MiB
from pyucarp.shell.scripts import child_env

SHELL = "/bin/sh"
OUTPUT_TAIL = 4096  # bytes of a check's output kept while it runs
LINE_MAX = 200  # characters of the last line kept for status


class CheckResult(NamedTuple):
    """How one run of a check ended."""

    check: int  # which check, by its position on the command line
    command: str
    ok: bool
    returncode: int | None  # None: killed (timeout) or not started
    duration: float
    timed_out: bool
    output: str  # the last non-empty line of stdout/stderr, trimmed
    error: str | None = None  # why it could not start


class _Run:
    __slots__ = ("pid", "reader", "started", "tail")

    def __init__(self, pid: int, reader: int, started: float) -> None:
        self.pid = pid
        self.reader = reader
        self.started = started
        self.tail = b""


class CheckRunner:
    """The tracked checks of one instance."""

    def __init__(self, commands: Sequence[str], *, interval: float, timeout: float,
                 env: Mapping[str, str] | None = None) -> None:
        """Run ``commands`` every ``interval`` s, each killed ``timeout`` s after it started.

        ``env``: variables added to the daemon's environment for the checks, as for the
        scripts (:func:`~pyucarp.shell.scripts.child_env`).
        """
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        self.commands = tuple(commands)
        self.interval = interval
        self.timeout = timeout
        self._env = child_env(env)
        self._next: list[float | None] = [None] * len(self.commands)  # None: start at once
        self._runs: list[_Run | None] = [None] * len(self.commands)
        self._killed: list[int] = []  # timed-out runs not reaped yet
        self._stopped = False

    def running(self) -> bool:
        """True while any check runs."""
        return any(run is not None for run in self._runs)

    def next_deadline(self) -> float | None:
        """When :meth:`handle` must run: a check due to start, or one due to be killed."""
        times: list[float] = []
        for i, run in enumerate(self._runs):
            if run is not None:
                times.append(run.started + self.timeout)
            elif not self._stopped:
                due = self._next[i]
                times.append(0.0 if due is None else due)
        return min(times) if times else None

    def handle(self, now: float) -> list[CheckResult]:
        """Collect finished runs, kill overdue ones, start the due ones; what finished."""
        results: list[CheckResult] = []
        for i, run in enumerate(self._runs):
            if run is None:
                continue
            self._read(run)
            code = self._exit_code(run)
            if code is not None:
                results.append(self._done(i, run, now, code, timed_out=False))
            elif now >= run.started + self.timeout:
                _kill_group(run.pid)
                self._killed.append(run.pid)  # reaped when it is gone (never waited for)
                results.append(self._done(i, run, now, None, timed_out=True))
        self._killed = [pid for pid in self._killed if not _reaped(pid)]
        if not self._stopped:
            for i, due in enumerate(self._next):
                if self._runs[i] is None and (due is None or now >= due):
                    result = self._start(i, now)
                    if result is not None:
                        results.append(result)
        return results

    def stop(self) -> None:
        """No more runs; the running ones are killed (at exit, or when the instance leaves)."""
        self._stopped = True
        for i, run in enumerate(self._runs):
            if run is not None:
                _kill_group(run.pid)
                _reaped(run.pid)
                os.close(run.reader)
                self._runs[i] = None

    # ------------------------------------------------------------------ internals

    def _start(self, i: int, now: float) -> CheckResult | None:
        # Fixed rate from the planned start, never a burst to catch up after a pause.
        planned = self._next[i]
        self._next[i] = now + self.interval if planned is None or now - planned >= \
            self.interval else planned + self.interval
        reader, writer = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            pid = os.posix_spawn(
                SHELL, [SHELL, "-c", self.commands[i]],
                self._env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, writer, 1),
                    (os.POSIX_SPAWN_DUP2, writer, 2),
                ],
                setsid=True,  # its own process group: a timeout kills what it started too
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as exc:
            os.close(reader)
            return CheckResult(i, self.commands[i], False, None, 0.0, False, "",
                               os.strerror(exc.errno or 0))
        finally:
            os.close(writer)
        self._runs[i] = _Run(pid, reader, now)
        return None

    def _read(self, run: _Run) -> None:
        try:
            while True:
                chunk = os.read(run.reader, 65536)
                if not chunk:
                    return
                run.tail = (run.tail + chunk)[-OUTPUT_TAIL:]
        except BlockingIOError:
            return

    @staticmethod
    def _exit_code(run: _Run) -> int | None:
        try:
            pid, status = os.waitpid(run.pid, os.WNOHANG)
        except ChildProcessError:
            return 0  # reaped elsewhere: no status to be had
        return os.waitstatus_to_exitcode(status) if pid else None

    def _done(self, i: int, run: _Run, now: float, code: int | None, *,
              timed_out: bool) -> CheckResult:
        self._read(run)
        os.close(run.reader)
        self._runs[i] = None
        lines = [ln for ln in run.tail.decode("utf-8", "replace").splitlines() if ln.strip()]
        output = lines[-1].strip()[:LINE_MAX] if lines else ""
        return CheckResult(i, self.commands[i], code == 0 and not timed_out, code,
                           max(0.0, now - run.started), timed_out, output)


def _reaped(pid: int) -> bool:
    """Reap ``pid`` if it has exited; True once it is gone."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done != 0


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
