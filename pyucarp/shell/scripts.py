"""Running the up and down scripts without ever blocking the daemon.

The interface is ucarp's (docs/compat.md §4): the script is executed directly, without a
shell, as ``script interface vip [xparam]``, with the daemon's environment, stdout and
stderr; ucarp logs ``[WARNING] Spawning [script interface vip xparam]`` for each run and
``[ERROR] Unable to exec ...: reason`` when the exec fails.

What pyucarp does better: ucarp waits for each script inside its only loop, so a slow
script stops its adverts.  Here a script is a child process watched through a pidfd
that the daemon's selector polls; scripts still run one at a time and in the order the
transitions happened (never coalesced), each has a timeout after which its whole
process group gets SIGTERM and then SIGKILL, and non-zero exits and exec failures are
logged.

Contract with the event loop: after every :meth:`ScriptRunner.submit` or
:meth:`ScriptRunner.handle`, re-read :meth:`~ScriptRunner.fileno` (it is a new
descriptor for each script, None when idle; the old one is already closed) and
:meth:`~ScriptRunner.next_deadline`; call :meth:`~ScriptRunner.handle` when the
descriptor is readable or the deadline has passed.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import time
from collections.abc import Mapping, Sequence

from pyucarp.records import NamedTuple  # lean: no dataclasses/typing, ~3 MiB
from pyucarp.shell.logs import InstanceLog, UcarpLog

# Without pidfds (Linux < 5.3) the loop polls a running child this often.
_POLL_INTERVAL = 0.1
# After SIGKILL at a shutdown deadline, how long drain() still waits to reap.
_REAP_AFTER_KILL = 0.2
# Python ignores these two; a script gets them back at their defaults (as subprocess does).
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class ScriptResult(NamedTuple):
    """How one script run ended.

    ``returncode`` is the exit status, or None when there is none: the script could not
    be started (``error`` says why) or a signal ended it (``signal`` says which).
    ``timed_out`` is true when pyucarp killed it for overrunning.
    """

    kind: str
    argv: tuple[str, ...]
    returncode: int | None
    signal: int | None
    duration: float
    timed_out: bool
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the script ran and exited with status 0."""
        return self.returncode == 0

    @property
    def failed(self) -> bool:
        """A timeout, a failed start, a signal or a non-zero exit."""
        return self.timed_out or self.error is not None or self.returncode != 0


class _Job(NamedTuple):
    kind: str
    argv: tuple[str, ...]


class _Running:
    """The one child being watched."""

    def __init__(self, job: _Job, pid: int, pidfd: int | None,
                 started: float, deadline: float) -> None:
        self.job = job
        self.pid = pid
        self.pidfd = pidfd
        self.started = started
        self.deadline = deadline          # SIGTERM to the group when reached
        self.kill_at: float | None = None  # SIGKILL to the group when reached
        self.timed_out = False
        self.killed = False


