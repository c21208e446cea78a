"""Running real pyucarp and C ucarp daemons on :mod:`netlab` hosts, for the end-to-end tests.

A :class:`Node` is one daemon started inside a lab host's namespace with ucarp's command
line. Its console output (stdout and stderr together, in order) goes to a file in a
per-node work directory, and its up and down scripts are small shell wrappers that first
append one line ``<kind> <wall-clock time> <args...>`` to a record file, then run the
shipped ``etc/ucarp/vip-up.sh`` / ``vip-down.sh`` so the VIP really moves between hosts.
"Who holds the VIP" is then simply which host has the address on its ``eth0``.

Everything a node starts belongs to its lab, which kills it at the end of the ``with``
block; :meth:`Node.stop` and :meth:`Node.kill` end it earlier, by its own pid only.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from netlab import Host, pid_alive, wait_until

REPO = Path(__file__).resolve().parent.parent
VIP_UP = REPO / "etc" / "ucarp" / "vip-up.sh"
VIP_DOWN = REPO / "etc" / "ucarp" / "vip-down.sh"
CUCARP = "/usr/sbin/ucarp"

DEFAULT_VIP = "192.0.2.100"
DEFAULT_VHID = 7
DEFAULT_PASSWORD = "s3cret"

Impl = Literal["py", "c"]

LOG_LINE_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}: \[(DEBUG|INFO|NOTICE|WARNING|ERROR)\] .*$"
)
"""ucarp's console format: ``YYYY-MM-DDTHH:MM:SS.uuuuuu: [LEVEL] message``."""

_STATE_RE = re.compile(r"Switching to state: (INIT|BACKUP|MASTER)")


@dataclass(frozen=True)
class ScriptCall:
    """One run of an up or down script, as recorded by its wrapper."""

    kind: Literal["up", "down"]
    t: float  # wall clock (time.time()) when the wrapper started
    args: tuple[str, ...]


def netns_pids(host: Host) -> list[int]:
    """Pids of the processes running in ``host``'s namespace."""
    out = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True,
                         timeout=10)
    return [int(tok) for tok in out.stdout.split() if tok.isdigit()]


def write_recording_scripts(workdir: Path, record: Path) -> tuple[Path, Path]:
    """Write ``up.sh`` and ``down.sh`` into ``workdir``: record the call, then move the VIP.

    Returns the two paths. Each call appends one line to ``record`` (a single short
    ``O_APPEND`` write, so concurrent lines never interleave).
    """
    paths = []
    for kind, target in (("up", VIP_UP), ("down", VIP_DOWN)):
        path = workdir / f"{kind}.sh"
        path.write_text(
            "#!/bin/sh\n"
            f'echo "{kind} $(date +%s.%N) $*" >> "{record}"\n'
            f'exec "{target}" "$@"\n'
        )
        path.chmod(0o755)
        paths.append(path)
    return paths[0], paths[1]


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


def pyucarp_command(python_flags: Sequence[str] = ()) -> list[str]:
    """The argv prefix that runs pyucarp from this work tree."""
    return [sys.executable, *python_flags, "-m", "pyucarp"]


