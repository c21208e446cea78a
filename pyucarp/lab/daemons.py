"""Daemons on lab hosts: pyucarp (any command line) or the C ucarp, watched from outside.

A :class:`Daemon` is one process started inside a :class:`~pyucarp.lab.netlab.Host`'s
namespace from a free-form argv, with its own directory: its console output (stdout and
stderr together, in order) goes to ``console.log`` there, and up and down scripts made by
:func:`write_recording_scripts` append one line ``<kind> <wall-clock time> <args...>`` to
``calls.txt`` there before running the real ones. The daemon's console, script calls, JSON
state file, signals and ``/proc`` figures (CPU, RSS, PSS) are then read from outside.

Starting one:

* :func:`start_pyucarp` -- ``pyucarp ARGS`` exactly as given, e.g.
  ``start_pyucarp(host, workdir, ["run", "--config", str(confdir)], statedir=state)``;
* :func:`start_ucarp` -- ucarp's command line for pyucarp (``impl="py"``, with a state
  directory of its own unless the arguments name one) or the C ucarp (``impl="c"``);
* :func:`start_node` -- a cluster node from keyword options (:func:`ucarp_args`), its up
  and down scripts recording wrappers around the shipped ``vip-up.sh``/``vip-down.sh``.

Everything a daemon starts belongs to its lab, which kills it when the lab closes;
:meth:`Daemon.stop` and :meth:`Daemon.kill` end it earlier, by its own pid only.
pyucarp runs from the copy this module belongs to (:data:`SOURCE_ROOT` first on its
import path), installed or not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pyucarp.lab.netlab import Host, pid_alive, wait_until

__all__ = [
    "CONTROL_SIGNAL",
    "CUCARP",
    "DEFAULT_PASSWORD",
    "DEFAULT_VHID",
    "DEFAULT_VIP",
    "Daemon",
    "Impl",
    "LOG_LINE_RE",
    "SOURCE_ROOT",
    "ScriptCall",
    "VIP_DOWN",
    "VIP_UP",
    "cpu_ns",
    "cpu_seconds",
    "cucarp_command",
    "describe",
    "holders",
    "masters",
    "memory_kib",
    "pyucarp_command",
    "pyucarp_env",
    "run_pyucarp",
    "start_node",
    "start_pyucarp",
    "start_ucarp",
    "status_kib",
    "ucarp_args",
    "vip_scripts",
    "wait_converged",
    "wait_holder",
    "write_recording_scripts",
]

SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The directory holding this ``pyucarp`` package: the work tree, or site-packages."""
VIP_UP = SOURCE_ROOT / "etc" / "ucarp" / "vip-up.sh"
VIP_DOWN = SOURCE_ROOT / "etc" / "ucarp" / "vip-down.sh"
CUCARP = "/usr/sbin/ucarp"
CONTROL_SIGNAL = signal.SIGRTMIN + 1
"""pyucarp re-reads its maintenance flag (and rewrites its state file) on this signal."""

DEFAULT_VIP = "192.0.2.100"
DEFAULT_VHID = 7
DEFAULT_PASSWORD = "s3cret"

Impl = Literal["py", "c"]

LOG_LINE_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}: \[(DEBUG|INFO|NOTICE|WARNING|ERROR)\] .*$"
)
"""ucarp's console format: ``YYYY-MM-DDTHH:MM:SS.uuuuuu: [LEVEL] message``."""

_STATE_RE = re.compile(r"Switching to state: (INIT|BACKUP|MASTER|FAULT)")


# --------------------------------------------------------------------------- command lines


def pyucarp_command(python_flags: Sequence[str] = ()) -> list[str]:
    """The argv prefix that runs pyucarp (``python3 [FLAGS] -m pyucarp``)."""
    return [sys.executable, *python_flags, "-m", "pyucarp"]


def cucarp_command() -> list[str]:
    """The argv prefix that runs the C ucarp, its stdout line-buffered when possible.

    ucarp block-buffers stdout when it is not a terminal, so its INFO lines would only
    show up at exit; ``stdbuf`` execs ucarp in place, so the pid stays the daemon's.
    """
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", CUCARP] if stdbuf else [CUCARP]


def pyucarp_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a pyucarp process: this copy of pyucarp first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode: the same start-up every time
    if extra:
        env.update(extra)
    return env


