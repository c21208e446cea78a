"""A small throw-away Ethernet segment of Linux network namespaces, for the demo.

One namespace holds a Linux bridge (``br0``, multicast snooping off so CARP multicast
floods like on a dumb switch); every host is one more namespace whose ``eth0`` is a veth
pair plugged into the bridge. Nothing is created in the root namespace, and only the
documentation ranges 192.0.2.0/24 and 198.51.100.0/24 are accepted as addresses.

Namespace names are ``<prefix><pid>-<6 hex>-<host>``: unique per run, and the creator's pid
tells a leftover of a dead run from a live lab. Every process a :class:`Lab` starts runs in
its own session and is killed, and every namespace it made is deleted, when the ``with``
block ends -- also on an exception or Ctrl-C.

ICMP probing must happen inside the client's namespace, so it runs as a helper process:
this file executed as a script (``python3 lab.py probe TARGET INTERVAL DURATION``). The
module imports only the standard library, which keeps that possible.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = ["ALLOWED_NETWORKS", "Host", "Lab", "LabError", "Prober", "check_address", "largest_gap"]

ALLOWED_NETWORKS = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
)
"""The only networks a lab may use (RFC 5737 documentation ranges)."""

BRIDGE = "br0"
HOST_IF = "eth0"
NETNS_DIR = Path("/run/netns")
_HERE = Path(__file__).resolve()


class LabError(RuntimeError):
    """The lab could not be built as asked."""


def check_address(addr: str) -> ipaddress.IPv4Interface:
    """Parse ``addr`` ("192.0.2.1/24" or "192.0.2.1") and insist it lies in a documentation range."""
    iface = ipaddress.ip_interface(addr)
    if not isinstance(iface, ipaddress.IPv4Interface) or not any(
        iface.network.subnet_of(net) for net in ALLOWED_NETWORKS
    ):
        raise ValueError(f"lab address {addr!r} is outside 192.0.2.0/24 and 198.51.100.0/24")
    return iface


def largest_gap(times: Sequence[float], start: float, end: float) -> float:
    """The longest silence between ``start`` and ``end`` in a series of timestamps."""
    points = [start] + sorted(t for t in times if start <= t <= end) + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _in_netns(netns: str, cmd: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *cmd]


def _stop(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM the process's session, SIGKILL it after ``grace`` seconds, reap it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:  # after the leader is gone, its stragglers in the session still get SIGKILL
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


def _delete_netns(netns: str) -> None:
    """Kill whatever still lives in ``netns`` (daemonized escapees too), then delete it."""
    for _ in range(20):
        pids = [int(p) for p in _ip("netns", "pids", netns, check=False).stdout.split()]
        pids = [p for p in pids if p != os.getpid()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    for _ in range(10):
        _ip("netns", "del", netns, check=False)
        if not (NETNS_DIR / netns).exists():
            return
        time.sleep(0.1)


class Host:
    """One machine on the segment: namespace ``netns``, ``eth0`` plugged into the bridge."""

    def __init__(self, lab: Lab, name: str, netns: str, addr: ipaddress.IPv4Interface) -> None:
        self.lab = lab
        self.name = name
        self.netns = netns
        self.ip = str(addr.ip)
        self.ifname = HOST_IF
        self.port = f"v-{name}"  # its veth end in the bridge namespace

    def run(self, cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` to completion inside the namespace (10 s at most), output captured."""
        return subprocess.run(
            _in_netns(self.netns, cmd), check=check, capture_output=True, text=True, timeout=10
        )

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside the namespace in its own session; the lab stops it at the end."""
        return self.lab.spawn(_in_netns(self.netns, cmd), **kw)

    def unplug(self) -> None:
        """Detach from the bridge: the host keeps carrier but reaches no one (a cut cable upstream)."""
        _ip("-n", self.lab.bridge_ns, "link", "set", self.port, "nomaster")

    def plug(self) -> None:
        """Re-attach to the bridge after :meth:`unplug`."""
        _ip("-n", self.lab.bridge_ns, "link", "set", self.port, "master", BRIDGE)

    def has_address(self, ip: str) -> bool:
        """Whether ``eth0`` carries IPv4 address ``ip``."""
        out = _ip("-n", self.netns, "-o", "-4", "addr", "show", "dev", self.ifname).stdout
        return any(f.split("/")[0] == ip for line in out.splitlines() for f in line.split()[3:4])

    def del_address(self, addr: str) -> None:
        """Remove ``addr`` (default /32) from ``eth0`` if it is there."""
        _ip("-n", self.netns, "addr", "del", str(check_address(addr)), "dev", self.ifname,
            check=False)

    def prober(self, target: str, interval_s: float, duration_s: float) -> Prober:
        """Start pinging ``target`` from this host (see :class:`Prober`)."""
        return Prober(self, target, interval_s, duration_s)


class Lab:
    """A bridge namespace plus host namespaces; a context manager that always cleans up."""

    def __init__(self, prefix: str = "pyd") -> None:
        if not (prefix.isascii() and prefix.isalpha() and prefix.islower() and len(prefix) <= 8):
            raise ValueError("prefix must be 1-8 lower-case letters")
        self.tag = f"{prefix}{os.getpid()}-{secrets.token_hex(3)}"
        self.bridge_ns = f"{self.tag}-br"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._open = False

    def __enter__(self) -> Lab:
        if os.geteuid() != 0:
            raise LabError("network namespaces need root")
        self._open = True
        try:
            self._add_netns(self.bridge_ns)
            _ip("-n", self.bridge_ns, "link", "add", BRIDGE, "type", "bridge",
                "forward_delay", "0", "mcast_snooping", "0")
            _ip("-n", self.bridge_ns, "link", "set", BRIDGE, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> list[str]:
        """Stop every process, delete every namespace; returns the namespaces that would not go.

        Ctrl-C is held back while this runs, so a second Ctrl-C cannot leave debris behind.
        """
        held: list[int] = []
        main = threading.current_thread() is threading.main_thread()
        old: Any = None
        if main:
            def hold(signum: int, frame: FrameType | None) -> None:
                held.append(signum)
            old = signal.signal(signal.SIGINT, hold)
        try:
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
                _stop(proc, grace=1.0)
            for netns in reversed(self._namespaces):  # hosts first, then the bridge
                _delete_netns(netns)
            self._namespaces = [ns for ns in self._namespaces if (NETNS_DIR / ns).exists()]
            return list(self._namespaces)
        finally:
            if main:
                signal.signal(signal.SIGINT, signal.default_int_handler if old is None else old)

    def namespaces(self) -> list[str]:
        """The namespaces this lab still owns."""
        return list(self._namespaces)

    def _add_netns(self, netns: str) -> None:
        _ip("netns", "add", netns)
        self._namespaces.append(netns)
        _ip("-n", netns, "link", "set", "lo", "up")
        # no IPv6 router solicitations or MLD reports on the segment
        script = "for s in all default; do echo 1 > /proc/sys/net/ipv6/conf/$s/disable_ipv6; done"
        subprocess.run(_in_netns(netns, ["sh", "-c", script]), capture_output=True, timeout=10)

    def add_host(self, name: str, addr: str) -> Host:
        """Create host ``name`` (namespace ``<tag>-<name>``) with ``eth0`` = ``addr`` (default /24)."""
        if not self._open:
            raise LabError("add_host outside the lab's with-block")
        if not (name.isalnum() and name.islower() and len(name) <= 12) or name in self.hosts:
            raise ValueError(f"bad or duplicate host name {name!r}")
        iface = check_address(addr if "/" in addr else f"{addr}/24")
        netns = f"{self.tag}-{name}"
        self._add_netns(netns)
        host = Host(self, name, netns, iface)
        # both ends are created directly in their namespaces: nothing touches the root one
        _ip("-n", self.bridge_ns, "link", "add", host.port, "type", "veth",
            "peer", "name", HOST_IF, "netns", netns)
        _ip("-n", self.bridge_ns, "link", "set", host.port, "master", BRIDGE, "up")
        _ip("-n", netns, "addr", "add", str(iface), "dev", HOST_IF)
        _ip("-n", netns, "link", "set", HOST_IF, "up")
        self.hosts[name] = host
        return host

    def spawn(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in its own session (Ctrl-C on the terminal does not reach it)."""
        if not self._open:
            raise LabError("cannot start processes outside the lab's with-block")
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, start_new_session=True, **kw)
        with self._lock:
            self._procs.append(proc)
        return proc


