"""A throw-away Ethernet segment made of Linux network namespaces, for tests, demos and benchmarks.

A :class:`Lab` owns one namespace holding a plain Linux bridge (``br0``, multicast snooping
off so multicast floods like on a dumb switch) and one namespace per host, each host joined
to the bridge by a veth pair whose host end is ``eth0``. Nothing is ever created in the root
namespace, and only the documentation ranges 192.0.2.0/24 and 198.51.100.0/24 (and, on
hosts given an IPv6 address, 2001:db8::/32) may be used.

Everything a lab starts is killed, and every namespace it made is deleted, when the ``with``
block ends -- also on exceptions and Ctrl-C. Namespace names carry the creator's pid
(``<prefix><pid>-<6 hex>-<host>``) so :func:`cleanup_stale` can remove leftovers of dead
runs without touching labs of other live processes.

Frame capture, frame sending, floods and ICMP probing run inside a host's namespace as
:mod:`pyucarp.lab.helper` processes; the classes here start them and read what they report.
iputils ``ping`` (:class:`SystemPing`, either family) and ``ip -ts monitor address``
(:class:`AddressMonitor`) run there too, read the same way; they stamp with CLOCK_REALTIME,
which every captured frame also carries (:attr:`CapturedFrame.wall`).
Standard library only, and never pytest: the tests, the benchmark and the demo share it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from pyucarp.closing import Closing
from pyucarp.lab import helper
from pyucarp.lab.helper import (
    ALLOWED_NETWORKS,
    ALLOWED_NETWORKS6,
    CAPTURE_KINDS,
    check_test_address,
    check_test_address6,
)
from pyucarp.shell.pidfile import pid_alive
from pyucarp.shell.statefile import DEFAULT_STATEDIR

__all__ = [
    "ALLOWED_NETWORKS",
    "ALLOWED_NETWORKS6",
    "AddressEvent",
    "AddressMonitor",
    "CapturedFrame",
    "FloodResult",
    "FrameCapture",
    "Host",
    "Lab",
    "LabError",
    "PingWatch",
    "SystemPing",
    "check_test_address",
    "check_test_address6",
    "cleanup_stale",
    "environment_problem",
    "largest_gap",
    "netns_pids",
    "pid_alive",
    "stop_process",
    "wait_until",
]

DEFAULT_PREFIX = "pyu"
NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
HOST_IF = "eth0"
HELPER = Path(helper.__file__).resolve()
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,12}$")  # "v-" + name must fit IFNAMSIZ-1 = 15


class LabError(RuntimeError):
    """The lab could not be built or torn down as asked."""


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``pred`` until it is true (return True) or ``timeout`` seconds pass (return False)."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval, left))


def largest_gap(times: Sequence[float], start: float | None = None,
                end: float | None = None) -> float:
    """The longest silence in a series of timestamps, counting from ``start`` and up to ``end``.

    With no timestamps at all the gap is ``end - start`` (or infinity when either is unknown).
    """
    points = sorted(times)
    if start is not None:
        points = [start] + [t for t in points if t >= start]
    if end is not None:
        points = [t for t in points if t <= end] + [end]
    if len(points) < 2:
        return float("inf") if not times else 0.0
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def environment_problem(probe: bool = False) -> str | None:
    """Why a lab cannot be built here (not root, no ``ip``), or None when it can.

    With ``probe`` a scratch namespace is really created and deleted, which catches
    containers that are root but lack the capability.
    """
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 'ip' is missing"
    if probe:
        name = f"{DEFAULT_PREFIX}{os.getpid()}-{secrets.token_hex(3)}-probe"
        try:
            made = _ip("netns", "add", name, check=False)
        finally:
            _delete_netns(name)
        if made.returncode != 0:
            return f"cannot create network namespaces: {made.stderr.strip()}"
    return None


# --------------------------------------------------------------------------- low-level helpers


def _ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run one ``ip`` command, raising LabError with its stderr on failure."""
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, errors="replace", timeout=timeout
    )
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _netns_argv(netns: str, cmd: Sequence[str | bytes]) -> list[str | bytes]:
    """``cmd`` prefixed so it runs inside ``netns`` (``ip netns exec`` execs it in place)."""
    return ["ip", "netns", "exec", netns, *cmd]