def child_env(extra: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment a script or check runs with: the daemon's, plus ``extra`` (which wins).

    Without extras it is ``os.environ`` itself, so a child gets the daemon's environment as
    it is when the child starts; with extras, a copy taken now.
    """
    return {**os.environ, **extra} if extra else os.environ


def describe(argv: Sequence[str]) -> str:
    """The argv the way ucarp prints it: space-separated (``"%s %s %s%s%s"``)."""
    return " ".join(argv)


class ScriptRunner:
    """A queue of script runs, one child at a time, driven by the daemon's event loop."""

    def __init__(self, log: UcarpLog | InstanceLog, *, timeout: float = 60.0,
                 kill_grace: float = 2.0, env: Mapping[str, str] | None = None) -> None:
        """Run scripts logging to ``log``; kill one ``timeout`` s after it started.

        The whole process group gets SIGTERM at the timeout, SIGKILL ``kill_grace`` s later.
        ``env``: variables added to the daemon's environment for the scripts (``pyucarp
        run`` gives each instance what the init script would have exported for it).
        """
        if timeout <= 0 or kill_grace < 0:
            raise ValueError("timeout must be > 0 and kill_grace >= 0")
        self._log = log
        self.timeout = timeout
        self.kill_grace = kill_grace
        self._queue: collections.deque[_Job] = collections.deque()
        self._current: _Running | None = None
        # Results not yet handed over (exec failures found in submit); due at once.
        self._done: list[ScriptResult] = []
        self._done_since: float | None = None
        # pidfds of reaped children, closed once the next child has its own, so that two
        # scripts back to back never share a descriptor number.
        self._stale_fds: list[int] = []
        self._last_now = 0.0
        self._env = child_env(env)

    # -- what the loop asks --------------------------------------------------------

    def running(self) -> bool:
        """True while a script is running."""
        return self._current is not None

    def pending(self) -> int:
        """How many scripts are waiting for the running one to finish."""
        return len(self._queue)

    def fileno(self) -> int | None:
        """A pidfd of the running script (readable once it exited), or None."""
        return self._current.pidfd if self._current is not None else None

    def next_deadline(self) -> float | None:
        """When :meth:`handle` must run even if the pidfd stays quiet, or None."""
        times: list[float] = []
        if self._done_since is not None:
            times.append(self._done_since)
        cur = self._current
        if cur is not None:
            if cur.kill_at is not None:
                times.append(cur.kill_at)
            elif not cur.timed_out:
                times.append(cur.deadline)
            if cur.pidfd is None:
                times.append(self._last_now + _POLL_INTERVAL)
        return min(times) if times else None

    # -- what the loop does --------------------------------------------------------

    def submit(self, kind: str, argv: Sequence[str | None], now: float) -> None:
        """Queue ``argv`` (``[script, interface, vip, xparam?]``) to run after the others.

        Nothing happens when no script is configured (``argv[0]`` None or empty).  When no
        script is running it starts at once.  Never raises for a script that cannot run:
        that is logged and reported by the next :meth:`handle`.
        """
        if not argv or not argv[0]:
            return
        args: list[str] = []
        for arg in argv:
            if arg is None:
                break  # ucarp's execl() list ends at the first NULL (no xparam)
            args.append(arg)
        job = _Job(kind, tuple(args))
        self._queue.append(job)
        if self._current is None:
            self._last_now = now
            self._start_next(now)
            self._close_stale()

    def handle(self, now: float) -> list[ScriptResult]:
        """Reap, enforce the timeout, start the next script; return what has finished."""
        self._last_now = now
        results = self._done
        self._done = []
        self._done_since = None
        cur = self._current
        if cur is not None:
            if self._has_exited(cur):
                results.append(self._reap(cur, now))
                self._current = None
            elif cur.kill_at is not None and now >= cur.kill_at:
                self._log.error(
                    f"Script [{describe(cur.job.argv)}] still running {self.kill_grace:g} s"
                    " after SIGTERM, sending SIGKILL"
                )
                self._signal_group(cur, signal.SIGKILL)
                cur.kill_at = None
                cur.killed = True
            elif not cur.timed_out and now >= cur.deadline:
                self._log.error(
                    f"Script [{describe(cur.job.argv)}] timed out after {self.timeout:g} s,"
                    " sending SIGTERM"
                )
                cur.timed_out = True
                self._signal_group(cur, signal.SIGTERM)
                cur.kill_at = now + self.kill_grace
        if self._current is None:
            self._start_next(now)
        results.extend(self._done)
        self._done = []
        self._done_since = None
        self._close_stale()
        return results

    def drain(self, deadline: float) -> list[ScriptResult]:
        """Block until every queued script has run, but not beyond ``deadline``.

        For the exit path only (``-z``).  ``deadline`` is on ``time.monotonic()``.  A
        script still running at the deadline gets SIGKILL (its whole group); scripts not
        started by then are reported with an error and not run.
        """
        results: list[ScriptResult] = []
        # Each pass either finishes something or sleeps until the next event; the
        # deadline bounds the whole.
        while True:
            now = time.monotonic()
            results.extend(self.handle(now))
            if self._current is None and not self._queue and not self._done:
                return results
            if now >= deadline:
                results.extend(self._abandon(now))
                return results
            wake = deadline
            due = self.next_deadline()
            if due is not None:
                wake = min(wake, due)
            wait = max(0.0, wake - now)
            fd = self.fileno()
            if fd is not None:
                select.select([fd], [], [], wait)
            else:
                select.select([], [], [], min(wait, _POLL_INTERVAL))

    # -- internals ---------------------------------------------------------------------

    def _start_next(self, now: float) -> None:
        """Start queued scripts until one is running or the queue is empty."""
        while self._current is None and self._queue:
            job = self._queue.popleft()
            text = describe(job.argv)
            # ucarp logs this line for every run, before the outcome is known.
            self._log.warning(f"Spawning [{text}]")
            # execl(), not execvp(): a name without a slash is a file in the current
            # directory, never looked up in PATH.
            path = job.argv[0] if "/" in job.argv[0] else os.path.join(".", job.argv[0])
            # posix_spawn, not subprocess (~1.2 MiB per daemon): glibc (>= 2.24) and musl
            # report a failed exec here, with its errno, and reap that child themselves.
            try:
                pid = os.posix_spawn(
                    path,
                    job.argv,
                    self._env,
                    file_actions=_child_files(),
                    # Its own session and process group, so a timeout reaches its
                    # children too.
                    setsid=True,
                    setsigdef=_DEFAULT_SIGNALS,
                )
            except (OSError, ValueError, TypeError) as exc:
                reason = _reason(exc)
                # ucarp's child logs "Unable to exec %s %s %s%s%s: %s" (strerror).
                self._log.error(f"Unable to exec {text}: {reason}")
                self._finished(ScriptResult(job.kind, job.argv, None, None, 0.0, False, reason),
                               now)
                continue
            try:
                pidfd: int | None = os.pidfd_open(pid)
            except (OSError, AttributeError):
                pidfd = None  # the loop falls back to polling via next_deadline()
            self._current = _Running(job, pid, pidfd, now, now + self.timeout)

    def _finished(self, result: ScriptResult, now: float) -> None:
        self._done.append(result)
        if self._done_since is None:
            self._done_since = now

    def _has_exited(self, cur: _Running) -> bool:
        # WNOWAIT: look without reaping, so the process group id stays reserved by the
        # zombie leader while stragglers are killed.
        try:
            info = os.waitid(os.P_PID, cur.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # already reaped elsewhere (SIGCHLD ignored)
        return info is not None and info.si_pid == cur.pid

    def _reap(self, cur: _Running, now: float) -> ScriptResult:
        if cur.timed_out:
            # The leader is gone; children that ignored SIGTERM must not outlive it.
            self._signal_group(cur, signal.SIGKILL)
        try:
            _pid, status = os.waitpid(cur.pid, 0)  # at once: it has exited
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = 0  # reaped elsewhere (SIGCHLD ignored): no status to be had
        if cur.pidfd is not None:
            self._stale_fds.append(cur.pidfd)
            cur.pidfd = None
        return self._outcome(cur, code, now)

    def _outcome(self, cur: _Running, code: int | None, now: float) -> ScriptResult:
        text = describe(cur.job.argv)
        duration = max(0.0, now - cur.started)
        returncode: int | None = None
        signum: int | None = None
        if code is None:
            signum = signal.SIGKILL
        elif code < 0:
            signum = -code
            if not cur.timed_out:
                self._log.warning(f"Script [{text}] killed by signal {signum}")
        else:
            returncode = code
            if code != 0:
                self._log.warning(f"Script [{text}] exited with status {code}")
            else:
                self._log.debug(f"Script [{text}] done in {duration:.3f} s")
        return ScriptResult(cur.job.kind, cur.job.argv, returncode, signum, duration,
                            cur.timed_out)

    def _signal_group(self, cur: _Running, signum: int) -> None:
        try:
            os.killpg(cur.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            # A setuid script may refuse our signal; try at least the leader.
            try:
                os.kill(cur.pid, signum)
            except OSError:
                pass

    def _abandon(self, now: float) -> list[ScriptResult]:
        """At the drain deadline: kill what runs, give up what waits."""
        results: list[ScriptResult] = []
        cur = self._current
        if cur is not None:
            self._log.error(
                f"Script [{describe(cur.job.argv)}] still running at exit, sending SIGKILL"
            )
            cur.timed_out = True
            self._signal_group(cur, signal.SIGKILL)
            if cur.pidfd is not None:
                select.select([cur.pidfd], [], [], _REAP_AFTER_KILL)
            if self._has_exited(cur):
                results.append(self._reap(cur, now))
            else:
                # Stuck in the kernel: report it; the daemon is exiting, init reaps it.
                if cur.pidfd is not None:
                    self._stale_fds.append(cur.pidfd)
                results.append(self._outcome(cur, None, now))
            self._current = None
        while self._queue:
            job = self._queue.popleft()
            reason = "not run: no time left before exit"
            self._log.error(f"Script [{describe(job.argv)}] {reason}")
            results.append(ScriptResult(job.kind, job.argv, None, None, 0.0, False, reason))
        self._close_stale()
        return results

    def _close_stale(self) -> None:
        for fd in self._stale_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._stale_fds = []


def _child_files() -> list[tuple[int | str, ...]]:
    """The script's descriptors: stdin from /dev/null, stdout and stderr the daemon's.

    Our own descriptors are close-on-exec; any other one above 2 that whoever started the
    daemon left open is closed in the child (as subprocess's close_fds did).
    """
    actions: list[tuple[int | str, ...]] = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        names = []
    for name in names:
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                actions.append((os.POSIX_SPAWN_CLOSE, fd))
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return actions


def _reason(exc: BaseException) -> str:
    """The OS's words for a failed spawn (strerror, as ucarp prints them)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