class Prober:
    """ICMP echo requests from a host every ``interval_s``; reply times collected live.

    Times are ``time.monotonic()`` values: the clock is the same in every namespace.
    """

    def __init__(self, host: Host, target: str, interval_s: float, duration_s: float) -> None:
        check_address(target)
        if not (0.001 <= interval_s <= 10 and 0 < duration_s <= 600):
            raise ValueError("probing needs 1 ms <= interval <= 10 s and 0 < duration <= 600 s")
        self._replies: list[float] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        cmd = [sys.executable, "-I", "-u", str(_HERE), "probe", target, repr(interval_s),
               repr(duration_s)]
        self._proc = host.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._proc.poll() is not None:
            raise LabError(f"ICMP prober in {host.netns} did not start")

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith("ready"):
                self._ready.set()
            elif line.startswith("reply "):
                with self._lock:
                    self._replies.append(float(line.split()[1]))
        self._ready.set()

    def replies(self) -> list[float]:
        """Monotonic times of the echo replies received so far."""
        with self._lock:
            return list(self._replies)

    def stop(self) -> None:
        """End the probing early (idempotent)."""
        _stop(self._proc, grace=1.0)
        self._thread.join(timeout=5)


# ----------------------------------------------------------------------------- helper mode


def _checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _probe(target: str, interval_s: float, duration_s: float) -> None:
    """Helper: ping ``target``, print ``reply <monotonic time>`` for every echo reply."""
    import select
    import socket

    check_address(target)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    print("ready", flush=True)
    end = time.monotonic() + duration_s
    next_send = time.monotonic()
    seq = 0
    while (now := time.monotonic()) < end:
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            body = ident.to_bytes(2, "big") + seq.to_bytes(2, "big") + b"pyucarp-lab!"
            packet = bytes([8, 0]) + _checksum(b"\x08\x00\0\0" + body).to_bytes(2, "big") + body
            try:
                sock.sendto(packet, (target, 0))
            except OSError:
                pass  # no route or no neighbour yet: that silence is what we measure
            next_send = max(next_send + interval_s, now)  # never burst to catch up
        readable, _, _ = select.select([sock], [], [], max(0.0, min(next_send, end) - now))
        if readable:
            packet, (src, _port) = sock.recvfrom(2048)
            icmp = packet[(packet[0] & 0x0F) * 4:]
            if src == target and len(icmp) >= 8 and icmp[0] == 0 and icmp[4:6] == body[:2]:
                print(f"reply {time.monotonic():.6f}", flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's Ctrl-C is the parent's business
    if len(sys.argv) != 5 or sys.argv[1] != "probe":
        sys.exit("usage: lab.py probe TARGET INTERVAL DURATION")
    _probe(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