def pyucarp_env() -> dict[str, str]:
    """Environment for a pyucarp process: this work tree first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Node:
    """One running daemon (pyucarp or the C ucarp) on a lab host."""

    def __init__(
        self,
        name: str,
        host: Host,
        impl: Impl,
        argv: list[str],
        workdir: Path,
        vip: str,
        password: str | None,
        pidfile: Path | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.impl = impl
        self.argv = argv
        self.workdir = workdir
        self.vip = vip
        self.password = password
        self.pidfile = pidfile
        self.log_path = workdir / "console.log"
        self.record_path = workdir / "calls.txt"
        self.record_path.touch()
        self.started = time.time()
        self._logfile = open(self.log_path, "wb")
        env = pyucarp_env() if impl == "py" else dict(os.environ)
        try:
            # ``ip netns exec`` execs in place: proc.pid is the daemon itself (unless -B).
            self.proc: subprocess.Popen[bytes] = host.popen(
                argv, stdout=self._logfile, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        finally:
            self._logfile.close()

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.impl}, {self.host.ip})"

    # ---------------------------------------------------------------- process

    @property
    def pid(self) -> int:
        """The daemon's pid: from the pid file once written (-B), else the child we started."""
        if self.pidfile is not None:
            try:
                return int(self.pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return self.proc.pid

    def _daemon_pid(self) -> int | None:
        """The detached daemon's pid (-B), only while it still runs in this node's namespace."""
        pid = self.pid
        if pid == self.proc.pid or not pid_alive(pid):
            return None
        return pid if pid in netns_pids(self.host) else None

    def alive(self) -> bool:
        """Whether the daemon still runs."""
        return self.proc.poll() is None or self._daemon_pid() is not None

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the daemon, by its own pid only (never a reused one)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            return
        pid = self._daemon_pid()
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
        """Send ``signum``, wait up to ``timeout`` s, SIGKILL if still there; the return code."""
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

    def status_kib(self, field: str = "VmRSS") -> int:
        """A ``kB`` field of /proc/PID/status (VmRSS by default)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    # ---------------------------------------------------------------- logs

    def log(self) -> str:
        """Everything the daemon wrote on its console so far."""
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def lines(self) -> list[str]:
        """The console output as lines."""
        return self.log().splitlines()

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
        """Whether this node's host currently carries the VIP."""
        return self.host.has_address(self.vip)


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
    **options: object,
) -> Node:
    """Start one daemon on ``host`` with ucarp options (see :func:`ucarp_args`).

    ``impl`` is "py" (this work tree's pyucarp) or "c" (/usr/sbin/ucarp). With ``scripts``
    the recording wrappers are the up and down scripts. ``pidfile`` adds pyucarp's
    ``--pidfile``. Logs and records live in ``workdir/<name>``.
    """
    name = name or f"{impl}-{host.name}"
    nodedir = workdir / name
    nodedir.mkdir(parents=True, exist_ok=False)
    up = down = None
    if scripts:
        up, down = write_recording_scripts(nodedir, nodedir / "calls.txt")
    args = ucarp_args(host, vip=vip, password=password, upscript=up, downscript=down,
                      **options)  # type: ignore[arg-type]
    pid_path = None
    if pidfile:
        if impl != "py":
            raise ValueError("only pyucarp has --pidfile")
        pid_path = nodedir / "ucarp.pid"
        args.append(f"--pidfile={pid_path}")
    command = pyucarp_command(python_flags) if impl == "py" else cucarp_command()
    return Node(name, host, impl, command + args, nodedir, vip, password, pid_path)


def cucarp_command() -> list[str]:
    """The argv prefix that runs the C ucarp, its stdout line-buffered when possible.

    ucarp block-buffers stdout when it is not a terminal, so its INFO lines would only
    show up at exit; ``stdbuf`` execs ucarp in place, so the pid stays the daemon's.
    """
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", CUCARP] if stdbuf else [CUCARP]


def run_pyucarp(host: Host, args: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run pyucarp to completion on ``host`` (for configuration errors, -h, -B)."""
    return subprocess.run(
        ["ip", "netns", "exec", host.netns, *pyucarp_command(), *args],
        capture_output=True, text=True, errors="replace", timeout=timeout,
        env=pyucarp_env(), stdin=subprocess.DEVNULL, cwd=REPO,
    )


# -------------------------------------------------------------------- cluster views


def holders(nodes: Iterable[Node]) -> list[Node]:
    """The nodes whose host carries their VIP right now."""
    return [n for n in nodes if n.holds_vip()]


def masters(nodes: Iterable[Node]) -> list[Node]:
    """The nodes whose last logged state is MASTER."""
    return [n for n in nodes if n.state() == "MASTER"]


def wait_holder(nodes: Sequence[Node], expected: Node, timeout: float) -> bool:
    """Wait until ``expected`` is the only node holding the VIP."""
    return wait_until(lambda: holders(nodes) == [expected], timeout, interval=0.05)


def wait_converged(nodes: Sequence[Node], timeout: float, settle: float = 0.0) -> Node | None:
    """Wait until exactly one node is MASTER and holds the VIP, and stays so ``settle`` s.

    Returns that node, or None when it did not happen within ``timeout``.
    """
    deadline = time.monotonic() + timeout

    def single() -> Node | None:
        ms = masters(nodes)
        if len(ms) == 1 and holders(nodes) == ms:
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


def describe(nodes: Iterable[Node]) -> str:
    """Every node's console and script record, for assertion messages."""
    parts = []
    for n in nodes:
        calls = " ".join(f"{c.kind}@{c.t:.3f}" for c in n.calls())
        parts.append(f"--- {n.name} ({n.impl} {n.host.ip}) vip={n.holds_vip()} calls=[{calls}]\n{n.log()}")
    return "\n".join(parts)