def _helper_argv(netns: str, *args: str) -> list[str | bytes]:
    """Argv running one :mod:`pyucarp.lab.helper` mode inside ``netns``."""
    return _netns_argv(netns, [sys.executable, "-I", "-u", str(HELPER), *args])


def netns_pids(netns: str) -> list[int]:
    """Pids of the processes living in ``netns`` (empty when it is gone)."""
    proc = _ip("netns", "pids", netns, check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def _kill_netns_processes(netns: str, rounds: int = 20) -> None:
    """SIGKILL whatever still runs in ``netns`` (daemonized children escape process groups)."""
    for _ in range(rounds):
        pids = [p for p in netns_pids(netns) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _delete_netns(netns: str) -> None:
    """Kill the namespace's processes and delete it; quiet when it is already gone."""
    if not (NETNS_DIR / netns).exists():
        return
    _kill_netns_processes(netns)
    for _ in range(10):
        _ip("netns", "del", netns, check=False)
        if not (NETNS_DIR / netns).exists():
            return
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[Any], grace: float | None = 1.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap it.

    With ``grace`` None the group is SIGKILLed at once: the end of a crash, with no
    goodbye and no script.
    """
    if grace is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _drop_default_statedir(netns: str) -> None:
    """Remove the state directory that daemons in ``netns`` used without ``--statedir``
    (``statefile.default_statedir``: /run/pyucarp/netns-<inode>). The kernel hands the
    inode to later namespaces, which would find this lab's state and maintenance files."""
    try:
        inode = (NETNS_DIR / netns).stat().st_ino
    except OSError:
        return
    shutil.rmtree(os.path.join(DEFAULT_STATEDIR, f"netns-{inode}"), ignore_errors=True)


def cleanup_stale(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete namespaces named ``<prefix><pid>-<hex>-...`` whose creator pid is no longer running.

    Labs of live processes (parallel test runs) are left alone. Returns the names removed.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-[0-9a-f]{{6}}-")
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        match = pattern.match(name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        _delete_netns(name)
        removed.append(name)
    return removed


# --------------------------------------------------------------------------- the lab


class Host:
    """One machine on the lab segment: namespace ``netns`` with ``eth0`` plugged into the bridge.

    ``addr6``/``ip6`` are its IPv6 address on eth0 when it was given one (``add_host(...,
    addr6=...)``), else None.
    """

    def __init__(self, lab: Lab, name: str, netns: str, addr: ipaddress.IPv4Interface,
                 addr6: ipaddress.IPv6Interface | None = None) -> None:
        self.lab = lab
        self.name = name
        self.netns = netns
        self.addr = addr
        self.ip = str(addr.ip)
        self.addr6 = addr6
        self.ip6 = None if addr6 is None else str(addr6.ip)
        self.ifname = HOST_IF
        self.port = f"v-{name}"  # its veth end in the bridge namespace

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.netns!r}, {str(self.addr)!r})"

    # running things -------------------------------------------------------

    def run(
        self,
        cmd: Sequence[str | bytes],
        check: bool = True,
        timeout: float = 10,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` to completion inside the namespace, output captured as text."""
        return subprocess.run(
            _netns_argv(self.netns, cmd),
            check=check,
            timeout=timeout,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
        )

    def popen(self, cmd: Sequence[str | bytes], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside the namespace in its own session; the lab kills it at exit.

        ``ip netns exec`` execs ``cmd`` in place: the returned process is ``cmd`` itself.
        """
        return self.lab.spawn(_netns_argv(self.netns, cmd), **kw)

    def pids(self) -> list[int]:
        """Pids of the processes running in this host's namespace."""
        return netns_pids(self.netns)

    # link state -----------------------------------------------------------

    def link_down(self) -> None:
        """Take the bridge-side veth end down: the host's own eth0 loses carrier too."""
        _ip("-n", self.lab.bridge_ns, "link", "set", self.port, "down")

    def link_up(self) -> None:
        """Bring the bridge-side veth end back up."""
        _ip("-n", self.lab.bridge_ns, "link", "set", self.port, "up")

    def unplug(self) -> None:
        """Detach from the bridge: the host keeps carrier but can no longer reach anyone."""
        _ip("-n", self.lab.bridge_ns, "link", "set", self.port, "nomaster")

    def plug(self) -> None:
        """Re-attach to the bridge after :meth:`unplug`."""
        _ip("-n", self.lab.bridge_ns, "link", "set", self.port, "master", BRIDGE)

    def _link(self) -> dict[str, Any]:
        out = _ip("-n", self.netns, "-j", "link", "show", "dev", self.ifname).stdout
        info: list[dict[str, Any]] = json.loads(out)
        return info[0]

    def carrier(self) -> bool:
        """Whether eth0 currently has carrier (``ip link`` shows no NO-CARRIER)."""
        flags: list[str] = self._link().get("flags", [])
        return "NO-CARRIER" not in flags and "LOWER_UP" in flags

    def mac(self) -> str:
        """eth0's MAC address, lower-case colon form."""
        return str(self._link()["address"]).lower()

    # addresses ------------------------------------------------------------

    def addresses(self, with_prefix: bool = False) -> list[str]:
        """IPv4 addresses on eth0 ("192.0.2.1", or "192.0.2.1/24" with ``with_prefix``)."""
        return self._addresses(4, with_prefix)

    def _addresses(self, version: int, with_prefix: bool) -> list[str]:
        """eth0's addresses of one IP version; over IPv6 without the link-local ones."""
        family = "inet" if version == 4 else "inet6"
        out = _ip("-n", self.netns, "-j", f"-{version}", "addr", "show", "dev",
                  self.ifname).stdout
        result = []
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                if info.get("family") == family and (version == 4 or info.get("scope") != "link"):
                    local = str(info["local"])
                    result.append(f"{local}/{info['prefixlen']}" if with_prefix else local)
        return result

    def has_address(self, ip: str) -> bool:
        """Whether eth0 carries IPv4 address ``ip`` (prefix length ignored)."""
        return str(ipaddress.ip_interface(ip).ip) in self.addresses()

    def add_address(self, addr: str) -> None:
        """Add ``addr`` (default /32) to eth0; only documentation ranges are accepted."""
        iface = check_test_address(addr)
        _ip("-n", self.netns, "addr", "add", str(iface), "dev", self.ifname)

    def del_address(self, addr: str, missing_ok: bool = False) -> None:
        """Remove ``addr`` from eth0 (default /32); with ``missing_ok``, quiet when absent."""
        iface = check_test_address(addr)
        _ip("-n", self.netns, "addr", "del", str(iface), "dev", self.ifname,
            check=not missing_ok)

    def enable_ipv6(self) -> None:
        """Switch IPv6 on in this namespace (a lab made without ``ipv6=True`` has it off)."""
        for scope in ("all", "default", self.ifname):
            self.lab._sysctl(self.netns, f"net/ipv6/conf/{scope}/disable_ipv6", "0")

    def add_address6(self, addr: str, dad: bool = False) -> None:
        """Add IPv6 ``addr`` (default /128, inside 2001:db8::/32) to eth0.

        Without ``dad`` it skips duplicate address detection (``nodad``), the way an admin
        adds one for a test: usable at once rather than ``tentative`` for a second.
        """
        iface = check_test_address6(addr)
        _ip("-n", self.netns, "-6", "addr", "add", str(iface), "dev", self.ifname,
            *(() if dad else ("nodad",)))

    def addresses6(self, with_prefix: bool = False) -> list[str]:
        """IPv6 addresses on eth0 but the link-local ones ("2001:db8::1", or with "/64")."""
        return self._addresses(6, with_prefix)

    def has_address6(self, ip: str) -> bool:
        """Whether eth0 carries IPv6 address ``ip`` (prefix length ignored)."""
        wanted = ipaddress.ip_interface(ip).ip
        return any(ipaddress.ip_address(a) == wanted for a in self.addresses6())

    def monitor_addresses(self) -> AddressMonitor:
        """Start ``ip -ts monitor address`` on eth0 (see :class:`AddressMonitor`)."""
        return AddressMonitor(self)

    # traffic --------------------------------------------------------------

    def capture(self, kinds: Iterable[str] = ("carp", "arp"), **kw: Any) -> FrameCapture:
        """A :class:`FrameCapture` on this host's eth0 (enter it to start)."""
        return FrameCapture(self.netns, self.ifname, kinds=kinds, lab=self.lab, **kw)

    def send_frames(self, frames: Sequence[bytes], interval_s: float = 0.0) -> None:
        """Send raw Ethernet frames from eth0, ``interval_s`` apart."""
        if len(frames) > helper.MAX_SEND_FRAMES or interval_s * len(frames) > 60:
            raise ValueError("send_frames is bounded to 10000 frames and 60 s")
        proc = subprocess.run(
            _helper_argv(self.netns, "send", self.ifname, repr(interval_s)),
            input=helper.pack_frames(frames),
            capture_output=True,
            timeout=10 + interval_s * len(frames),
        )
        if proc.returncode != 0:
            raise LabError(f"send_frames failed: {proc.stderr.decode(errors='replace').strip()}")

    def flood(self, frames: Sequence[bytes], rate: float, max_seconds: float = 30.0) -> FloodResult:
        """Send ``frames`` from eth0 at about ``rate`` frames/s; refused sends are counted.

        Bounded: at most 200000 frames and ``max_seconds`` (at most 60) seconds.
        """
        if (len(frames) > helper.MAX_FLOOD_FRAMES
                or not 0 < max_seconds <= helper.MAX_FLOOD_SECONDS):
            raise ValueError("a flood is bounded to 200000 frames and 60 s")
        if rate <= 0:
            raise ValueError("a flood needs a positive rate")
        proc = subprocess.run(
            _helper_argv(self.netns, "flood", self.ifname, repr(float(rate)),
                         repr(float(max_seconds))),
            input=helper.pack_frames(frames),
            capture_output=True,
            timeout=max_seconds + 15,
        )
        if proc.returncode != 0:
            raise LabError(f"flood failed: {proc.stderr.decode(errors='replace').strip()}")
        result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        return FloodResult(int(result["sent"]), dict(result["errors"]), float(result["elapsed"]))

    def start_system_ping(self, target: str, interval_s: float = 0.01,
                          duration_s: float = 5.0) -> SystemPing:
        """Start iputils ``ping`` (IPv4 or IPv6, after ``target``) in the background."""
        return SystemPing(self, target, interval_s, duration_s)

    def start_ping_watch(
        self, target: str, interval_s: float = 0.01, duration_s: float = 5.0
    ) -> PingWatch:
        """Start ICMP echo probing of ``target`` every ``interval_s`` for ``duration_s`` seconds."""
        return PingWatch(self, target, interval_s, duration_s)

    def ping_watch(self, target: str, interval_s: float = 0.01,
                   duration_s: float = 2.0) -> list[float]:
        """Probe ``target`` for ``duration_s`` seconds; return the monotonic times of the replies.

        A pure-Python raw-socket prober is used, so iputils ping is not needed.
        Feed the result to :func:`largest_gap` to measure an outage.
        """
        return self.start_ping_watch(target, interval_s, duration_s).wait()


class Lab(Closing):
    """A bridge namespace plus host namespaces; a context manager that always cleans up."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, ipv6: bool = False) -> None:
        if not re.fullmatch(r"[a-z]{1,8}", prefix):
            raise ValueError("prefix must be 1-8 lower-case letters")
        self.prefix = prefix
        self.ipv6 = ipv6
        # pid in the name lets cleanup_stale() tell dead runs from live parallel ones
        self.tag = f"{prefix}{os.getpid()}-{secrets.token_hex(3)}"
        self.bridge_ns = f"{self.tag}-br"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()  # guards _procs
        self._build_lock = threading.Lock()  # add_host may be called from several threads
        self._open = False

    def __repr__(self) -> str:
        return f"Lab({self.tag!r}, hosts={list(self.hosts)})"

    # lifecycle ------------------------------------------------------------

    def __enter__(self) -> Lab:
        problem = environment_problem()
        if problem is not None:
            raise LabError(problem)
        self._open = True
        try:
            self._add_netns(self.bridge_ns)
            _ip("-n", self.bridge_ns, "link", "add", BRIDGE, "type", "bridge",
                "forward_delay", "0", "mcast_snooping", "0")
            # with br_netfilter loaded, a bridge validates IPv4 headers and silently drops
            # frames with a bad checksum; a dumb switch (and tests of ucarp's own
            # "Bad IP checksum" handling) need them forwarded untouched
            for table in ("iptables", "ip6tables", "arptables"):
                key = f"net/bridge/bridge-nf-call-{table}"
                if os.path.exists(f"/proc/sys/{key}"):
                    self._sysctl(self.bridge_ns, key, "0")
            _ip("-n", self.bridge_ns, "link", "set", BRIDGE, "up")
        except BaseException:
            self.close_after_error()
            raise
        return self

    def close_after_error(self) -> None:
        """Tear down after an exception: leftovers are reported on stderr, not raised."""
        self.close(raise_on_leftover=False)

    def close(self, raise_on_leftover: bool = True) -> list[str]:
        """Kill every process the lab started and delete its namespaces (idempotent).

        Returns the namespaces that would not go; with ``raise_on_leftover`` they raise
        LabError instead, else they are reported on stderr. Ctrl-C during the teardown is
        held back until it is done, then raised.
        """
        interrupted: list[int] = []
        old_handler: Any = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            def hold(signum: int, frame: FrameType | None) -> None:
                interrupted.append(signum)
            old_handler = signal.signal(signal.SIGINT, hold)
        try:
            leftovers = self._teardown()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, signal.SIG_DFL if old_handler is None else old_handler)
        if interrupted:
            raise KeyboardInterrupt
        if leftovers:
            message = f"lab teardown left namespaces behind: {leftovers}"
            if raise_on_leftover:
                raise LabError(message)
            print(message, file=sys.stderr)
        return leftovers

    def _teardown(self) -> list[str]:
        self._open = False
        with self._lock:
            procs, self._procs = self._procs, []
        for proc in procs:  # SIGTERM everyone first so the grace periods overlap
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in procs:
            stop_process(proc, grace=1.0)
        # hosts first: deleting them removes the veth pairs from the bridge namespace
        for netns in reversed(self._namespaces):
            _drop_default_statedir(netns)
            _delete_netns(netns)
        leftovers = [ns for ns in self._namespaces if (NETNS_DIR / ns).exists()]
        self._namespaces = leftovers
        return leftovers

    def namespaces(self) -> list[str]:
        """Names of the namespaces this lab currently owns."""
        return list(self._namespaces)

    # building -------------------------------------------------------------

    def _add_netns(self, netns: str) -> None:
        _ip("netns", "add", netns)
        self._namespaces.append(netns)
        _ip("-n", netns, "link", "set", "lo", "up")
        if not self.ipv6:
            # no router solicitations / MLD reports cluttering captures
            for scope in ("all", "default"):
                self._sysctl(netns, f"net/ipv6/conf/{scope}/disable_ipv6", "1")

    @staticmethod
    def _sysctl(netns: str, key: str, value: str) -> None:
        proc = subprocess.run(
            _netns_argv(netns, ["sh", "-c", f"echo {value} > /proc/sys/{key}"]),
            capture_output=True, text=True, timeout=10,
        )
        if proc.returncode != 0:
            raise LabError(f"sysctl {key} in {netns}: {proc.stderr.strip()}")

    def add_host(self, name: str, addr: str, mac: str | None = None,
                 addr6: str | None = None) -> Host:
        """Create host namespace ``<tag>-<name>``: eth0 = ``addr`` (default /24) on the bridge.

        With ``addr6`` (inside 2001:db8::/32, default /64) the host also gets that IPv6
        address, without duplicate address detection, and IPv6 is switched on in its
        namespace whatever the lab's ``ipv6``.
        """
        if not self._open:
            raise LabError("add_host outside the lab's with-block")
        if not _NAME_RE.match(name) or name == "br":
            raise ValueError(f"host name {name!r}: 1-13 chars of [a-z0-9_], not 'br'")
        if name in self.hosts:
            raise ValueError(f"host {name!r} already exists")
        iface = check_test_address(addr)
        if iface.network.prefixlen == 32 and "/" not in addr:
            iface = ipaddress.IPv4Interface(f"{iface.ip}/24")
        iface6 = None
        if addr6 is not None:
            iface6 = check_test_address6(addr6 if "/" in addr6 else f"{addr6}/64")
        with self._build_lock:
            if name in self.hosts:
                raise ValueError(f"host {name!r} already exists")
            host = self._build_host(name, iface, mac, iface6)
            if iface6 is not None:
                host.enable_ipv6()
                host.add_address6(str(iface6))
            return host

    def _build_host(self, name: str, iface: ipaddress.IPv4Interface, mac: str | None,
                    iface6: ipaddress.IPv6Interface | None = None) -> Host:
        netns = f"{self.tag}-{name}"
        self._add_netns(netns)
        host = Host(self, name, netns, iface, iface6)
        # both ends are created directly in their namespaces: nothing touches the root one
        _ip("-n", self.bridge_ns, "link", "add", host.port, "type", "veth",
            "peer", "name", HOST_IF, "netns", netns)
        if mac is not None:
            _ip("-n", netns, "link", "set", HOST_IF, "address", mac)
        _ip("-n", self.bridge_ns, "link", "set", host.port, "master", BRIDGE, "up")
        _ip("-n", netns, "addr", "add", str(iface), "dev", HOST_IF)
        _ip("-n", netns, "link", "set", HOST_IF, "up")
        self.hosts[name] = host
        return host

    def spawn(self, argv: Sequence[str | bytes], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in its own session (Ctrl-C on the terminal does not reach it).

        The lab stops it when it closes.
        """
        if not self._open:
            raise LabError("cannot start processes outside the lab's with-block")
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, start_new_session=True, **kw)
        with self._lock:
            self._procs.append(proc)
        return proc

    def capture_bridge(self, kinds: Iterable[str] = ("carp", "arp"), **kw: Any) -> FrameCapture:
        """A :class:`FrameCapture` on ``br0`` in the bridge namespace: sees the whole segment."""
        return FrameCapture(self.bridge_ns, BRIDGE, kinds=kinds, lab=self, **kw)

    def set_bridge_promiscuous(self, on: bool = True) -> None:
        """Make ``br0`` promiscuous, so that a capture on it also sees the unicast frames
        the bridge forwards from one host to another (else only floods and its own)."""
        _ip("-n", self.bridge_ns, "link", "set", BRIDGE, "promisc", "on" if on else "off")


# --------------------------------------------------------------------------- helper clients


@dataclass(frozen=True)
class CapturedFrame:
    """One captured frame: monotonic receive time, raw bytes, and whether it was sent by us.

    ``wall`` is the kernel's receive stamp (CLOCK_REALTIME, ``SO_TIMESTAMPNS``), to compare
    with tools that stamp on that clock (``ip -ts``, ``ping -D``); ``t`` is when the helper
    read the frame, so ``wall`` is the more exact of the two when the machine is busy.
    """

    t: float
    data: bytes
    outgoing: bool
    wall: float | None = None


@dataclass(frozen=True)
class FloodResult:
    """What a flood did: frames sent, refused sends by errno name, seconds spent."""

    sent: int
    errors: dict[str, int]
    elapsed: float

    @property
    def attempted(self) -> int:
        """Frames handed to the socket, refused ones included."""
        return self.sent + sum(self.errors.values())


class _LineReader:
    """Collects a helper's stdout lines in a thread; the first line must be ``ready``."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        stream: IO[str] | None = self.proc.stdout
        if stream is None:
            self.ready.set()
            return
        for line in stream:
            line = line.rstrip("\n")
            if line == "ready":
                self.ready.set()
                continue
            with self.lock:
                self.lines.append(line)
        self.ready.set()

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.lines)


def _start_helper(lab: Lab | None, argv: Sequence[str | bytes]) -> subprocess.Popen[str]:
    kw: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    if lab is not None:
        proc: subprocess.Popen[str] = lab.spawn(argv, **kw)
        return proc
    return subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)


class FrameCapture(Closing):
    """Records frames seen on one interface inside a namespace, with monotonic timestamps.

    ``kinds`` picks what is kept: "carp" (IPv4 protocol 112), "arp", "icmp", or "all".
    The capture is bounded: it stops by itself after ``max_seconds`` or ``max_count`` frames.
    Use as a context manager; :meth:`frames` may be called while it runs and after.
    """

    def __init__(
        self,
        netns: str,
        iface: str = HOST_IF,
        kinds: Iterable[str] = ("carp", "arp"),
        max_seconds: float = 60.0,
        max_count: int = 10000,
        lab: Lab | None = None,
    ) -> None:
        self.kinds = tuple(kinds)
        bad = [k for k in self.kinds if k not in CAPTURE_KINDS]
        if bad or not self.kinds:
            raise ValueError(f"capture kinds must be among {CAPTURE_KINDS}: {bad}")
        if not (0 < max_seconds <= 3600 and 0 < max_count <= 1_000_000):
            raise ValueError("capture must be bounded (max_seconds <= 3600, max_count <= 1e6)")
        self.netns = netns
        self.iface = iface
        self.max_seconds = max_seconds
        self.max_count = max_count
        self.lab = lab
        self._proc: subprocess.Popen[str] | None = None
        self._reader: _LineReader | None = None

    def __enter__(self) -> FrameCapture:
        self.start()
        return self

    def start(self, ready_timeout: float = 10.0) -> None:
        """Start the helper and wait until its socket is bound."""
        argv = _helper_argv(self.netns, "capture", self.iface, ",".join(self.kinds),
                            repr(self.max_seconds), str(self.max_count))
        self._proc = _start_helper(self.lab, argv)
        self._reader = _LineReader(self._proc)
        if not self._reader.ready.wait(ready_timeout) or self._proc.poll() is not None:
            err = self._stderr()
            self.stop()
            raise LabError(f"frame capture in {self.netns} did not start: {err}")

    def _stderr(self) -> str:
        proc = self._proc
        if proc is None or proc.stderr is None or proc.poll() is None:
            return ""
        return proc.stderr.read().strip()

    def stop(self) -> None:
        """Stop the helper (idempotent); frames captured so far stay available."""
        if self._proc is not None:
            stop_process(self._proc, grace=2.0)
        if self._reader is not None:
            self._reader.thread.join(timeout=5)

    close = stop  # the end of the with-block

    def records(self) -> list[CapturedFrame]:
        """Frames captured so far, oldest first, with their direction."""
        if self._reader is None:
            return []
        result = []
        for line in self._reader.snapshot():
            t, direction, hexdata, *rest = line.split()
            result.append(CapturedFrame(float(t), bytes.fromhex(hexdata), direction == "out",
                                        float(rest[0]) if rest else None))
        return result

    def frames(self) -> list[tuple[float, bytes]]:
        """Frames captured so far as ``(monotonic time, frame bytes)``."""
        return [(r.t, r.data) for r in self.records()]

    def wait_for(self, pred: Callable[[list[tuple[float, bytes]]], bool], timeout: float) -> bool:
        """Wait until ``pred(frames())`` holds, at most ``timeout`` seconds."""
        return wait_until(lambda: pred(self.frames()), timeout, interval=0.05)


class PingWatch:
    """ICMP echo probing from a host, running in the background; reply times collected live.

    Times are ``time.monotonic()`` values: the clock is the same in every namespace.
    """

    def __init__(self, host: Host, target: str, interval_s: float, duration_s: float) -> None:
        check_test_address(target)
        if not (0.001 <= interval_s <= 10 and 0 < duration_s <= 600):
            raise ValueError("ping_watch needs 1 ms <= interval <= 10 s and 0 < duration <= 600 s")
        self.target = target
        self.duration_s = duration_s
        argv = _helper_argv(host.netns, "probe", target, repr(interval_s), repr(duration_s))
        self._proc = _start_helper(host.lab, argv)
        self._reader = _LineReader(self._proc)
        if not self._reader.ready.wait(10) or self._proc.poll() is not None:
            stop_process(self._proc)
            raise LabError(f"ICMP prober in {host.netns} did not start")
        self.started = time.monotonic()
        self.sent = 0

    def replies(self) -> list[float]:
        """Monotonic times of the echo replies received so far."""
        out = []
        for line in self._reader.snapshot():
            fields = line.split()
            if fields[0] == "reply":
                out.append(float(fields[3]))
            elif fields[0] == "sent":
                self.sent = int(fields[1])
        return out

    def wait(self) -> list[float]:
        """Wait for the probing to end (bounded by its duration) and return the reply times."""
        try:
            self._proc.wait(timeout=self.duration_s + 10)
        finally:
            self.stop()
        return self.replies()

    def stop(self) -> None:
        """End the probing now (idempotent); the replies so far stay available."""
        stop_process(self._proc)
        self._reader.thread.join(timeout=5)


_PING_REPLY_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from ([0-9a-fA-F:.]+): icmp_seq=(\d+)")


class SystemPing:
    """iputils ``ping -D`` from a host in the background, its replies collected live.

    Reply times are CLOCK_REALTIME (``-D`` prints ``gettimeofday`` at each reply), the
    clock of :attr:`CapturedFrame.wall`, not the monotonic one of :class:`PingWatch`.
    ``ping`` runs under ``stdbuf -oL`` where there is one, so each reply line arrives at once.
    It is bounded by a count (``duration_s / interval_s`` echoes), not by ``-w``: with a
    deadline iputils ends at the first error, and an address nobody holds yet (or during a
    failover) gives errors.
    """

    def __init__(self, host: Host, target: str, interval_s: float, duration_s: float) -> None:
        ip = ipaddress.ip_address(target)
        if ip.version == 6:
            check_test_address6(target)
        else:
            check_test_address(target)
        if not (0.002 <= interval_s <= 10 and 0 < duration_s <= 600):
            raise ValueError("a ping needs 2 ms <= interval <= 10 s and 0 < duration <= 600 s")
        self.target = ip
        self.duration_s = duration_s
        stdbuf = shutil.which("stdbuf")
        count = max(1, round(duration_s / interval_s))
        argv = [*((stdbuf, "-oL") if stdbuf else ()), "ping", f"-{ip.version}", "-n", "-D",
                "-i", f"{interval_s:g}", "-c", str(count), target]
        self._proc: subprocess.Popen[str] = host.popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = _LineReader(self._proc)
        self.started = time.time()

    def replies(self) -> list[float]:
        """CLOCK_REALTIME times of the echo replies from the target received so far."""
        out = []
        for line in self._reader.snapshot():
            match = _PING_REPLY_RE.match(line)
            if match and ipaddress.ip_address(match.group(2)) == self.target:
                out.append(float(match.group(1)))
        return out

    def output(self) -> list[str]:
        """Everything ping printed so far (for error messages)."""
        return self._reader.snapshot()

    def stop(self) -> list[float]:
        """End the ping now, as at a terminal (SIGINT), and return the reply times."""
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGINT)
                self._proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        stop_process(self._proc)
        self._reader.thread.join(timeout=5)
        return self.replies()


@dataclass(frozen=True)
class AddressEvent:
    """One address added to or deleted from an interface, as ``ip -ts monitor`` saw it."""

    wall: float  # CLOCK_REALTIME, when ``ip`` read the netlink message
    added: bool
    address: str  # without the prefix length
    prefixlen: int


_MONITOR_RE = re.compile(r"^\[([0-9T:.-]+)\] (Deleted )?\d+: \S+\s+inet6? ([0-9a-fA-F:.]+)/(\d+)")


class AddressMonitor:
    """``ip -ts monitor address dev eth0`` in a host's namespace: address changes as the
    kernel announces them, independent of whoever makes them (and of their logs).

    ``ip`` stamps each message with ``gettimeofday`` (CLOCK_REALTIME) in local time; it
    flushes every message, so :meth:`events` is live. It gets a moment to subscribe before
    the constructor returns; start it well before the changes to be seen. Stopped with the
    lab, or earlier with :meth:`stop`.
    """

    SUBSCRIBE_S = 0.3  # ``ip`` prints nothing once subscribed: a pause, then it is listening

    def __init__(self, host: Host) -> None:
        self.host = host
        self._proc: subprocess.Popen[str] = host.popen(
            ["ip", "-ts", "monitor", "address", "dev", host.ifname],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = _LineReader(self._proc)
        time.sleep(self.SUBSCRIBE_S)
        if self._proc.poll() is not None:
            raise LabError(f"ip monitor in {host.netns} ended: {self._reader.snapshot()}")

    def events(self) -> list[AddressEvent]:
        """Every address added or deleted so far, oldest first."""
        out = []
        for line in self._reader.snapshot():
            match = _MONITOR_RE.match(line)
            if match is None:
                continue  # the "valid_lft ..." continuation lines
            wall = dt.datetime.fromisoformat(match.group(1)).timestamp()  # local time
            out.append(AddressEvent(wall, match.group(2) is None,
                                    str(ipaddress.ip_address(match.group(3))),
                                    int(match.group(4))))
        return out

    def all_present_at(self, addresses: Iterable[str], since: float,
                       initially: Iterable[str] = ()) -> float | None:
        """The CLOCK_REALTIME time from which every one of ``addresses`` was on the
        interface, reading the events after ``since`` from the set ``initially`` there;
        None when they never all were."""
        wanted = {str(ipaddress.ip_address(a)) for a in addresses}
        present = {str(ipaddress.ip_address(a)) for a in initially}
        if wanted <= present:
            return since
        for event in self.events():
            if event.wall < since:
                continue
            if event.added:
                present.add(event.address)
            else:
                present.discard(event.address)
            if wanted <= present:
                return event.wall
        return None

    def stop(self) -> None:
        """End the monitor now (idempotent); the events so far stay available."""
        stop_process(self._proc, grace=1.0)
        self._reader.thread.join(timeout=5)