def ucarp_args(
    host: Host,
    *,
    vhid: int = DEFAULT_VHID,
    vip: str = DEFAULT_VIP,
    password: str | None = DEFAULT_PASSWORD,
    advbase: int = 1,
    advskew: int = 0,
    deadratio: int | None = None,
    preempt: bool = False,
    neutral: bool = False,
    shutdown: bool = False,
    ignoreifstate: bool = False,
    nomcast: bool = False,
    mcast: str | None = None,
    debug: bool = False,
    upscript: Path | str | None = None,
    downscript: Path | str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """ucarp's command line (common to both implementations) for one node on ``host``."""
    args = ["-i", host.ifname, "-s", host.ip, "-v", str(vhid), "-a", vip,
            "-b", str(advbase), "-k", str(advskew), "-f", "none"]
    if password is not None:
        args += ["-p", password]
    if deadratio is not None:
        args += ["-r", str(deadratio)]
    for flag, on in (("-P", preempt), ("-n", neutral), ("-z", shutdown),
                     ("-S", ignoreifstate), ("-M", nomcast), ("-D", debug)):
        if on:
            args.append(flag)
    if mcast is not None:
        args.append(f"--mcast={mcast}")
    if upscript is not None:
        args += ["-u", str(upscript)]
    if downscript is not None:
        args += ["-d", str(downscript)]
    return args + list(extra)


def _statedir_in(args: Sequence[str]) -> Path | None:
    """The ``--statedir`` an argument list names (the last one wins), if any."""
    found = None
    for i, arg in enumerate(args):
        if arg.startswith("--statedir="):
            found = arg.split("=", 1)[1]
        elif arg == "--statedir" and i + 1 < len(args):
            found = args[i + 1]
    return Path(found) if found else None


# --------------------------------------------------------------------------- scripts


def vip_scripts(workdir: Path) -> tuple[Path, Path]:
    """The shipped ``vip-up.sh``/``vip-down.sh``, or equivalent ones written into ``workdir``.

    The shipped ones live in the work tree, not in an installed package.
    """
    if os.access(VIP_UP, os.X_OK) and os.access(VIP_DOWN, os.X_OK):
        return VIP_UP, VIP_DOWN
    up, down = workdir / "vip-up.sh", workdir / "vip-down.sh"
    up.write_text('#!/bin/sh\nexec ip address replace "$2/32" dev "${1%%:*}"\n')
    down.write_text('#!/bin/sh\nip address del "$2/32" dev "${1%%:*}" 2>/dev/null\nexit 0\n')
    up.chmod(0o755)
    down.chmod(0o755)
    return up, down


def write_recording_scripts(workdir: Path, record: Path, up: Path | None = None,
                            down: Path | None = None) -> tuple[Path, Path]:
    """Write ``up.sh`` and ``down.sh`` into ``workdir``: record the call, then run the real one.

    The real scripts are ``up`` and ``down``, by default the shipped ones (which move the
    VIP). Returns the two paths. Each call appends one line to ``record`` (a single short
    ``O_APPEND`` write, so concurrent lines never interleave).
    """
    if up is None or down is None:
        shipped_up, shipped_down = vip_scripts(workdir)
        up, down = up or shipped_up, down or shipped_down
    paths = []
    for kind, target in (("up", up), ("down", down)):
        path = workdir / f"{kind}.sh"
        path.write_text(
            "#!/bin/sh\n"
            f'echo "{kind} $(date +%s.%N) $*" >> "{record}"\n'
            f'exec "{target}" "$@"\n'
        )
        path.chmod(0o755)
        paths.append(path)
    return paths[0], paths[1]


@dataclass(frozen=True)
class ScriptCall:
    """One run of an up or down script, as recorded by its wrapper."""

    kind: Literal["up", "down"]
    t: float  # wall clock (time.time()) when the wrapper started
    args: tuple[str, ...]


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, from /proc/PID/stat (clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid``, in nanoseconds (schedstat's first field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS by default)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, Pss) of ``pid`` in KiB (Pss 0 where smaps_rollup is missing)."""
    rss = status_kib(pid, "VmRSS")
    pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


# --------------------------------------------------------------------------- the daemon


class Daemon:
    """One daemon (pyucarp or the C ucarp) running on a lab host.

    ``argv`` is the whole command line (see :func:`pyucarp_command`,
    :func:`cucarp_command`). ``directory`` (:attr:`dir`) is created and holds
    ``console.log`` and ``calls.txt``. ``statedir`` is where the daemon writes its JSON
    state files, for :meth:`statefile`; ``pidfile`` is where a daemon that detaches
    (``-B``) writes its pid, for :attr:`pid`; ``vip`` is the address :meth:`holds_vip`
    looks for.
    """

    def __init__(
        self,
        host: Host,
        argv: Sequence[str],
        directory: Path,
        *,
        impl: Impl = "py",
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = SOURCE_ROOT,
        statedir: Path | None = None,
        pidfile: Path | None = None,
        vip: str | None = None,
    ) -> None:
        self.host = host
        self.argv = list(argv)
        self.dir = directory
        self.name = directory.name
        self.impl = impl
        self.statedir = statedir
        self.pidfile = pidfile
        self.vip = vip
        self.log_path = directory / "console.log"
        self.record_path = directory / "calls.txt"
        directory.mkdir(parents=True, exist_ok=True)
        if statedir is not None:
            statedir.mkdir(parents=True, exist_ok=True)
        self.record_path.touch()
        self._follow_at = 0
        full_env = pyucarp_env(env) if impl == "py" else {**os.environ, **(env or {})}
        self.started = time.monotonic()
        self.started_at = time.time()
        with open(self.log_path, "wb") as console:
            # ``ip netns exec`` execs in place: proc.pid is the daemon itself (unless -B)
            self.proc: subprocess.Popen[bytes] = host.popen(
                self.argv, stdout=console, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)

    def __repr__(self) -> str:
        return f"Daemon({self.name!r}, {self.impl}, {self.host.ip})"

    # ---------------------------------------------------------------- process

    @property
    def pid(self) -> int:
        """The daemon's pid: from the pid file once written (-B), else the child started."""
        if self.pidfile is not None:
            try:
                return int(self.pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return self.proc.pid

    def _detached_pid(self) -> int | None:
        """The detached daemon's pid (-B), only while it still runs in this host's namespace."""
        pid = self.pid
        if pid == self.proc.pid or not pid_alive(pid):
            return None
        return pid if pid in self.host.pids() else None

    def alive(self) -> bool:
        """Whether the daemon still runs."""
        return self.proc.poll() is None or self._detached_pid() is not None

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the daemon, by its own pid only (never a reused one)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            return
        pid = self._detached_pid()
        if pid is None:
            raise ProcessLookupError(f"{self.name} is not running")
        os.kill(pid, signum)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the started process to end; its return code, or None on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Send ``signum``, wait up to ``timeout`` s, SIGKILL if still there.

        Returns the return code of the process started, None when it had to be killed.
        """
        try:
            self.send_signal(signum)
        except ProcessLookupError:
            pass
        code = self.wait_exit(timeout)
        if code is None or not wait_until(lambda: not self.alive(), timeout):
            self.kill()
        return code

    def kill(self) -> None:
        """SIGKILL the daemon and reap it."""
        try:
            self.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait_exit(5)

    def cpu_seconds(self) -> float:
        """User + system CPU time the daemon has used so far."""
        return cpu_seconds(self.pid)

    def cpu_ns(self) -> int:
        """CPU time of all the daemon's threads so far, in nanoseconds."""
        return cpu_ns(self.pid)

    def memory_kib(self) -> tuple[int, int]:
        """The daemon's (VmRSS, Pss) in KiB."""
        return memory_kib(self.pid)

    def status_kib(self, field: str = "VmRSS") -> int:
        """A ``kB`` field of the daemon's /proc/PID/status (VmRSS by default)."""
        return status_kib(self.pid, field)

    # ---------------------------------------------------------------- console

    def log(self) -> str:
        """Everything the daemon wrote on its console so far."""
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def lines(self) -> list[str]:
        """The console output as lines."""
        return self.log().splitlines()

    def follow(self) -> list[str]:
        """The complete console lines written since the previous call."""
        with open(self.log_path, "rb") as console:
            console.seek(self._follow_at)
            data = console.read()
        end = data.rfind(b"\n") + 1
        self._follow_at += end
        return data[:end].decode("utf-8", "replace").splitlines()

    def count(self, pattern: str) -> int:
        """How many console lines match the regular expression ``pattern``."""
        rx = re.compile(pattern)
        return sum(1 for line in self.lines() if rx.search(line))

    def wait_log(self, pattern: str, timeout: float, count: int = 1) -> bool:
        """Wait until at least ``count`` console lines match ``pattern``."""
        return wait_until(lambda: self.count(pattern) >= count, timeout, interval=0.05)

    def states(self) -> list[str]:
        """Every state the daemon logged switching to, in order."""
        return [m.group(1) for m in map(_STATE_RE.search, self.lines()) if m]

    def state(self) -> str | None:
        """The last state the daemon logged switching to."""
        states = self.states()
        return states[-1] if states else None

    def wait_state(self, state: str, timeout: float) -> bool:
        """Wait until the last logged state is ``state``."""
        return wait_until(lambda: self.state() == state, timeout, interval=0.05)

    # ---------------------------------------------------------------- state file

    def state_path(self, vhid: int, iface: str = "eth0") -> Path:
        """Where pyucarp writes the JSON state file of (``iface``, ``vhid``)."""
        if self.statedir is None:
            raise ValueError(f"{self.name} was started without a known state directory")
        return self.statedir / f"{iface}-{vhid}.json"

    def statefile(self, vhid: int, refresh: bool = False,
                  iface: str = "eth0") -> dict[str, Any] | None:
        """The state file's content (None when absent or unreadable).

        With ``refresh`` the daemon is made to rewrite it first: on :data:`CONTROL_SIGNAL`
        pyucarp re-reads its maintenance flag and writes the file when anything changed.
        """
        path = self.state_path(vhid, iface)
        if refresh and self.alive():
            before = _mtime(path)
            self.send_signal(CONTROL_SIGNAL)
            wait_until(lambda: _mtime(path) != before, 0.5, interval=0.05)
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data

    def wait_statefile(self, vhid: int, state: str, timeout: float, iface: str = "eth0") -> bool:
        """Wait until the state file of (``iface``, ``vhid``) says ``state``."""
        return wait_until(lambda: (self.statefile(vhid, iface=iface) or {}).get("state") == state,
                          timeout, interval=0.05)

    # ---------------------------------------------------------------- scripts and VIP

    def calls(self, kind: str | None = None, since: float | None = None) -> list[ScriptCall]:
        """Recorded script runs (of one ``kind``, after wall time ``since``), oldest first."""
        result = []
        for line in self.record_path.read_text().splitlines():
            fields = line.split()
            if len(fields) < 2 or fields[0] not in ("up", "down"):
                continue
            call = ScriptCall(fields[0], float(fields[1]), tuple(fields[2:]))  # type: ignore[arg-type]
            if (kind is None or call.kind == kind) and (since is None or call.t >= since):
                result.append(call)
        return result

    def wait_calls(self, kind: str, timeout: float, count: int = 1,
                   since: float | None = None) -> bool:
        """Wait until ``count`` runs of the ``kind`` script were recorded (after ``since``)."""
        return wait_until(lambda: len(self.calls(kind, since)) >= count, timeout, interval=0.05)

    def holds_vip(self) -> bool:
        """Whether this daemon's host currently carries its VIP."""
        if self.vip is None:
            raise ValueError(f"{self.name} was started without a VIP to look for")
        return self.host.has_address(self.vip)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# --------------------------------------------------------------------------- starting


def start_pyucarp(
    host: Host,
    workdir: Path,
    args: Sequence[str],
    *,
    name: str = "node",
    python_flags: Sequence[str] = (),
    wrapper: Sequence[str] = (),
    **kw: Any,
) -> Daemon:
    """Start ``pyucarp ARGS`` on ``host``, the arguments exactly as given, in ``workdir/name``.

    ``wrapper`` goes before the interpreter (``unshare ...``, ``faketime ...``); the
    keywords are :class:`Daemon`'s (``env``, ``cwd``, ``statedir``, ``pidfile``, ``vip``).
    """
    argv = [*wrapper, *pyucarp_command(python_flags), *args]
    return Daemon(host, argv, workdir / name, impl="py", **kw)


def start_ucarp(
    host: Host,
    workdir: Path,
    args: Sequence[str],
    *,
    impl: Impl = "py",
    name: str = "node",
    python_flags: Sequence[str] = (),
    wrapper: Sequence[str] = (),
    statedir: bool = True,
    **kw: Any,
) -> Daemon:
    """Start a daemon with ucarp's command line ``args``, in ``workdir/name``.

    ``impl`` is "py" (pyucarp) or "c" (/usr/sbin/ucarp). With ``statedir`` pyucarp gets
    ``--statedir=<workdir>/<name>/state`` unless ``args`` already name one (which is then
    the one read). The other keywords are :func:`start_pyucarp`'s.
    """
    args = list(args)
    if impl == "c":
        return Daemon(host, [*wrapper, *cucarp_command(), *args], workdir / name, impl="c", **kw)
    state = None
    if statedir:
        state = _statedir_in(args)
        if state is None:
            state = workdir / name / "state"
            args.append(f"--statedir={state}")
    return start_pyucarp(host, workdir, args, name=name, python_flags=python_flags,
                         wrapper=wrapper, statedir=state, **kw)


def start_node(
    host: Host,
    workdir: Path,
    *,
    impl: Impl = "py",
    name: str | None = None,
    scripts: bool = True,
    vip: str = DEFAULT_VIP,
    password: str | None = DEFAULT_PASSWORD,
    pidfile: bool = False,
    python_flags: Sequence[str] = (),
    **options: Any,
) -> Daemon:
    """Start one cluster node on ``host`` with ucarp options (see :func:`ucarp_args`).

    ``impl`` is "py" (pyucarp) or "c" (/usr/sbin/ucarp). With ``scripts`` the recording
    wrappers are the up and down scripts. ``pidfile`` adds pyucarp's ``--pidfile``.
    Console, records and state live in ``workdir/<name>``, ``name`` by default
    ``<impl>-<host>``.
    """
    name = name or f"{impl}-{host.name}"
    nodedir = workdir / name
    nodedir.mkdir(parents=True, exist_ok=False)
    up = down = None
    if scripts:
        up, down = write_recording_scripts(nodedir, nodedir / "calls.txt")
    args = ucarp_args(host, vip=vip, password=password, upscript=up, downscript=down, **options)
    pid_path = None
    if pidfile:
        if impl != "py":
            raise ValueError("only pyucarp has --pidfile")
        pid_path = nodedir / "ucarp.pid"
        args.append(f"--pidfile={pid_path}")
    return start_ucarp(host, workdir, args, impl=impl, name=name, python_flags=python_flags,
                       pidfile=pid_path, vip=vip)


def run_pyucarp(host: Host, args: Sequence[str], timeout: float = 10.0, *,
                statedir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run pyucarp on ``host`` to its end (configuration errors, ``-h``, ``-B``).

    A daemon still running at ``timeout`` is killed (``ip netns exec`` execs it in place)
    and reported with return code None. One that may get as far as running needs
    ``statedir`` (else it writes in /run/pyucarp).
    """
    extra = [f"--statedir={statedir}"] if statedir is not None else []
    argv = ["ip", "netns", "exec", host.netns, *pyucarp_command(), *args, *extra]
    try:
        return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=pyucarp_env(), stdin=subprocess.DEVNULL,
                              cwd=SOURCE_ROOT)
    except subprocess.TimeoutExpired as exc:
        def text(data: bytes | str | None) -> str:
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else data or ""
        return subprocess.CompletedProcess(argv, None,  # type: ignore[arg-type]
                                           text(exc.stdout), text(exc.stderr))


# --------------------------------------------------------------------------- cluster views


def holders(daemons: Iterable[Daemon]) -> list[Daemon]:
    """The daemons whose host carries their VIP right now."""
    return [d for d in daemons if d.holds_vip()]


def masters(daemons: Iterable[Daemon]) -> list[Daemon]:
    """The daemons whose last logged state is MASTER."""
    return [d for d in daemons if d.state() == "MASTER"]


def wait_holder(daemons: Sequence[Daemon], expected: Daemon, timeout: float) -> bool:
    """Wait until ``expected`` is the only daemon holding the VIP."""
    return wait_until(lambda: holders(daemons) == [expected], timeout, interval=0.05)


def wait_converged(daemons: Sequence[Daemon], timeout: float, settle: float = 0.0) -> Daemon | None:
    """Wait until exactly one daemon is MASTER and holds the VIP, and stays so ``settle`` s.

    Returns that daemon, or None when it did not happen within ``timeout``.
    """
    deadline = time.monotonic() + timeout

    def single() -> Daemon | None:
        ms = masters(daemons)
        if len(ms) == 1 and holders(daemons) == ms:
            return ms[0]
        return None

    while time.monotonic() < deadline:
        if not wait_until(lambda: single() is not None, deadline - time.monotonic()):
            return None
        first = single()
        if first is None:
            continue
        stable_until = time.monotonic() + settle
        ok = True
        while time.monotonic() < stable_until:
            if single() is not first:
                ok = False
                break
            time.sleep(0.05)
        if ok:
            return first
    return None


def describe(daemons: Iterable[Daemon]) -> str:
    """Every daemon's console and script record, for assertion messages."""
    parts = []
    for d in daemons:
        calls = " ".join(f"{c.kind}@{c.t:.3f}" for c in d.calls())
        vip = d.holds_vip() if d.vip is not None else "-"
        parts.append(f"--- {d.name} ({d.impl} {d.host.ip}) vip={vip} calls=[{calls}]\n{d.log()}")
    return "\n".join(parts)
