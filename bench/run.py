#!/usr/bin/env python3
"""pyucarp beside the C ucarp (/usr/sbin/ucarp): the same scenarios, measured the same way.

``python3 bench/run.py [--group classic|fleet|subsecond|beyond ...] [--quick] [--reps N]
[--out DIR] [--only pyucarp|ucarp]`` (root). Every measurement runs in a fresh namespace lab
(``pyucarp.lab.netlab``, daemons started with ``pyucarp.lab.daemons``) on 192.0.2.0/24
(198.51.100.0/24 and 2001:db8::/64 where said), with a capture on the bridge recording every
CARP frame. The labs' files (consoles, state files) live on a tmpfs, as /run/pyucarp does
in production (see :func:`tmpfs_dir`). Four groups of scenarios, all by default (about 32
minutes; ``--group`` picks some, ``--quick`` shortens the soaks and runs the beyond group
once unless ``--reps`` is given):

classic -- nodes ``alpha`` (advskew 0) and ``beta`` (advskew 20) share the VIP 192.0.2.100
(vhid 7, advbase 1, the shipped vip-up/vip-down scripts), a ``client`` pings the VIP every
10 ms (about 7 minutes with 3 repetitions):

* failover: once alpha is the settled MASTER, wait for its next advert on the bridge and
  unplug alpha from the bridge right then. Client outage = the longest gap in the
  client's echo replies around the cut; takeover = beta's first advert minus alpha's last
  one (the protocol bound is 3 x 1 + 20/256 = 3.078 s after that last advert).
* graceful (-z) and demotion (SIGUSR2): SIGTERM or SIGUSR2 to the settled MASTER; the
  client outage as above. For SIGUSR2 alpha runs without -P, so that after its 3 s of
  quiet it does not take the address straight back: what is measured is the hand-off.
* dual master at start: both nodes started together with -P. From the bridge capture, the
  time both are MASTER is from the later of the two nodes' first adverts to the last advert
  of the node that gives up (a node's "one more advert" is its last act as MASTER). This
  reads the wire, so it works the same for both implementations whatever they log; the
  state-change log lines give a cross-check in results.json.
* slow up script: alpha's upscript sleeps 8 s before adding the VIP; both nodes start
  together. "Two masters" = beta advertised at all (it never should: alpha is preferred
  and became MASTER first).
* resources: one MASTER daemon on alpha and one BACKUP on beta. After they settle, CPU
  time (the sum of /proc/PID/task/*/schedstat, nanoseconds) over 20 s, and VmRSS / Pss at
  the end, per daemon.

fleet -- one process for every address (about 7 minutes):

* N = 1, 10, 50, 200 virtual hosts (vhids 1..N, advbase 1): alpha runs N MASTERs (advskew
  0, -P), beta N BACKUPs (advskew 20); pyucarp as ONE ``pyucarp run`` per host reading N
  interface files, the C ucarp as N processes per host. Per host: RSS and PSS (summed over
  the C processes) and CPU over 20 s, as for resources.
* reload: 50 virtual hosts. pyucarp: one interface file removed (vhid 50) and one added
  (vhid 51, which beta does not run), then SIGHUP to alpha's ``pyucarp run``; the C
  ucarp: what an admin does there, SIGTERM to vhid 50's daemon (-z) and a new daemon for
  vhid 51. Measured: state changes of the other 49 vhids on both hosts (their state files'
  state/since/transitions before and after, and the log), the largest gap between alpha's
  adverts of each of the 49 from 1 s before the reload to 5 s after, and how long until
  beta holds vhid 50's address and alpha holds vhid 51's.
* single: the one-instance ``ucarp`` command's RSS and PSS once MASTER, under
  ``python3 -m pyucarp`` and under ``python3 -S`` (no site module: none of the .pth files
  of this interpreter's site-packages, which is how a distribution's python3 without them
  runs it), beside a bare interpreter (``python3 [-S] -c 'import time; time.sleep(...)'``)
  under the same two conditions, and the C ucarp.

subsecond -- advbase 0 (about 16 minutes; ``--quick`` about 7):

* failover: master ``-b 0 -k 13``, backup ``-b 0 -k 26``; the client pings every 5 ms
  (2 ms when k < 8); the master is unplugged right after one of its adverts, as in
  classic failover (pyucarp's bound: 3 x 26/256 = 0.305 s after the last advert).
* cpu: the same pair, and ``-k 3`` / ``-k 6`` (85 adverts/s), CPU per daemon over 10 s on
  a quiet segment; the backup's takeovers in that window (a spurious one is a MASTER
  switch of the backup while the master advertises).
* soak: all implementations at once, one pair each (``-k 13`` / ``-k 26``), in one lab for
  10 minutes (--quick: 2): two CPU hogs per core (``sh -c 'while :; do :; done'`` in the
  lab's namespaces) and 10 % of the CARP frames dropped at the switch (nftables in the
  bridge namespace: a bridge-family forward rule ``ip protocol 112 numgen random mod 100 <
  10 drop``; the capture on the bridge device still sees every frame sent). Takeovers =
  the backup's switches to MASTER in the window (its log; the bridge's backup adverts and,
  for pyucarp, the state file's transitions as cross-checks).
* limit: the same load for 60 s (--quick: 30) per step, k descending 8, 5, 3, 2, 1
  (backup 2k; k = 13 is the soak), stopping for an implementation at its first takeover;
  its limit is the last k with none, and the failover outage at that pair is measured as
  above.
* ``pyucarp --realtime`` (SCHED_RR and mlockall) is soaked and laddered beside plain
  pyucarp when ``python3 -m pyucarp --help`` lists the option.

beyond -- what the C ucarp cannot do, pyucarp alone (about 2 minutes with 3 repetitions;
advbase 1, alpha advskew 0, beta advskew 20, -z, as classic failover). In each, once alpha
is the settled MASTER, right after one of its adverts alpha's daemon is killed (SIGKILL)
and alpha unplugged from the bridge at once: a crashed host. (kill -9 alone would leave the
address on alpha, which would go on answering the client: no outage to measure.)

* unicast: ``--peer`` each other, IPv4, the shipped scripts; the client pings the VIP every
  10 ms. Client outage and takeover as in classic failover (bound 3.078 s). The bridge is
  promiscuous, so its capture sees the unicast adverts forwarded between two ports too;
  every CARP frame of the run is checked: not one may go to 224.0.0.18 (IP or MAC).
* ipv6: 2001:db8::1 and ::2 (-s), the address 2001:db8::100 (-a, ``--manage-vip=64``, no
  scripts); the client (2001:db8::10) runs iputils ``ping -6 -i 0.005`` (asked for 0.01,
  it really sends every 16 ms). Client outage as
  above; from the bridge capture, the delay from beta's first advert to its first
  unsolicited Neighbour Advertisement for the address.
* managed: ten addresses on one virtual host (``-a`` x10: 192.0.2.100 and 198.51.100.10-18,
  ``--manage-vip``, no scripts): from beta's first advert (bridge capture) to the ten on
  beta's eth0, as ``ip -ts monitor address`` in beta's namespace reports them -- whatever
  pyucarp logs. Both stamps are CLOCK_REALTIME: the kernel's receive stamp of the advert
  on the bridge (``SO_TIMESTAMPNS``), ``ip``'s ``gettimeofday`` when it reads the netlink
  message (which can only make the delay look longer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv6Address
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this work tree's pyucarp, installed or not

from pyucarp.lab.daemons import (  # noqa: E402
    CUCARP,
    VIP_DOWN,
    VIP_UP,
    Daemon,
    cpu_ns,
    memory_kib,
    pyucarp_command,
    pyucarp_env,
    start_pyucarp,
    start_ucarp,
)
from pyucarp.lab.netlab import (  # noqa: E402
    FrameCapture,
    Host,
    Lab,
    PingWatch,
    largest_gap,
    stop_process,
    wait_until,
)

VIP = "192.0.2.100"
VHID = 7
PASSWORD = "benchpw"
ALPHA_IP, BETA_IP, CLIENT_IP = "192.0.2.1", "192.0.2.2", "192.0.2.10"
BETA_SKEW = 20
BOUND = 3 * 1 + BETA_SKEW / 256  # master-down time of beta at advbase 1, deadratio 3
IMPLS = ("pyucarp", "ucarp")
RT = "pyucarp-rt"  # pyucarp with --realtime: a variant of the subsecond group only
GROUPS = ("classic", "fleet", "subsecond", "beyond")
SCALE_NS = (1,)
SLOW_SCRIPT_S = 8

FLEET_NS = (1, 10, 50, 200)
RELOAD_N = 50
TARGET_N = 50  # the fleet targets are set at this N

SUB_K = 13  # advbase 0: the master's advskew; the backup's is twice it
SUB_FAST_K = 3  # 256/3 = 85 adverts/s, the nearest k to 100/s (k 2 gives 128/s)
SUB_BOUND = 3 * 2 * SUB_K / 256  # pyucarp's master-down time of the -k 26 backup
LADDER = (13, 8, 5, 3, 2, 1)
LOSS_PCT = 10
SUB_SAMPLE_S = 10.0
SETTLE_S = 5.0  # a pyucarp pair settles within 1.5 s at advbase 0; the C ucarp's never does

# beyond: pyucarp alone
ALPHA6, BETA6, CLIENT6 = "2001:db8::1", "2001:db8::2", "2001:db8::10"
VIP6 = "2001:db8::100"
TEN_VIPS = (VIP, *(f"198.51.100.{10 + i}" for i in range(9)))
CARP_GROUP = bytes([224, 0, 0, 18])
CARP_GROUP_MAC = bytes.fromhex("01005e000012")
BEYOND_QUICK_REPS = 1  # --quick without --reps
# iputils ping asked for -i 0.01 sends every 16 ms here (measured: 0.008 gives 8 ms, 0.005
# gives 5 ms): 5 ms it is, the figure the outage is read to
PING6_INTERVAL = 0.005
C_BEYOND = "n/a (ucarp: no unicast/IPv6/managed addresses)"


@dataclass(frozen=True)
class Durations:
    """How long the sampling windows and soaks last (``--quick`` shortens the soaks)."""

    sample_s: float = 20.0
    soak_s: float = 600.0
    step_s: float = 60.0


FULL = Durations()
QUICK = Durations(sample_s=10.0, soak_s=120.0, step_s=30.0)

# pyucarp targets: every figure must stay below its limit (failover: excess over BOUND)
TARGETS = {
    "failover_excess_s": 0.030,
    "graceful_outage_s": 0.100,
    "usr2_outage_s": 0.100,
    "dual_master_s": 0.020,
    "rss_mib": 20.0,
    "cpu_pct": 0.1,
    "fleet_rss_mib": 40.0,  # per host at N = 50, one process
    "fleet_rss_share": 0.2,  # of the C processes' sum at N = 50
    "fleet_cpu_share": 1.0,  # of the C processes' sum at N = 50
    "reload_state_changes": 0,
    "reload_gap_s": 1.05,
    "single_rss_mib": 13.0,  # the ucarp command under python3 -S
    "sub_outage_s": 0.35,
    "soak_takeovers": 0,
    "group_frames": 0,  # unicast: CARP frames to 224.0.0.18
    "na_delay_ms": 10.0,  # IPv6: first unsolicited NA after the first advert
    "ten_up_ms": 50.0,  # --manage-vip: ten addresses up after the first advert
}


def log(msg: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ frames


@dataclass(frozen=True)
class Ad:
    """One CARP advert (over IPv4 or IPv6) seen on the bridge; ``t`` monotonic (when the
    capture read it), ``wall`` the kernel's receive stamp (CLOCK_REALTIME)."""

    t: float
    src: str
    vhid: int
    advbase: int
    advskew: int
    wall: float = 0.0

    @property
    def leave(self) -> bool:
        """pyucarp's leave advert (advbase 255, advskew 255)."""
        return self.advbase == 255 and self.advskew == 255


def adverts(cap: FrameCapture) -> list[Ad]:
    """The CARP adverts captured so far (IPv4, and IPv6 when the capture keeps them)."""
    out = []
    for r in cap.records():
        f, wall = r.data, r.wall or 0.0
        if len(f) >= 14 + 20 + 36 and f[12:14] == b"\x08\x00" and f[23] == 112:
            out.append(Ad(r.t, ".".join(str(b) for b in f[26:30]), f[35], f[39], f[36], wall))
        elif len(f) >= 14 + 40 + 36 and f[12:14] == b"\x86\xdd" and f[20] == 112:
            # CARP's 36 bytes right after the IPv6 header: vhid, advskew, ..., advbase
            out.append(Ad(r.t, str(IPv6Address(f[22:38])), f[55], f[59], f[56], wall))
    return out


@dataclass(frozen=True)
class NeighbourAdvert:
    """One IPv6 Neighbour Advertisement seen on the bridge."""

    t: float
    wall: float  # the kernel's receive stamp, as Ad.wall
    eth_src: bytes
    target: str
    solicited: bool


def neighbour_adverts(cap: FrameCapture) -> list[NeighbourAdvert]:
    """The Neighbour Advertisements captured so far (read by offsets: no extension header)."""
    out = []
    for r in cap.records():
        f = r.data
        if len(f) >= 78 and f[12:14] == b"\x86\xdd" and f[20] == 58 and f[54] == 136:
            out.append(NeighbourAdvert(r.t, r.wall or 0.0, f[6:12], str(IPv6Address(f[62:78])),
                                       bool(f[58] & 0x40)))
    return out


def of(ads: Sequence[Ad], src: str, after: float = 0.0, leave: bool = False,
       vhid: int | None = None) -> list[Ad]:
    """Adverts from ``src`` (of ``vhid``) after ``after``, leave adverts only if asked."""
    return [a for a in ads if a.src == src and a.t > after and (leave or not a.leave)
            and (vhid is None or a.vhid == vhid)]


def episodes(times: Sequence[float], gap: float) -> int:
    """How many bursts the sorted ``times`` form, a burst ending at a silence over ``gap``."""
    return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > gap)


# ------------------------------------------------------------------------------ logs

_SWITCH_RE = re.compile(
    r"^(\S+): \[WARNING\] (?:\[(\S+)\] )?Switching to state: (\w+)", re.M)


def switches(daemon: Daemon, state: str | None = None, since: float = 0.0,
             until: float = float("inf"), instance: str | None = None) -> list[float]:
    """Wall-clock times of a daemon's "Switching to state" lines (to ``state``, of
    ``instance``, between ``since`` and ``until``); ``pyucarp run`` prefixes ``[eth0-7]``."""
    out = []
    for m in _SWITCH_RE.finditer(daemon.log()):
        t = dt.datetime.fromisoformat(m.group(1)).timestamp()
        if ((state is None or m.group(3) == state) and since <= t <= until
                and (instance is None or m.group(2) == instance)):
            out.append(t)
    return out


# ------------------------------------------------------------------------------ load


def start_hogs(lab: Lab, hosts: Sequence[Host], seconds: float) -> list[Any]:
    """Two busy loops per core, in the lab's host namespaces, each bounded by ``timeout``.

    The lab kills them when it closes (they are its processes, in its namespaces); the
    callers also stop them, by their own pids, as soon as the window ends.
    """
    procs = []
    for i in range(2 * (os.cpu_count() or 1)):
        host = hosts[i % len(hosts)]
        procs.append(host.popen(["timeout", str(int(seconds) + 60), "sh", "-c",
                                 "while :; do :; done"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def stop_hogs(procs: Sequence[Any]) -> None:
    """End the busy loops started by :func:`start_hogs` (their process groups only)."""
    for proc in procs:
        stop_process(proc, grace=0.5)


NFT_TABLE = "pyucarp_bench"


def _nft(lab: Lab, args: Sequence[str], rules: str | None = None) -> str:
    """``nft`` inside the lab's bridge namespace (never the root namespace's firewall)."""
    proc = subprocess.run(["ip", "netns", "exec", lab.bridge_ns, "nft", *args], input=rules,
                          capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)} in {lab.bridge_ns}: {proc.stderr.strip()}")
    return proc.stdout


def switch_loss(lab: Lab, percent: int) -> None:
    """Drop ``percent`` % of the CARP frames the lab's switch forwards, each port's copy
    on its own chance; a second counter counts every CARP frame forwarded."""
    _nft(lab, ["-f", "-"], f"""table bridge {NFT_TABLE} {{
    chain forward {{
        type filter hook forward priority 0; policy accept;
        ip protocol 112 counter
        ip protocol 112 numgen random mod 100 < {percent} counter drop
    }}
}}
""")


def loss_counters(lab: Lab) -> tuple[int, int]:
    """(CARP frames forwarded, of which dropped) since :func:`switch_loss`."""
    out = _nft(lab, ["list", "table", "bridge", NFT_TABLE])
    counts = [int(n) for n in re.findall(r"counter packets (\d+)", out)]
    return counts[0], counts[1]


# ------------------------------------------------------------------------------ the lab


class Segment:
    """alpha, beta and client on one bridge, with a bridge capture; daemons started on demand."""

    def __init__(self, lab: Lab, impl: str, workdir: Path, cap: FrameCapture) -> None:
        self.lab = lab
        self.impl = impl
        self.workdir = workdir
        self.cap = cap
        self.alpha = lab.hosts["alpha"]
        self.beta = lab.hosts["beta"]
        self.client = lab.hosts["client"]
        self.daemons: dict[str, Daemon] = {}
        self.ping: PingWatch | None = None
        self.cap_started = time.monotonic()

    def argv(self, host: Host, vhid: int, vip: str, skew: int, extra: Sequence[str],
             up: Path | None) -> list[str]:
        """ucarp's command line, the same for both implementations."""
        cmd = pyucarp_command() if self.impl == "pyucarp" else [CUCARP]
        return [*cmd, "-i", "eth0", "-s", host.ip, "-v", str(vhid), "-p", PASSWORD, "-a", vip,
                "-b", "1", "-k", str(skew), "-u", str(up or VIP_UP), "-d", str(VIP_DOWN),
                "-f", "none", *extra]

    def start(self, key: str, host: Host, skew: int, extra: Sequence[str] = (),
              vhid: int = VHID, vip: str = VIP, up: Path | None = None) -> Daemon:
        """Start one daemon; its console goes to ``<workdir>/<key>/console.log``."""
        daemon = Daemon(host, self.argv(host, vhid, vip, skew, extra, up), self.workdir / key,
                        impl="py" if self.impl == "pyucarp" else "c")
        self.daemons[key] = daemon
        return daemon

    def start_ping(self, seconds: float = 40.0) -> PingWatch:
        """The client pings the VIP every 10 ms."""
        self.ping = self.client.start_ping_watch(VIP, 0.01, seconds)
        return self.ping

    def replies(self) -> list[float]:
        """The client's echo reply times so far."""
        return [] if self.ping is None else self.ping.replies()

    def settled(self, master: str, other: str, hold: float = 2.2, timeout: float = 20.0) -> bool:
        """Wait until ``master`` alone has advertised for ``hold`` s and the client is served.

        ``hold`` covers two of the master's adverts and outlasts a startup race between the
        two nodes, so whatever is measured next starts from a steady state.
        """
        def ok() -> bool:
            now = time.monotonic()
            recent = [a for a in adverts(self.cap) if a.t > now - hold]
            replies = self.replies()
            return (now - self.cap_started > hold
                    and len([a for a in recent if a.src == master]) >= 2
                    and not any(a.src == other for a in recent)
                    and bool(replies) and largest_gap(replies, now - 1.0, now) < 0.05)
        return wait_until(ok, timeout, interval=0.05)

    def log_states(self, key: str) -> list[tuple[float, str]]:
        """(wall-clock time, state) for each 'Switching to state' line of a daemon's log."""
        out = []
        text = self.daemons[key].log()
        for m in re.finditer(r"^(\S+): \[WARNING\] Switching to state: (\w+)", text, re.M):
            out.append((dt.datetime.fromisoformat(m.group(1)).timestamp(), m.group(2)))
        return out


@contextmanager
def segment(impl: str, workdir: Path) -> Iterator[Segment]:
    """A fresh lab with alpha, beta, client and a capture on the bridge."""
    with Lab(prefix="pyb") as lab:
        lab.add_host("alpha", f"{ALPHA_IP}/24")
        lab.add_host("beta", f"{BETA_IP}/24")
        lab.add_host("client", f"{CLIENT_IP}/24")
        with lab.capture_bridge(kinds=("carp",), max_seconds=120, max_count=100000) as cap:
            yield Segment(lab, impl, workdir, cap)


def wait_new_advert(cap: FrameCapture, src: str, timeout: float = 2.5,
                    vhid: int | None = None) -> Ad | None:
    """Poll the capture (1 ms) until ``src`` sends its next advert (of ``vhid``); return it."""
    before = len(of(adverts(cap), src, vhid=vhid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ads = of(adverts(cap), src, vhid=vhid)
        if len(ads) > before:
            return ads[-1]
        time.sleep(0.001)
    return None


def wait_served(cap: FrameCapture, replies: Callable[[], list[float]], new_master: str,
                since: float, timeout: float, count: int = 20) -> float | None:
    """Wait for ``new_master``'s first advert after ``since`` and ``count`` replies after it."""
    def ok() -> bool:
        ads = of(adverts(cap), new_master, since)
        return bool(ads) and len([r for r in replies() if r > ads[0].t]) >= count
    if not wait_until(ok, timeout, interval=0.02):
        return None
    return time.monotonic()


def wait_recovered(seg: Segment, new_master: str, since: float, timeout: float) -> float | None:
    """Wait for ``new_master``'s first advert after ``since`` and steady replies after it."""
    return wait_served(seg.cap, seg.replies, new_master, since, timeout)


# ------------------------------------------------------------------------------ classic


def scenario_failover(seg: Segment) -> dict[str, Any]:
    """Unplug the MASTER right after one of its adverts; beta must take over."""
    seg.start_ping()
    seg.start("alpha", seg.alpha, 0, ["-z"])
    seg.start("beta", seg.beta, BETA_SKEW, ["-z"])
    if not seg.settled(ALPHA_IP, BETA_IP):
        raise RuntimeError("alpha never became the only MASTER")
    ad = wait_new_advert(seg.cap, ALPHA_IP)
    if ad is None:
        raise RuntimeError("no advert from alpha")
    seg.alpha.unplug()
    cut = time.monotonic()
    end = wait_recovered(seg, BETA_IP, cut, BOUND + 6)
    if end is None:
        raise RuntimeError("beta did not take over")
    beta_first = of(adverts(seg.cap), BETA_IP, cut)[0].t
    outage = largest_gap(seg.replies(), cut - 0.3, end)
    return {"outage_s": outage, "excess_s": outage - BOUND, "takeover_s": beta_first - ad.t,
            "cut_after_advert_s": cut - ad.t}


def _handoff(seg: Segment, signum: int, alpha_extra: Sequence[str]) -> dict[str, Any]:
    seg.start_ping()
    seg.start("alpha", seg.alpha, 0, alpha_extra)
    seg.start("beta", seg.beta, BETA_SKEW, ["-z"])
    if not seg.settled(ALPHA_IP, BETA_IP):
        raise RuntimeError("alpha never became the only MASTER")
    seg.daemons["alpha"].send_signal(signum)
    sent = time.monotonic()
    end = wait_recovered(seg, BETA_IP, sent, BOUND + 6)
    if end is None:
        raise RuntimeError("beta did not take over")
    ads = adverts(seg.cap)
    beta_first = of(ads, BETA_IP, sent)[0].t
    leave = [a for a in of(ads, ALPHA_IP, sent, leave=True) if a.leave]
    return {"outage_s": largest_gap(seg.replies(), sent - 0.3, end),
            "takeover_s": beta_first - sent, "leave_advert": bool(leave)}


def scenario_graceful(seg: Segment) -> dict[str, Any]:
    """SIGTERM the MASTER running with -z."""
    return _handoff(seg, signal.SIGTERM, ["-z"])


def scenario_usr2(seg: Segment) -> dict[str, Any]:
    """SIGUSR2 the MASTER (demotion); without -P so it does not take the VIP straight back."""
    return _handoff(seg, signal.SIGUSR2, ["-z"])


def scenario_dual(seg: Segment, beta_skew: int = BETA_SKEW) -> dict[str, Any]:
    """Both nodes started together with -P: how long are both MASTER?"""
    t0 = time.monotonic()
    wall0 = time.time()
    seg.start("alpha", seg.alpha, 0, ["-P", "-z"])
    seg.start("beta", seg.beta, beta_skew, ["-P", "-z"])
    # both masters can only happen around the first master-down expiry (~3 s), plus ucarp's
    # capture batching; 8 s covers it, and the last 1.5 s shows who won
    time.sleep(max(0.0, t0 + 8.0 - time.monotonic()))
    ads = adverts(seg.cap)
    late = [a for a in ads if a.t > t0 + 6.5]
    winners = {a.src for a in late}
    if len(winners) != 1:
        raise RuntimeError(f"no single MASTER at the end: {sorted(winners)}")
    winner = winners.pop()
    loser = BETA_IP if winner == ALPHA_IP else ALPHA_IP
    w, lo = of(ads, winner), of(ads, loser)
    dual = max(0.0, lo[-1].t - max(w[0].t, lo[0].t)) if lo else 0.0
    return {"dual_master_s": dual, "winner": "alpha" if winner == ALPHA_IP else "beta",
            "loser_adverts": len(lo), "dual_master_log_s": _log_overlap(seg, wall0)}


def _log_overlap(seg: Segment, wall0: float) -> float | None:
    """Cross-check from the logs: overlap of the two nodes' MASTER periods (wall clock)."""
    periods = []
    for key in ("alpha", "beta"):
        spans, start = [], None
        for t, state in seg.log_states(key):
            if state == "MASTER" and start is None:
                start = t
            elif state != "MASTER" and start is not None:
                spans.append((start, t))
                start = None
        if start is not None:
            spans.append((start, time.time()))
        periods.append(spans)
    if not all(periods):
        return 0.0 if any(periods) else None
    return sum(max(0.0, min(a1, b1) - max(a0, b0))
               for a0, a1 in periods[0] for b0, b1 in periods[1])


def scenario_dual_tie(seg: Segment) -> dict[str, Any]:
    """Both nodes started together with -P and the same advskew: the address breaks the tie."""
    return scenario_dual(seg, beta_skew=0)


def scenario_slow_script(seg: Segment) -> dict[str, Any]:
    """alpha's upscript takes 8 s: does beta become MASTER too?"""
    slow = seg.workdir / "slow-up.sh"
    slow.write_text(f'#!/bin/sh\nsleep {SLOW_SCRIPT_S}\nexec "{VIP_UP}" "$@"\n')
    slow.chmod(0o755)
    t0 = time.monotonic()
    seg.start("alpha", seg.alpha, 0, ["-z"], up=slow)
    seg.start("beta", seg.beta, BETA_SKEW, ["-z"])
    time.sleep(max(0.0, t0 + 3.2 + SLOW_SCRIPT_S + 1.5 - time.monotonic()))
    ads = adverts(seg.cap)
    beta, alpha = of(ads, BETA_IP), of(ads, ALPHA_IP)
    span = (beta[-1].t - beta[0].t + 1.0) if beta else 0.0
    return {"two_masters": bool(beta), "beta_master_s": span,
            "alpha_first_advert_s": (alpha[0].t - t0) if alpha else None}


# ------------------------------------------------------------------------------ resources


def scenario_resources(seg: Segment, n: int, sample_s: float) -> dict[str, Any]:
    """N masters on alpha and N backups on beta; CPU and memory per daemon over ``sample_s``."""
    # the masters first, and with -P: under the load of N starting daemons a backup may
    # still win a race to MASTER, and without -P a preferred node would then stay BACKUP
    for i in range(1, n + 1):
        seg.start(f"a{i}", seg.alpha, 0, ["-P"], vhid=i, vip=f"192.0.2.{100 + i}")
    time.sleep(1.0)
    for i in range(1, n + 1):
        seg.start(f"b{i}", seg.beta, BETA_SKEW, [], vhid=i, vip=f"192.0.2.{100 + i}")

    def settled() -> bool:
        now = time.monotonic()
        recent = [a for a in adverts(seg.cap) if a.t > now - 1.5]
        return ({a.vhid for a in recent if a.src == ALPHA_IP} == set(range(1, n + 1))
                and not any(a.src == BETA_IP for a in recent) and now - seg.cap_started > 5)
    if not wait_until(settled, 40, interval=0.2):
        raise RuntimeError("the masters did not settle")
    time.sleep(1.0)  # let the last up scripts finish
    pids = {k: d.pid for k, d in seg.daemons.items()}
    before = {k: cpu_ns(pid) for k, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(sample_s)
    elapsed = time.monotonic() - t0
    after = {k: cpu_ns(pid) for k, pid in pids.items()}
    mem = {k: memory_kib(pid) for k, pid in pids.items()}
    out: dict[str, Any] = {"n": n, "seconds": elapsed}
    for role, prefix in (("master", "a"), ("backup", "b")):
        keys = [k for k in pids if k.startswith(prefix)]
        cpu = [(after[k] - before[k]) / 1e9 / elapsed * 100 for k in keys]
        out[role] = {
            "cpu_pct_mean": statistics.mean(cpu), "cpu_pct_max": max(cpu),
            "rss_mib_mean": statistics.mean(mem[k][0] for k in keys) / 1024,
            "pss_mib_mean": statistics.mean(mem[k][1] for k in keys) / 1024,
        }
    return out


# ------------------------------------------------------------------------------ fleet


def fleet_vip(vhid: int) -> str:
    """The address of virtual host ``vhid`` in the fleet scenarios (.21 to .220)."""
    return f"192.0.2.{20 + vhid}"


def write_interface_file(confdir: Path, host: Host, vhid: int, options: str) -> Path:
    """One file as an admin writes it for /etc/init.d/ucarp (no netmask: a /32 VIP, as the
    C ucarp's scripts get without the init script's environment)."""
    path = confdir / f"ucarp{vhid:03d}"
    path.write_text(f"INTERFACE=eth0\nINSTANCE_ID={vhid}\nPASSWORD='{PASSWORD}'\n"
                    f"VIRTUAL_ADDRESS={fleet_vip(vhid)}\nSOURCE_ADDRESS={host.ip}\n"
                    f'OPTIONS="{options}"\n')
    path.chmod(0o600)
    return path


def start_run(host: Host, workdir: Path, vhids: Sequence[int], options: str) -> Daemon:
    """One ``pyucarp run`` on ``host`` for the interface files of ``vhids``."""
    confdir = workdir / "interface"
    confdir.mkdir(parents=True)
    for v in vhids:
        write_interface_file(confdir, host, v, options)
    defaults = workdir / "default-ucarp"
    defaults.write_text(f"UPSCRIPT={VIP_UP}\nDOWNSCRIPT={VIP_DOWN}\n"
                        f"UCARP_RUNDIR={workdir / 'rundir'}\n")
    state = workdir / "state"
    return start_pyucarp(host, workdir, ["run", "--config-dir", str(confdir), "--defaults",
                                         str(defaults), "--statedir", str(state), "-f", "none"],
                         name="run", statedir=state)


def start_cucarp(host: Host, workdir: Path, vhid: int, skew: int,
                 extra: Sequence[str]) -> Daemon:
    """One C ucarp process for virtual host ``vhid`` on ``host``."""
    argv = [CUCARP, "-i", "eth0", "-s", host.ip, "-v", str(vhid), "-p", PASSWORD,
            "-a", fleet_vip(vhid), "-b", "1", "-k", str(skew), "-u", str(VIP_UP),
            "-d", str(VIP_DOWN), "-f", "none", *extra]
    return Daemon(host, argv, workdir / f"v{vhid}", impl="c")


@dataclass
class Fleet:
    """alpha (the MASTERs) and beta (the BACKUPs) running N virtual hosts each."""

    lab: Lab
    impl: str
    workdir: Path
    cap: FrameCapture
    alpha: Host
    beta: Host
    daemons: dict[str, dict[int, Daemon]]  # host name -> vhid -> its daemon (pyucarp: one)
    started: float

    def start(self, vhids: Sequence[int], master_extra: Sequence[str] = ("-P",),
              backup_extra: Sequence[str] = ()) -> None:
        """The masters first; a second later the backups (as the resources scenario does)."""
        for host, skew, extra in ((self.alpha, 0, master_extra),
                                  (self.beta, BETA_SKEW, backup_extra)):
            work = self.workdir / host.name
            if self.impl == "pyucarp":
                run = start_run(host, work, vhids, " ".join([*extra, "-k", str(skew)]))
                self.daemons[host.name] = dict.fromkeys(vhids, run)
            else:
                self.daemons[host.name] = {v: start_cucarp(host, work, v, skew, extra)
                                           for v in vhids}
            if host is self.alpha:
                time.sleep(1.0)

    def processes(self, host: Host) -> list[Daemon]:
        """The distinct processes running on ``host``."""
        return list({id(d): d for d in self.daemons[host.name].values()}.values())

    def settled(self, vhids: Sequence[int], hold: float = 1.5) -> bool:
        """alpha advertised every vhid, beta none, in the last ``hold`` s."""
        now = time.monotonic()
        recent = [a for a in adverts(self.cap) if a.t > now - hold]
        return (now - self.started > 5
                and {a.vhid for a in recent if a.src == ALPHA_IP} >= set(vhids)
                and not any(a.src == BETA_IP for a in recent))

    def wait_settled(self, vhids: Sequence[int]) -> None:
        """Bounded: 30 s plus 0.2 s per virtual host."""
        if not wait_until(lambda: self.settled(vhids), 30 + 0.2 * len(vhids), interval=0.25):
            dead = [d.name for h in (self.alpha, self.beta) for d in self.processes(h)
                    if not d.alive()]
            raise RuntimeError(f"the {len(vhids)} masters did not settle (dead: {dead[:5]})")


@contextmanager
def fleet_lab(impl: str, workdir: Path, seconds: float = 300) -> Iterator[Fleet]:
    """A fresh lab with alpha and beta and a capture on the bridge."""
    with Lab(prefix="pyb") as lab:
        alpha = lab.add_host("alpha", f"{ALPHA_IP}/24")
        beta = lab.add_host("beta", f"{BETA_IP}/24")
        with lab.capture_bridge(kinds=("carp",), max_seconds=seconds,
                                max_count=1_000_000) as cap:
            yield Fleet(lab, impl, workdir, cap, alpha, beta, {}, time.monotonic())


def scenario_fleet(impl: str, workdir: Path, n: int, sample_s: float) -> dict[str, Any]:
    """N virtual hosts per host: one ``pyucarp run`` per host, or N C ucarp processes."""
    vhids = range(1, n + 1)
    with fleet_lab(impl, workdir) as fleet:
        fleet.start(vhids)
        fleet.wait_settled(vhids)
        settle_s = time.monotonic() - fleet.started
        time.sleep(1.0)  # let the last up scripts finish
        procs = {h.name: fleet.processes(h) for h in (fleet.alpha, fleet.beta)}
        before = {k: [d.cpu_ns() for d in ds] for k, ds in procs.items()}
        t0 = time.monotonic()
        time.sleep(sample_s)
        elapsed = time.monotonic() - t0
        after = {k: [d.cpu_ns() for d in ds] for k, ds in procs.items()}
        mem = {k: [d.memory_kib() for d in ds] for k, ds in procs.items()}
        beta_ads = len(of(adverts(fleet.cap), BETA_IP, t0))
    out: dict[str, Any] = {"n": n, "seconds": elapsed, "settle_s": settle_s,
                           "backup_adverts_in_sample": beta_ads}
    for role, host in (("master", "alpha"), ("backup", "beta")):
        out[role] = {
            "processes": len(procs[host]),
            "cpu_pct": sum(a - b for a, b in zip(after[host], before[host], strict=True))
            / 1e9 / elapsed * 100,
            "rss_mib": sum(m[0] for m in mem[host]) / 1024,
            "pss_mib": sum(m[1] for m in mem[host]) / 1024,
        }
    return out


def _instance_states(run: Daemon, vhids: Sequence[int]) -> dict[int, tuple[Any, ...] | None]:
    """(state, since, transitions) from each instance's state file."""
    out: dict[int, tuple[Any, ...] | None] = {}
    for v in vhids:
        doc = run.statefile(v)
        out[v] = None if doc is None else (doc["state"], doc["since"], doc["transitions"])
    return out


def _changed(before: tuple[Any, ...], after: tuple[Any, ...]) -> bool:
    """A state change between two (state, since, transitions) readings of a state file.

    Every state change bumps ``transitions``. ``since`` is not compared: pyucarp derives it
    from the monotonic clock at each rewrite, and it moves by milliseconds (seen: up to
    49 ms during a reload) without any state change; its largest move is recorded apart.
    """
    return bool(before[0] != after[0] or before[2] != after[2])


def scenario_reload(impl: str, workdir: Path) -> dict[str, Any]:
    """50 virtual hosts; vhid 50 removed and vhid 51 added on alpha at once.

    pyucarp: files changed, then SIGHUP to alpha's ``pyucarp run``. The C ucarp: SIGTERM
    to vhid 50's daemon (-z: it runs its downscript) and a new daemon for vhid 51.
    """
    n = RELOAD_N
    vhids = range(1, n + 1)
    others = range(1, n)
    gone, new = n, n + 1
    with fleet_lab(impl, workdir) as fleet:
        fleet.start(vhids, master_extra=("-P", "-z"), backup_extra=("-z",))
        fleet.wait_settled(vhids)
        time.sleep(2.0)
        hosts = (fleet.alpha, fleet.beta)
        if impl == "pyucarp":
            runs = {h.name: fleet.daemons[h.name][1] for h in hosts}
            states_before = {k: _instance_states(r, others) for k, r in runs.items()}
        wall0 = time.time()
        t_hup = time.monotonic()
        if impl == "pyucarp":
            confdir = fleet.workdir / "alpha" / "interface"
            (confdir / f"ucarp{gone:03d}").unlink()
            write_interface_file(confdir, fleet.alpha, new, "-P -z -k 0")
            runs["alpha"].send_signal(signal.SIGHUP)
        else:
            fleet.daemons["alpha"][gone].send_signal(signal.SIGTERM)
            fleet.daemons["alpha"][new] = start_cucarp(fleet.alpha, fleet.workdir / "alpha",
                                                       new, 0, ("-P", "-z"))
        # nothing is polled meanwhile (every `ip` call costs CPU the daemons would miss):
        # the capture shows when each side took its address over, the hosts are asked once
        time.sleep(max(0.0, t_hup + 5.0 - time.monotonic()))
        t_end = t_hup + 5.0

        def seen() -> bool:
            ads = adverts(fleet.cap)
            return bool(of(ads, BETA_IP, t_hup, vhid=gone) and of(ads, ALPHA_IP, t_hup, vhid=new))
        wait_until(seen, 7.0, interval=0.5)
        ads = adverts(fleet.cap)
        gaps = {v: largest_gap([a.t for a in of(ads, ALPHA_IP, vhid=v)], t_hup - 1.0, t_end)
                for v in others}
        beta_gone = of(ads, BETA_IP, t_hup, vhid=gone)
        alpha_new = of(ads, ALPHA_IP, t_hup, vhid=new)
        addresses_moved = (fleet.beta.has_address(fleet_vip(gone))
                           and not fleet.alpha.has_address(fleet_vip(gone))
                           and fleet.alpha.has_address(fleet_vip(new)))
        changed_files = since_drift = None
        if impl == "pyucarp":
            states_after = {k: _instance_states(r, others) for k, r in runs.items()}
            pairs = [(states_before[k][v], states_after[k][v]) for k in states_before
                     for v in others]
            changed_files = sum(1 for b, a in pairs if a is None or b is None or _changed(b, a))
            since_drift = max((abs(a[1] - b[1]) for b, a in pairs if a and b), default=None)
            log_changes = sum(len(switches(runs[h.name], since=wall0, instance=f"eth0-{v}"))
                              for h in hosts for v in others)
            reloaded = re.findall(r"Reloaded: .*", runs["alpha"].log())
        else:
            log_changes = sum(len(switches(fleet.daemons[h.name][v], since=wall0))
                              for h in hosts for v in others)
            reloaded = []
    return {
        "state_changes": log_changes if changed_files is None else max(log_changes,
                                                                      changed_files),
        "state_changes_log": log_changes, "state_files_changed": changed_files,
        "since_drift_s": since_drift,
        "gap_max_s": max(gaps.values()), "gap_vhid": max(gaps, key=lambda v: gaps[v]),
        "removed_backup_master_s": beta_gone[0].t - t_hup if beta_gone else None,
        "added_master_s": alpha_new[0].t - t_hup if alpha_new else None,
        "addresses_moved": addresses_moved,
        "reload_line": reloaded[-1] if reloaded else None,
    }


def scenario_single(workdir: Path, impls: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One-instance daemons (MASTER, no peer) and bare interpreters on one host: RSS, PSS."""
    with Lab(prefix="pyb") as lab:
        alpha = lab.add_host("alpha", f"{ALPHA_IP}/24")
        with lab.capture_bridge(kinds=("carp",), max_seconds=120) as cap:
            plain_env = pyucarp_env()
            bare_s_env = pyucarp_env({"PYTHONPATH": f"{REPO}:{site.getsitepackages()[0]}"})
            daemons: dict[str, Daemon] = {}
            vhids = {"plain": 1, "no_site": 2, "ucarp": 3}
            for key, flags in (("plain", ()), ("no_site", ("-S",))):
                if "pyucarp" not in impls:
                    break
                argv = [*pyucarp_command(flags), "-i", "eth0", "-s", alpha.ip, "-v",
                        str(vhids[key]), "-p", PASSWORD, "-a", fleet_vip(vhids[key]),
                        "-u", str(VIP_UP), "-d", str(VIP_DOWN), "-f", "none", "-z",
                        f"--statedir={workdir / key / 'state'}"]
                env = {"PYTHONPATH": bare_s_env["PYTHONPATH"]} if flags else None
                daemons[key] = Daemon(alpha, argv, workdir / key, impl="py", env=env)
            if "ucarp" in impls:
                daemons["ucarp"] = start_cucarp(alpha, workdir, vhids["ucarp"], 0, ("-z",))
            bare = {}
            if "pyucarp" in impls:
                for key, opts, env in (("bare_plain", [], plain_env),
                                       ("bare_no_site", ["-S"], bare_s_env)):
                    bare[key] = alpha.popen([sys.executable, *opts, "-c",
                                             "import time; time.sleep(120)"],
                                            env=env, cwd=REPO)
            want = {vhids[k] for k in daemons}
            if not wait_until(lambda: {a.vhid for a in of(adverts(cap), ALPHA_IP)} >= want,
                              15, interval=0.2):
                raise RuntimeError("not every daemon became MASTER")
            time.sleep(5.0)  # steady: several adverts and state file refreshes later
            mem = {k: d.memory_kib() for k, d in daemons.items()}
            mem.update({k: memory_kib(p.pid) for k, p in bare.items()})
    out: dict[str, dict[str, Any]] = {}
    if "pyucarp" in impls:
        out["pyucarp"] = {f"{k}_{w}_mib": mem[k][i] / 1024
                          for k in ("plain", "no_site", "bare_plain", "bare_no_site")
                          for i, w in enumerate(("rss", "pss"))}
    if "ucarp" in impls:
        out["ucarp"] = {"rss_mib": mem["ucarp"][0] / 1024, "pss_mib": mem["ucarp"][1] / 1024}
    return out


# ------------------------------------------------------------------------------ subsecond

# variant -> (master host, backup host, the master's last octet, vhid) in the soak labs
SUB_LAYOUT = {
    "pyucarp": ("pya", "pyb", 1, 1),
    "ucarp": ("ca", "cb", 3, 2),
    RT: ("rta", "rtb", 5, 3),
}


@dataclass(frozen=True)
class Pair:
    """A master (-b 0 -k K -P -z) and its backup (-b 0 -k 2K -z) of one implementation."""

    variant: str
    master: Daemon
    backup: Daemon
    vhid: int
    k: int

    @property
    def mip(self) -> str:
        """The master's address."""
        return self.master.host.ip

    @property
    def bip(self) -> str:
        """The backup's address."""
        return self.backup.host.ip


def realtime_available() -> bool:
    """Whether ``python3 -m pyucarp --help`` lists ``--realtime``."""
    done = subprocess.run([*pyucarp_command(), "--help"], capture_output=True, text=True,
                          env=pyucarp_env(), cwd=REPO, timeout=30)
    return "--realtime" in done.stdout + done.stderr


def sub_daemon(variant: str, host: Host, directory: Path, vhid: int, vip: str, k: int,
               extra: Sequence[str]) -> Daemon:
    """One advbase 0 daemon: the C ucarp, pyucarp, or pyucarp with --realtime."""
    cmd = [CUCARP] if variant == "ucarp" else pyucarp_command()
    argv = [*cmd, "-i", "eth0", "-s", host.ip, "-v", str(vhid), "-p", PASSWORD, "-a", vip,
            "-b", "0", "-k", str(k), "-u", str(VIP_UP), "-d", str(VIP_DOWN), "-f", "none",
            *extra]
    if variant == "ucarp":
        return Daemon(host, argv, directory, impl="c")
    state = directory / "state"
    argv.append(f"--statedir={state}")
    if variant == RT:
        argv.append("--realtime")
    return Daemon(host, argv, directory, impl="py", statedir=state)


def start_pair(variant: str, master: Host, backup: Host, workdir: Path, vhid: int, vip: str,
               k: int) -> Pair:
    """The master first (-P: a start-up race cannot leave it BACKUP), then the backup."""
    m = sub_daemon(variant, master, workdir / f"{variant}-master", vhid, vip, k, ["-P", "-z"])
    time.sleep(0.3)
    b = sub_daemon(variant, backup, workdir / f"{variant}-backup", vhid, vip, 2 * k, ["-z"])
    return Pair(variant, m, b, vhid, k)


def pair_settled(ads: Sequence[Ad], pair: Pair, started: float, hold: float = 1.0) -> bool:
    """The master alone advertised (at least twice) in the last ``hold`` s, the backup
    having run (since ``started``) for at least that long."""
    now = time.monotonic()
    recent = [a for a in ads if a.t > now - hold and a.vhid == pair.vhid]
    return (now - started > hold and len([a for a in recent if a.src == pair.mip]) >= 2
            and not any(a.src == pair.bip for a in recent))


def scenario_sub_failover(variant: str, workdir: Path, k: int) -> dict[str, Any]:
    """advbase 0: unplug the master right after one of its adverts; the client's outage.

    The C ucarp's backup never settles at advbase 0 (it takes over about once a second on
    a quiet segment): it is then cut after SETTLE_S all the same, and ``settled`` says so.
    """
    ping_s = 0.005 if k >= 8 else 0.002
    with Lab(prefix="pyb") as lab:
        alpha = lab.add_host("alpha", f"{ALPHA_IP}/24")
        beta = lab.add_host("beta", f"{BETA_IP}/24")
        client = lab.add_host("client", f"{CLIENT_IP}/24")
        with lab.capture_bridge(kinds=("carp",), max_seconds=120, max_count=200000) as cap:
            ping = client.start_ping_watch(VIP, ping_s, 60)
            pair = start_pair(variant, alpha, beta, workdir, VHID, VIP, k)
            started = time.monotonic()

            def served() -> bool:
                now = time.monotonic()
                replies = ping.replies()
                return bool(replies) and largest_gap(replies, now - 0.5, now) < 0.05

            settled = wait_until(lambda: pair_settled(adverts(cap), pair, started)
                                 and served(), SETTLE_S, interval=0.05)
            if not settled and not wait_until(served, 3.0, interval=0.05):
                raise RuntimeError("the client is not served")
            flaps = len(switches(pair.backup, "MASTER"))
            ad = wait_new_advert(cap, ALPHA_IP, 1.0, vhid=VHID)
            if ad is None:
                raise RuntimeError("no advert from the master")
            alpha.unplug()
            cut = time.monotonic()
            end = wait_served(cap, ping.replies, BETA_IP, cut, 5.0)
            if end is None:
                raise RuntimeError("the backup did not take over")
            first = of(adverts(cap), BETA_IP, cut)[0].t
            outage = largest_gap(ping.replies(), cut - 0.1, end)
    return {"k": k, "settled": settled, "outage_s": outage, "takeover_s": first - ad.t,
            "cut_after_advert_s": cut - ad.t, "backup_takeovers_before_cut": flaps,
            "ping_interval_s": ping_s}


def scenario_sub_cpu(variant: str, workdir: Path, k: int) -> dict[str, Any]:
    """advbase 0 on a quiet segment: CPU of master and backup, spurious takeovers."""
    with Lab(prefix="pyb") as lab:
        alpha = lab.add_host("alpha", f"{ALPHA_IP}/24")
        beta = lab.add_host("beta", f"{BETA_IP}/24")
        with lab.capture_bridge(kinds=("carp",), max_seconds=120, max_count=200000) as cap:
            pair = start_pair(variant, alpha, beta, workdir, VHID, VIP, k)
            started = time.monotonic()
            settled = wait_until(lambda: pair_settled(adverts(cap), pair, started), SETTLE_S,
                                 interval=0.05)
            time.sleep(1.0)
            before = (pair.master.cpu_ns(), pair.backup.cpu_ns())
            wall0, t0 = time.time(), time.monotonic()
            time.sleep(SUB_SAMPLE_S)
            elapsed = time.monotonic() - t0
            after = (pair.master.cpu_ns(), pair.backup.cpu_ns())
            sent = [a for a in of(adverts(cap), ALPHA_IP, t0, vhid=VHID) if a.t <= t0 + elapsed]
            takeovers = len(switches(pair.backup, "MASTER", wall0, wall0 + elapsed))
    return {"k": k, "settled": settled, "seconds": elapsed,
            "adverts_per_s": len(sent) / elapsed,
            "master_cpu_pct": (after[0] - before[0]) / 1e9 / elapsed * 100,
            "backup_cpu_pct": (after[1] - before[1]) / 1e9 / elapsed * 100,
            "backup_takeovers": takeovers, "takeovers_per_min": takeovers / elapsed * 60}


def _transitions(pairs: dict[str, Pair]) -> dict[str, int | None]:
    """The backups' state changes so far, from pyucarp's state files (None: the C ucarp)."""
    out: dict[str, int | None] = {}
    for v, p in pairs.items():
        doc = p.backup.statefile(p.vhid) if p.backup.statedir is not None else None
        out[v] = None if doc is None else doc.get("transitions")
    return out


def scenario_soak(workdir: Path, variants: Sequence[str], k: int,
                  seconds: float) -> dict[str, dict[str, Any]]:
    """One pair per variant in one lab, then CPU hogs and CARP loss for ``seconds``."""
    with Lab(prefix="pyb") as lab:
        hosts = []
        for v in variants:
            mname, bname, octet, _vhid = SUB_LAYOUT[v]
            hosts += [lab.add_host(mname, f"192.0.2.{octet}/24"),
                      lab.add_host(bname, f"192.0.2.{octet + 1}/24")]
        with lab.capture_bridge(kinds=("carp",), max_seconds=seconds + 300,
                                max_count=1_000_000) as cap:
            pairs = {}
            for i, v in enumerate(variants):
                vhid = SUB_LAYOUT[v][3]
                pairs[v] = start_pair(v, hosts[2 * i], hosts[2 * i + 1], workdir / f"k{k}",
                                      vhid, f"192.0.2.{100 + vhid}", k)
            started = time.monotonic()
            ours = [p for p in pairs.values() if p.variant != "ucarp"]
            if not wait_until(lambda: all(pair_settled(adverts(cap), p, started) for p in ours),
                              15, interval=0.1):
                raise RuntimeError("a pyucarp pair did not settle")
            time.sleep(1.0)
            hogs = start_hogs(lab, hosts, seconds)
            try:
                switch_loss(lab, LOSS_PCT)
                wall0, t0 = time.time(), time.monotonic()
                trans0 = _transitions(pairs)
                report = t0 + 60
                while time.monotonic() < t0 + seconds:
                    time.sleep(max(0.0, min(1.0, t0 + seconds - time.monotonic())))
                    if time.monotonic() >= report:
                        report += 60
                        so_far = ", ".join(f"{v} {len(switches(p.backup, 'MASTER', wall0))}"
                                           for v, p in pairs.items())
                        log(f"      k={k}: {time.monotonic() - t0:.0f}/{seconds:.0f} s, "
                            f"takeovers so far: {so_far}")
                wall1, t1 = time.time(), time.monotonic()
            finally:
                stop_hogs(hogs)
            forwarded, dropped = loss_counters(lab)
            time.sleep(0.5)
            trans1 = _transitions(pairs)
            alive = {v: p.master.alive() and p.backup.alive() for v, p in pairs.items()}
            ads = adverts(cap)
    out: dict[str, dict[str, Any]] = {}
    for v, p in pairs.items():
        sent = [a.t for a in of(ads, p.mip, t0, vhid=p.vhid) if a.t <= t1]
        claims = [a.t for a in of(ads, p.bip, t0, vhid=p.vhid) if a.t <= t1]
        backup_interval = 2 * k / 256
        t_0, t_1 = trans0[v], trans1[v]
        out[v] = {
            "k": k, "seconds": t1 - t0, "hogs": len(hogs),
            "takeovers": len(switches(p.backup, "MASTER", wall0, wall1)),
            "backup_adverts": len(claims),
            "backup_advert_bursts": episodes(claims, 2 * backup_interval),
            "backup_master_share": len(claims) * backup_interval / (t1 - t0),
            "backup_transitions": (t_1 - t_0) if t_0 is not None and t_1 is not None else None,
            "master_demotions": len(switches(p.master, "BACKUP", wall0, wall1)),
            "master_adverts_per_s": len(sent) / (t1 - t0),
            "master_gap_max_s": largest_gap(sent, t0, t1),
            "alive": alive[v],
            "loss_pct": 100 * dropped / forwarded if forwarded else None,
            "carp_forwarded": forwarded, "carp_dropped": dropped,
        }
    return out


# ------------------------------------------------------------------------------ beyond


def crash_alpha(seg: Segment) -> tuple[Ad, float, float, float]:
    """Right after one of alpha's adverts, :func:`host_loss` on alpha; then wait for beta
    to serve the client: (that advert, the cut's monotonic and wall time, service back)."""
    ad = wait_new_advert(seg.cap, ALPHA_IP)
    if ad is None:
        raise RuntimeError("no advert from alpha")
    cut, cut_wall = host_loss(seg.daemons["alpha"], seg.alpha)
    end = wait_recovered(seg, BETA_IP, cut, BOUND + 6)
    if end is None:
        raise RuntimeError("beta did not take over")
    return ad, cut, cut_wall, end


def host_loss(daemon: Daemon, host: Host) -> tuple[float, float]:
    """A crashed master: its daemon SIGKILLed and, at once, its host off the segment;
    (monotonic, CLOCK_REALTIME) time of the cut.

    kill -9 alone leaves the address on the host (no downscript ran; ``--manage-vip``
    clears its leftovers only at the next start): the host would keep answering the client,
    and there would be no outage to measure.
    """
    daemon.send_signal(signal.SIGKILL)  # not reaped yet: the unplug follows at once
    host.unplug()
    cut = time.monotonic(), time.time()
    daemon.wait_exit(5)
    return cut


def start_py(host: Host, workdir: Path, key: str, src: str, skew: int, vips: Sequence[str],
             extra: Sequence[str]) -> Daemon:
    """pyucarp with ucarp's command line, advbase 1, state files in ``workdir/key/state``."""
    args = ["-i", "eth0", "-s", src, "-v", str(VHID), "-p", PASSWORD,
            *(tok for vip in vips for tok in ("-a", vip)),
            "-b", "1", "-k", str(skew), "-f", "none", *extra]
    return start_ucarp(host, workdir, args, name=key)


def scenario_unicast(workdir: Path) -> dict[str, Any]:
    """``--peer`` each other: the client's outage at a host loss, and no frame to the group."""
    with segment("pyucarp", workdir) as seg:
        seg.lab.set_bridge_promiscuous()  # the capture sees alpha's adverts to beta's port
        seg.start_ping()
        for key, host, skew, peer in (("alpha", seg.alpha, 0, BETA_IP),
                                      ("beta", seg.beta, BETA_SKEW, ALPHA_IP)):
            seg.start(key, host, skew, ["-z", f"--peer={peer}",
                                        f"--statedir={workdir / key / 'state'}"])
        if not seg.settled(ALPHA_IP, BETA_IP):
            raise RuntimeError("alpha never became the only MASTER")
        ad, cut, _, end = crash_alpha(seg)
        beta_first = of(adverts(seg.cap), BETA_IP, cut)[0]
        outage = largest_gap(seg.replies(), cut - 0.3, end)
        carp = [r.data for r in seg.cap.records()
                if len(r.data) >= 34 and r.data[12:14] == b"\x08\x00" and r.data[23] == 112]
    to_group = [f for f in carp if f[30:34] == CARP_GROUP or f[0:6] == CARP_GROUP_MAC]
    pairs = sorted({(".".join(map(str, f[26:30])), ".".join(map(str, f[30:34]))) for f in carp})
    # the takeover from the kernel's stamps: the capture may read one frame late, not both
    return {"outage_s": outage, "excess_s": outage - BOUND,
            "takeover_s": beta_first.wall - ad.wall,
            "cut_after_advert_s": cut - ad.t, "carp_frames": len(carp),
            "group_frames": len(to_group), "src_dst": [f"{a}>{b}" for a, b in pairs]}


@contextmanager
def segment6(workdir: Path) -> Iterator[tuple[Lab, dict[str, Host], FrameCapture]]:
    """alpha, beta and client with 2001:db8::1, ::2, ::10 (/64) beside their IPv4 address,
    and a capture on the bridge keeping IPv6 CARP and neighbour discovery."""
    with Lab(prefix="pyb") as lab:
        hosts = {name: lab.add_host(name, f"{ip4}/24", addr6=f"{ip6}/64")
                 for name, ip4, ip6 in (("alpha", ALPHA_IP, ALPHA6), ("beta", BETA_IP, BETA6),
                                        ("client", CLIENT_IP, CLIENT6))}
        with lab.capture_bridge(kinds=("carp6", "nd"), max_seconds=120,
                                max_count=100000) as cap:
            yield lab, hosts, cap


def scenario_ipv6(workdir: Path) -> dict[str, Any]:
    """An IPv6 pair with ``--manage-vip=64``: the client's outage (``ping -6``) at a host
    loss, and the new master's first unsolicited Neighbour Advertisement after its first
    advert (both the kernel's receive stamps on the bridge). The ping stamps its replies
    on CLOCK_REALTIME, so the times compared with them here are the capture's ``wall``."""
    with segment6(workdir) as (_lab, hosts, cap):
        alpha, beta, client = hosts["alpha"], hosts["beta"], hosts["client"]
        ping = client.start_system_ping(VIP6, PING6_INTERVAL, 40)
        started = time.time()
        nodes = {key: start_py(host, workdir, key, src, skew, [VIP6], ["-z", "--manage-vip=64"])
                 for key, host, src, skew in (("alpha", alpha, ALPHA6, 0),
                                              ("beta", beta, BETA6, BETA_SKEW))}

        def settled(hold: float = 2.2) -> bool:
            now = time.time()
            recent = [a for a in adverts(cap) if a.wall > now - hold]
            replies = ping.replies()
            return (now - started > hold and len([a for a in recent if a.src == ALPHA6]) >= 2
                    and not any(a.src == BETA6 for a in recent)
                    and bool(replies) and largest_gap(replies, now - 1.0, now) < 0.05)
        if not wait_until(settled, 20, interval=0.05):
            raise RuntimeError(f"alpha never became the only MASTER ({ping.output()[-2:]})")
        before = ping.replies()  # parsing them takes ms: not between advert and cut
        ad = wait_new_advert(cap, ALPHA6)
        if ad is None:
            raise RuntimeError("no advert from alpha")
        cut, cut_wall = host_loss(nodes["alpha"], alpha)

        def served() -> bool:
            ads = of(adverts(cap), BETA6, cut)
            return bool(ads) and len([r for r in ping.replies() if r > ads[0].wall]) >= 20
        if not wait_until(served, BOUND + 6, interval=0.02):
            raise RuntimeError("beta did not take over")
        end_wall = time.time()
        beta_mac = bytes.fromhex(beta.mac().replace(":", ""))

        def announced() -> list[NeighbourAdvert]:
            return [n for n in neighbour_adverts(cap) if n.t > cut and n.eth_src == beta_mac
                    and not n.solicited and IPv6Address(n.target) == IPv6Address(VIP6)]
        wait_until(lambda: bool(announced()), 2.0)
        first = of(adverts(cap), BETA6, cut)[0]
        nas = announced()
        replies = ping.stop()
    if not nas:
        raise RuntimeError("no unsolicited Neighbour Advertisement from beta")
    outage = largest_gap(replies, cut_wall - 0.3, end_wall)
    back = [r for r in replies if r > cut_wall + 1.0]  # the first reply from beta
    return {"outage_s": outage, "excess_s": outage - BOUND, "takeover_s": first.wall - ad.wall,
            "cut_after_advert_s": cut - ad.t, "na_delay_ms": (nas[0].wall - first.wall) * 1000,
            "unsolicited_nas": len(nas),
            "reply_after_na_ms": (back[0] - nas[0].wall) * 1000 if back else None,
            "ping_interval_s": statistics.median(b - a for a, b in zip(
                before[-101:], before[-100:], strict=False)) if len(before) > 1 else None}


def scenario_managed_ten(workdir: Path) -> dict[str, Any]:
    """Ten addresses, ``--manage-vip``, no scripts: from the new master's first advert to
    all ten on its interface, as the kernel announces them (``ip -ts monitor address``).

    Clock: CLOCK_REALTIME on both sides, the capture's ``wall`` stamp and ip's
    ``gettimeofday`` one.
    """
    with segment("pyucarp", workdir) as seg:
        monitor = seg.beta.monitor_addresses()  # listening long before the takeover
        seg.start_ping()  # the first address: seg.settled wants the client served
        for key, host, skew in (("alpha", seg.alpha, 0), ("beta", seg.beta, BETA_SKEW)):
            seg.daemons[key] = start_py(host, workdir, key, host.ip, skew, TEN_VIPS,
                                        ["-z", "--manage-vip"])
        if not seg.settled(ALPHA_IP, BETA_IP):
            raise RuntimeError("alpha never became the only MASTER")
        before = [a for a in seg.beta.addresses() if a in TEN_VIPS]  # none, on a BACKUP
        ad, cut, cut_wall, end = crash_alpha(seg)
        wait_until(lambda: monitor.all_present_at(TEN_VIPS, cut_wall, before) is not None, 2.0)
        up_at = monitor.all_present_at(TEN_VIPS, cut_wall, before)
        first = of(adverts(seg.cap), BETA_IP, cut)[0]
        on_beta = len([a for a in seg.beta.addresses() if a in TEN_VIPS])
        outage = largest_gap(seg.replies(), cut - 0.3, end)
        added = len([e for e in monitor.events() if e.added and e.wall >= cut_wall])
    if up_at is None:
        raise RuntimeError(f"ip monitor never saw the ten addresses ({on_beta} on beta)")
    return {"all_up_ms": (up_at - first.wall) * 1000, "on_beta_after": on_beta,
            "present_before": len(before), "added_events": added,
            "takeover_s": first.wall - ad.wall, "outage_s": outage}


BEYOND: dict[str, Callable[[Path], dict[str, Any]]] = {
    "unicast_failover": scenario_unicast,
    "ipv6_failover": scenario_ipv6,
    "managed_ten": scenario_managed_ten,
}


# ------------------------------------------------------------------------------ the run


SCENARIOS: dict[str, Callable[[Segment], dict[str, Any]]] = {
    "failover": scenario_failover,
    "graceful": scenario_graceful,
    "usr2": scenario_usr2,
    "dual": scenario_dual,
    "dual_tie": scenario_dual_tie,
    "slow_script": scenario_slow_script,
}


class Runner:
    """Runs measurements one by one: a fresh work directory each, failures recorded, not
    raised (one failed repetition must not end the run), progress on stderr."""

    def __init__(self, impls: Sequence[str], workroot: Path, durations: Durations) -> None:
        self.impls = list(impls)
        self.workroot = workroot
        self.durations = durations
        self.results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.count = 0
        self.started = time.monotonic()

    def add(self, impl: str, scenario: str, res: dict[str, Any]) -> None:
        """Record one result."""
        self.results.setdefault(impl, {}).setdefault(scenario, []).append(res)

    def attempt(self, label: str, fn: Callable[[Path], Any]) -> Any:
        """``fn(workdir)``; ``{"error": ...}`` when it raised."""
        self.count += 1
        workdir = self.workroot / f"{self.count:03d}-{re.sub(r'[^a-z0-9]+', '-', label.lower())}"
        workdir.mkdir()
        t0 = time.monotonic()
        try:
            res = fn(workdir)
        except Exception as exc:
            res = {"error": f"{type(exc).__name__}: {exc}"}
        wall = round(time.monotonic() - t0, 1)
        if isinstance(res, dict):
            res.setdefault("wall_s", wall)
        minutes = (time.monotonic() - self.started) / 60
        log(f"[{self.count:3} {minutes:5.1f} min] {label}: {_brief(res)}")
        return res

    # ---------------------------------------------------------------- classic

    def classic(self, reps: int) -> None:
        """Every classic scenario, ``reps`` times, implementations interleaved; resources."""
        for name, fn in SCENARIOS.items():
            for rep in range(reps):
                for impl in self.impls:
                    def one(workdir: Path, impl: str = impl,
                            fn: Callable[[Segment], dict[str, Any]] = fn) -> dict[str, Any]:
                        with segment(impl, workdir) as seg:
                            return fn(seg)
                    self.add(impl, name, self.attempt(f"{name} {impl} rep {rep + 1}", one))
        for n in SCALE_NS:
            for impl in self.impls:
                def res(workdir: Path, impl: str = impl, n: int = n) -> dict[str, Any]:
                    with segment(impl, workdir) as seg:
                        return scenario_resources(seg, n, self.durations.sample_s)
                out = self.attempt(f"resources {impl} N={n}", res)
                out.setdefault("n", n)
                self.add(impl, "resources", out)

    # ---------------------------------------------------------------- fleet

    def fleet(self, reps: int) -> None:
        """N virtual hosts per host (``reps`` times at the targets' N), the reload
        (``reps`` times), the single-instance memory."""
        for n in FLEET_NS:
            for rep in range(reps if n == TARGET_N else 1):
                for impl in self.impls:
                    out = self.attempt(f"fleet {impl} N={n} rep {rep + 1}",
                                       partial(scenario_fleet, impl, n=n,
                                               sample_s=self.durations.sample_s))
                    out.setdefault("n", n)
                    self.add(impl, "fleet", out)
        for rep in range(reps):
            for impl in self.impls:
                self.add(impl, "reload", self.attempt(f"reload {impl} rep {rep + 1}",
                                                      partial(scenario_reload, impl)))
        single = self.attempt("single-instance memory",
                              partial(scenario_single, impls=self.impls))
        for impl in self.impls:
            self.add(impl, "single", single.get(impl, single))

    # ---------------------------------------------------------------- subsecond

    def subsecond(self, reps: int, realtime: bool) -> None:
        """advbase 0: failover, CPU, the soak under load, the limit and its failover."""
        variants = [*self.impls, *([RT] if realtime and "pyucarp" in self.impls else [])]
        for rep in range(reps):
            for impl in self.impls:
                self.add(impl, "sub_failover", self.attempt(
                    f"advbase 0 failover {impl} -k {SUB_K} rep {rep + 1}",
                    partial(scenario_sub_failover, impl, k=SUB_K)))
        for k in (SUB_K, SUB_FAST_K):
            for impl in self.impls:
                self.add(impl, "sub_cpu", self.attempt(f"advbase 0 cpu {impl} -k {k}",
                                                       partial(scenario_sub_cpu, impl, k=k)))
        soak_s = self.durations.soak_s
        soak = self.attempt(f"soak {'+'.join(variants)} -k {SUB_K} {soak_s:.0f} s",
                            partial(scenario_soak, variants=variants, k=SUB_K, seconds=soak_s))
        for v in variants:
            self.add(v, "soak", soak.get(v, soak))
        alive = [v for v in variants if soak.get(v, {}).get("takeovers") == 0]
        for k in LADDER[1:]:
            if not alive:
                break
            step = self.attempt(
                f"limit {'+'.join(alive)} -k {k} {self.durations.step_s:.0f} s",
                partial(scenario_soak, variants=list(alive), k=k, seconds=self.durations.step_s))
            for v in alive:
                self.add(v, "limit", step.get(v, {"k": k, **step}))
            alive = [v for v in alive if step.get(v, {}).get("takeovers") == 0]
        for v in variants:
            k_limit = limit_k(self.results, v)
            if k_limit is None:
                continue
            for rep in range(reps):
                self.add(v, "limit_failover", self.attempt(
                    f"advbase 0 failover {v} -k {k_limit} rep {rep + 1}",
                    partial(scenario_sub_failover, v, k=k_limit)))


    # ---------------------------------------------------------------- beyond

    def beyond(self, reps: int) -> None:
        """Unicast, IPv6 and ten managed addresses, ``reps`` times each: pyucarp alone."""
        if "pyucarp" not in self.impls:
            log("beyond: pyucarp alone can run it (--only ucarp): skipped")
            return
        for name, fn in BEYOND.items():
            for rep in range(reps):
                self.add("pyucarp", name, self.attempt(f"{name} pyucarp rep {rep + 1}", fn))


def limit_k(results: dict[str, Any], variant: str) -> int | None:
    """The smallest k of the ladder with no takeover, every larger k having none either."""
    runs = results.get(variant, {})
    steps = [*runs.get("soak", []), *runs.get("limit", [])]
    best = None
    for step in steps:
        if step.get("takeovers") != 0:
            break
        best = step["k"]
    return best


def _brief(res: Any) -> str:
    if not isinstance(res, dict):
        return str(res)
    parts = []
    for k, v in res.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.3f}")
        elif isinstance(v, dict):
            parts.append(f"{k}({_brief(v)})")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


# ------------------------------------------------------------------------------ reporting


def runs_of(results: dict[str, Any], impl: str, scenario: str) -> list[dict[str, Any]]:
    """Every recorded run of a scenario (errors included)."""
    runs: list[dict[str, Any]] = results.get(impl, {}).get(scenario, [])
    return runs


def values(results: dict[str, Any], impl: str, scenario: str, key: str) -> list[float]:
    """The numeric ``key`` of every successful repetition."""
    return [r[key] for r in runs_of(results, impl, scenario)
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def stats(vals: Sequence[float]) -> dict[str, float] | None:
    """median, min, max (None when nothing was measured)."""
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def resource(results: dict[str, Any], impl: str, n: int, role: str, key: str) -> float | None:
    """One figure of the resource run with N daemons per node."""
    for r in runs_of(results, impl, "resources"):
        if r.get("n") == n and role in r:
            value: float = r[role][key]
            return value
    return None


def fleet_figure(results: dict[str, Any], impl: str, n: int, role: str,
                 key: str) -> float | None:
    """One figure of the fleet runs with N virtual hosts per host (the median of them)."""
    got = [r[role][key] for r in runs_of(results, impl, "fleet")
           if r.get("n") == n and role in r]
    return statistics.median(got) if got else None


def fleet_reps(results: dict[str, Any], impls: Sequence[str], n: int) -> int:
    """How many successful fleet runs with N virtual hosts the figures come from."""
    return max((len([r for r in runs_of(results, i, "fleet") if r.get("n") == n and "master" in r])
                for i in impls), default=0)


def first(results: dict[str, Any], impl: str, scenario: str) -> dict[str, Any] | None:
    """The first successful run of a scenario."""
    for r in runs_of(results, impl, scenario):
        if "error" not in r:
            return r
    return None


@dataclass(frozen=True)
class Row:
    """One line of the table: a label, a target for pyucarp, and a cell per implementation."""

    label: str
    target: str
    cells: dict[str, str]
    met: str  # "ok", "MISSED" or "" (no target)


def _fmt_stats(s: dict[str, float] | None, digits: int = 3) -> str:
    if s is None:
        return "failed"
    med, lo, hi = s["median"], s["min"], s["max"]
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def _num(v: float | None, digits: int) -> str:
    return "failed" if v is None else f"{v:.{digits}f}"


def _pair(a: float | None, b: float | None, digits: int) -> str:
    return "failed" if a is None or b is None else f"{a:.{digits}f} / {b:.{digits}f}"


def _ran(results: dict[str, Any], impls: Sequence[str], scenario: str) -> bool:
    return any(runs_of(results, i, scenario) for i in impls)


def build_rows(results: dict[str, Any], impls: Sequence[str],
               durations: Durations = FULL) -> list[Row]:
    """The table, from the raw results: the groups that ran, in order."""
    rows: list[Row] = []
    py = "pyucarp" in impls

    def section(title: str) -> None:
        rows.append(Row(title, "", dict.fromkeys(impls, ""), ""))

    def timed(label: str, scenario: str, key: str, target: str, limit: float | None,
              excess: bool = False, impl_of: dict[str, str] | None = None,
              digits: int = 3, strict: bool = True) -> None:
        source = impl_of or {i: i for i in impls}
        cells = {i: _fmt_stats(stats(values(results, source[i], scenario, key)), digits)
                 if source.get(i) else "" for i in impls}
        met = ""
        if limit is not None and py:
            check_key = "excess_s" if excess else key
            vals = values(results, source["pyucarp"], scenario, check_key)
            misses = sum(1 for v in vals if (v >= limit if strict else v > limit))
            met = ("ok" if vals and not misses
                   else f"MISSED {misses}/{len(vals)}" if vals else "MISSED")
        rows.append(Row(label, target, cells, met))

    if _ran(results, impls, "failover"):
        classic_rows(rows, results, impls, timed)
    if _ran(results, impls, "fleet") or _ran(results, impls, "reload"):
        section("one process for every address: pyucarp run vs N ucarp processes, per host")
        fleet_rows(rows, results, impls)
    if _ran(results, impls, "single"):
        single_rows(rows, results, impls)
    if _ran(results, impls, "sub_failover") or _ran(results, impls, "soak"):
        section(f"advbase 0: master -k {SUB_K}, backup -k {2 * SUB_K} "
                f"({256 / SUB_K:.1f} adverts/s)")
        subsecond_rows(rows, results, impls, timed, durations)
    if any(_ran(results, impls, name) for name in BEYOND):
        rows.append(Row("beyond multicast, pyucarp only (advbase 1; master kill -9 + unplugged)",
                        "", {i: C_BEYOND if i == "ucarp" else "" for i in impls}, ""))
        first_row = len(rows)
        beyond_rows(rows, results, impls, timed)
        for row in rows[first_row:]:
            if "ucarp" in row.cells:
                row.cells["ucarp"] = "n/a"
    return rows


def classic_rows(rows: list[Row], results: dict[str, Any], impls: Sequence[str],
                 timed: Callable[..., None]) -> None:
    """The advbase 1 scenarios and the single-daemon resources."""
    timed("failover outage at client (s)", "failover", "outage_s",
          f"<= {BOUND:.3f}+0.030", TARGETS["failover_excess_s"], excess=True)
    timed("  takeover after last advert (s)", "failover", "takeover_s", "", None)
    timed("graceful -z outage at client (s)", "graceful", "outage_s", "< 0.100",
          TARGETS["graceful_outage_s"])
    timed("SIGUSR2 demotion outage (s)", "usr2", "outage_s", "< 0.100", TARGETS["usr2_outage_s"])
    timed("dual master at start, -P (s)", "dual", "dual_master_s", "< 0.020",
          TARGETS["dual_master_s"])
    timed("  same, both advskew 0 (s)", "dual_tie", "dual_master_s", "< 0.020",
          TARGETS["dual_master_s"])

    cells = {}
    for i in impls:
        runs = [r for r in runs_of(results, i, "slow_script") if "two_masters" in r]
        yes = sum(1 for r in runs if r["two_masters"])
        cells[i] = f"{'yes' if yes else 'no'} ({yes}/{len(runs)} runs)" if runs else "failed"
    py_runs = [r for r in runs_of(results, "pyucarp", "slow_script") if "two_masters" in r]
    met = ("ok" if py_runs and not any(r["two_masters"] for r in py_runs) else "MISSED") \
        if "pyucarp" in impls else ""
    rows.append(Row(f"{SLOW_SCRIPT_S} s upscript: two masters?", "no", cells, met))

    for n in SCALE_NS:
        for role in ("master", "backup"):
            for key, label, unit, limit in (
                ("rss_mib_mean", "RSS", "MiB", TARGETS["rss_mib"]),
                ("pss_mib_mean", "PSS", "MiB", None),
                ("cpu_pct_mean", "CPU", "% core", TARGETS["cpu_pct"]),
            ):
                cells = {}
                for i in impls:
                    v = resource(results, i, n, role, key)
                    cells[i] = _num(v, 3 if key.startswith("cpu") else 1)
                met = ""
                if limit is not None and "pyucarp" in impls:
                    v = resource(results, "pyucarp", n, role, key)
                    met = "ok" if v is not None and v < limit else "MISSED"
                target = f"< {limit:g}" if limit is not None else ""
                label_n = f"N={n}" if n > 1 else "steady"
                rows.append(Row(f"{label} per {role} daemon, {label_n} ({unit})", target,
                                cells, met))


def fleet_rows(rows: list[Row], results: dict[str, Any], impls: Sequence[str]) -> None:
    """RSS, PSS and CPU per host for each N; the reload."""
    for n in FLEET_NS:
        if not any(fleet_figure(results, i, n, "master", "rss_mib") is not None
                   or runs_of(results, i, "fleet") for i in impls):
            continue
        for key, label, unit, digits in (("rss_mib", "RSS", "MiB", 1),
                                         ("pss_mib", "PSS", "MiB", 1),
                                         ("cpu_pct", "CPU", "% core", 3)):
            cells = {i: _pair(fleet_figure(results, i, n, "master", key),
                              fleet_figure(results, i, n, "backup", key), digits)
                     for i in impls}
            target, met = "", ""
            if n == TARGET_N and key != "pss_mib" and "pyucarp" in impls:
                ok = True
                for role in ("master", "backup"):
                    ours = fleet_figure(results, "pyucarp", n, role, key)
                    theirs = fleet_figure(results, "ucarp", n, role, key)
                    if key == "rss_mib":
                        ok = ok and ours is not None and ours <= TARGETS["fleet_rss_mib"] and (
                            theirs is None or ours <= TARGETS["fleet_rss_share"] * theirs)
                    else:
                        ok = ok and ours is not None and (
                            theirs is None or ours <= TARGETS["fleet_cpu_share"] * theirs)
                target = (f"<= {TARGETS['fleet_rss_mib']:g}, <= {TARGETS['fleet_rss_share']:g} C"
                          if key == "rss_mib" else "<= C")
                met = "ok" if ok else "MISSED"
            reps = fleet_reps(results, impls, n)
            of_reps = f", median of {reps}" if reps > 1 else ""
            rows.append(Row(f"N={n}: {label} master / backup host ({unit}{of_reps})", target,
                            cells, met))
    if not _ran(results, impls, "reload"):
        return

    def reload_row(label: str, key: str, target: str,
                   limit: float | None) -> None:
        cells = {i: _fmt_stats(stats(values(results, i, "reload", key))) for i in impls}
        met = ""
        if limit is not None and "pyucarp" in impls:
            vals = values(results, "pyucarp", "reload", key)
            misses = sum(1 for v in vals if v > limit)
            met = ("ok" if vals and not misses
                   else f"MISSED {misses}/{len(vals)}" if vals else "MISSED")
        rows.append(Row(label, target, cells, met))

    changes = {i: values(results, i, "reload", "state_changes") for i in impls}
    cells = {i: f"{sum(v):.0f} in {len(v)} runs" if v else "failed" for i, v in changes.items()}
    met = "" if "pyucarp" not in impls else (
        "ok" if changes["pyucarp"] and not any(changes["pyucarp"]) else "MISSED")
    rows.append(Row(f"reload, {RELOAD_N} vhids (-1 +1): state changes of the other "
                    f"{RELOAD_N - 1}", "0", cells, met))
    reload_row(f"  largest advert gap of the other {RELOAD_N - 1} (s)", "gap_max_s",
               f"<= {TARGETS['reload_gap_s']:g}", TARGETS["reload_gap_s"])
    reload_row("  removed vhid: backup MASTER after (s)", "removed_backup_master_s", "", None)
    reload_row("  added vhid: MASTER after (s)", "added_master_s", "", None)


def single_rows(rows: list[Row], results: dict[str, Any], impls: Sequence[str]) -> None:
    """The one-instance ucarp command's memory, with and without the site module."""
    ours = first(results, "pyucarp", "single") if "pyucarp" in impls else None
    theirs = first(results, "ucarp", "single") if "ucarp" in impls else None

    def cells(py_cell: str, c_cell: str) -> dict[str, str]:
        return {i: py_cell if i == "pyucarp" else c_cell for i in impls}

    def both(prefix: str) -> str:
        if ours is None:
            return "failed"
        return _pair(ours.get(f"{prefix}_rss_mib"), ours.get(f"{prefix}_pss_mib"), 1)

    c_cell = "failed" if theirs is None else _pair(theirs["rss_mib"], theirs["pss_mib"], 1)
    limit = TARGETS["single_rss_mib"]
    met = "" if "pyucarp" not in impls else (
        "ok" if ours is not None and ours["no_site_rss_mib"] < limit else "MISSED")
    rows.append(Row("ucarp command, python3 -S: RSS / PSS (MiB)", f"< {limit:g} RSS",
                    cells(both("no_site"), c_cell), met))
    rows.append(Row("  same, python3 with this site's .pth files", "",
                    cells(both("plain"), ""), ""))
    rows.append(Row("  bare interpreter, -S: RSS / PSS (MiB)", "", cells(both("bare_no_site"), ""),
                    ""))
    rows.append(Row("  bare interpreter with the .pth files", "", cells(both("bare_plain"), ""),
                    ""))


def subsecond_rows(rows: list[Row], results: dict[str, Any], impls: Sequence[str],
                   timed: Callable[..., None], durations: Durations) -> None:
    """advbase 0: failover, quiet-segment CPU and takeovers, the soak and the limit."""
    rt = RT in results and "pyucarp" in impls
    timed("failover outage at client (s)", "sub_failover", "outage_s",
          f"<= {TARGETS['sub_outage_s']:g}", TARGETS["sub_outage_s"], strict=False)
    timed(f"  takeover after last advert (s, bound {SUB_BOUND:.3f})", "sub_failover",
          "takeover_s", "", None)
    for i in impls:  # the C backup never settles: say so in its cells
        runs = [r for r in runs_of(results, i, "sub_failover") if "settled" in r]
        if runs and not all(r["settled"] for r in runs):
            rows[-2].cells[i] += " *"
            rows[-1].cells[i] += " *"

    def cpu_run(impl: str, k: int) -> dict[str, Any] | None:
        for r in runs_of(results, impl, "sub_cpu"):
            if r.get("k") == k and "error" not in r:
                return r
        return None

    for k in (SUB_K, SUB_FAST_K):
        got = {i: cpu_run(i, k) for i in impls}
        if not any(got.values()):
            continue
        cells = {i: "failed" if r is None else _pair(r["master_cpu_pct"], r["backup_cpu_pct"], 2)
                 for i, r in got.items()}
        rows.append(Row(f"CPU, -k {k}/{2 * k}, {256 / k:.1f} adverts/s: master / backup (% core)",
                        "", cells, ""))
        cells = {i: "failed" if r is None else f"{r['takeovers_per_min']:.0f}"
                 for i, r in got.items()}
        ours = got.get("pyucarp")
        met = "" if "pyucarp" not in impls else (
            "ok" if ours is not None and ours["backup_takeovers"] == 0 else "MISSED")
        rows.append(Row(f"  backup takeovers on a quiet segment, -k {k}/{2 * k} (per min)", "0",
                        cells, met))

    soaks = {v: first(results, v, "soak") for v in [*impls, *([RT] if rt else [])]}
    if any(soaks.values()):
        loss = next((s["loss_pct"] for s in soaks.values() if s and s.get("loss_pct")), None)
        hogs = next((s["hogs"] for s in soaks.values() if s), 0)
        minutes = next((s["seconds"] / 60 for s in soaks.values() if s), durations.soak_s / 60)
        label = (f"takeovers in {minutes:.0f} min, {hogs} CPU hogs + "
                 f"{_num(loss, 1)} % CARP loss")
        soak_cells = {i: _soak_cell(soaks.get(i), "takeovers", 0) for i in impls}
        met = ""
        if "pyucarp" in impls:
            s = soaks.get("pyucarp")
            met = "ok" if s is not None and s["takeovers"] == 0 and s["alive"] else "MISSED"
        rows.append(Row(label, "0", soak_cells, met))
        if rt:
            s = soaks.get(RT)
            rows.append(Row("  same, pyucarp --realtime", "0",
                            {i: _soak_cell(s, "takeovers", 0) if i == "pyucarp" else ""
                             for i in impls},
                            "ok" if s is not None and s["takeovers"] == 0 else "MISSED"))
        rows.append(Row("  largest gap between the master's adverts (s)", "",
                        {i: _soak_cell(soaks.get(i), "master_gap_max_s", 3) for i in impls}, ""))
        if rt:
            rows.append(Row("  same, pyucarp --realtime", "",
                            {i: _soak_cell(soaks.get(RT), "master_gap_max_s", 3)
                             if i == "pyucarp" else "" for i in impls}, ""))

    def limit_cell(v: str) -> str:
        if first(results, v, "soak") is None:
            return "failed"
        k = limit_k(results, v)
        if k is None:
            return f"none (k {LADDER[0]} fails)"
        return f"-k {k}/{2 * k}" + (" (the last step)" if k == LADDER[-1] else "")

    if any(soaks.values()):
        step = durations.step_s
        label = f"smallest k pair with 0 takeovers in {step:.0f} s, same load"
        rows.append(Row(label, "", {i: limit_cell(i) for i in impls}, ""))
        if rt:
            rows.append(Row("  same, pyucarp --realtime", "",
                            {i: limit_cell(RT) if i == "pyucarp" else "" for i in impls}, ""))
        timed("  failover outage at that pair (s)", "limit_failover", "outage_s", "", None)
        for i in impls:
            if not runs_of(results, i, "limit_failover") and limit_k(results, i) is None:
                rows[-1].cells[i] = "n/a"
        if rt:
            timed("  same, pyucarp --realtime (s)", "limit_failover", "outage_s", "", None,
                  impl_of={i: RT if i == "pyucarp" else "" for i in impls})
        rate_cells = {i: _limit_rate(results, i) for i in impls}
        rows.append(Row("  master adverts/s at that pair under load (of 256/k)", "",
                        rate_cells, ""))
        if rt:
            rows.append(Row("  same, pyucarp --realtime", "",
                            {i: _limit_rate(results, RT) if i == "pyucarp" else ""
                             for i in impls}, ""))


def beyond_rows(rows: list[Row], results: dict[str, Any], impls: Sequence[str],
                timed: Callable[..., None]) -> None:
    """Unicast and IPv6 failover, the unsolicited NA, ten managed addresses."""
    failover_target = f"<= {BOUND:.3f}+0.030"
    if _ran(results, impls, "unicast_failover"):
        timed("unicast (--peer) failover outage at client (s)", "unicast_failover", "outage_s",
              failover_target, TARGETS["failover_excess_s"], excess=True)
        timed("  takeover after last advert (s)", "unicast_failover", "takeover_s", "", None)
        runs = [r for r in runs_of(results, "pyucarp", "unicast_failover") if "group_frames" in r]
        group = sum(r["group_frames"] for r in runs)
        cell = (f"{group} of {sum(r['carp_frames'] for r in runs)} ({len(runs)} runs)"
                if runs else "failed")
        met = "" if "pyucarp" not in impls else (
            "ok" if runs and group <= TARGETS["group_frames"] else "MISSED")
        rows.append(Row("  CARP frames to 224.0.0.18 on the bridge (of all CARP frames)", "0",
                        {i: cell if i == "pyucarp" else "" for i in impls}, met))
    if _ran(results, impls, "ipv6_failover"):
        timed("IPv6 failover outage at client, ping -6 (s)", "ipv6_failover", "outage_s",
              failover_target, TARGETS["failover_excess_s"], excess=True)
        timed("  takeover after last advert (s)", "ipv6_failover", "takeover_s", "", None)
        timed("  first unsolicited NA after first advert (ms)", "ipv6_failover", "na_delay_ms",
              f"<= {TARGETS['na_delay_ms']:g}", TARGETS["na_delay_ms"], digits=2, strict=False)
    if _ran(results, impls, "managed_ten"):
        timed("10 addresses, --manage-vip: all up after first advert (ms)", "managed_ten",
              "all_up_ms", f"<= {TARGETS['ten_up_ms']:g}", TARGETS["ten_up_ms"], digits=1,
              strict=False)


def _limit_rate(results: dict[str, Any], variant: str) -> str:
    """The master's advert rate under load at the variant's limit, beside the nominal one."""
    k = limit_k(results, variant)
    if k is None:
        return "n/a"
    runs = runs_of(results, variant, "soak") + runs_of(results, variant, "limit")
    got = next((r for r in runs if r.get("k") == k and "master_adverts_per_s" in r), None)
    return "failed" if got is None else f"{got['master_adverts_per_s']:.0f} of {256 / k:.0f}"


def _soak_cell(run: dict[str, Any] | None, key: str, digits: int) -> str:
    if run is None:
        return "failed"
    v = run.get(key)
    return "failed" if v is None else f"{v:.{digits}f}" if digits else str(v)


def render(rows: Sequence[Row], impls: Sequence[str]) -> str:
    """A plain-text table: median [min-max] per implementation."""
    header = ["metric", "pyucarp target", *impls, "met"]
    body = [[r.label, r.target, *(r.cells[i] for i in impls), r.met] for r in rows]
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*line).rstrip() for line in body]
    return "\n".join(lines)


COLOURS = {"pyucarp": "#1f77b4", "ucarp": "#d62728"}


def plot(results: dict[str, Any], impls: Sequence[str], path: Path) -> bool:
    """Client-side outage per scenario and implementation, every repetition shown."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [("failover", "host loss\n(unplugged master)", BOUND),
                 ("graceful", "graceful stop\n(SIGTERM, -z)", 0.1),
                 ("usr2", "demotion\n(SIGUSR2)", 0.1),
                 ("sub_failover", f"host loss,\nadvbase 0\n(-k {SUB_K} / {2 * SUB_K})",
                  SUB_BOUND)]
    scenarios += [("unicast_failover", "host loss,\nunicast --peer\n(pyucarp only)", BOUND),
                  ("ipv6_failover", "host loss,\nIPv6, ping -6\n(pyucarp only)", BOUND)]
    k = limit_k(results, "pyucarp")
    if k is not None:
        scenarios.append(("limit_failover", f"advbase 0,\nlimit under load\n"
                          f"(-k {k} / {2 * k})", 3 * 2 * k / 256))
    scenarios = [s for s in scenarios if any(values(results, i, s[0], "outage_s") for i in impls)]
    if not scenarios:
        return False
    fig, ax = plt.subplots(figsize=(11, 5.8), dpi=110)
    width = 0.36
    for k, impl in enumerate(impls):
        for j, (name, _label, _line) in enumerate(scenarios):
            vals = values(results, impl, name, "outage_s")
            if not vals:
                continue
            x = j + (k - (len(impls) - 1) / 2) * width
            med = statistics.median(vals)
            colour = COLOURS.get(impl, "grey")
            ax.bar(x, med, width * 0.9, color=colour, alpha=0.35, edgecolor=colour,
                   label=f"{impl} (median, dots = runs)" if j == 0 else None)
            ax.scatter([x] * len(vals), vals, color=colour, s=18, zorder=3)
            ax.annotate(f"{med * 1000:.0f} ms", (x, max(vals)), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=9)
    labelled = set()
    for j, (name, _label, line) in enumerate(scenarios):
        bound = name.endswith("failover")
        kind = "bound" if bound else "target"
        text = ("CARP bound after host loss (3 x master-down)" if bound
                else "pyucarp target for planned hand-offs: 100 ms")
        ax.hlines(line, j - 0.48, j + 0.48, colors="black" if bound else "grey",
                  linestyles="--" if bound else ":", linewidth=1.2,
                  label="_nolegend_" if kind in labelled else text)
        labelled.add(kind)
    ax.set_yscale("log")
    ax.set_ylim(0.01, 60)  # the top decade holds the legend, clear of the bars
    ax.set_xticks(range(len(scenarios)), [label for _n, label, _l in scenarios])
    ax.set_xlim(-0.6, len(scenarios) - 0.4)
    ax.set_ylabel("client outage: longest gap in ping replies (s, log scale)")
    ax.set_title("VIP outage seen by a client pinging every 10 ms (advbase 0: 5 ms, "
                 "2 ms at k < 8)")
    ax.legend(loc="upper center", ncol=2, fontsize=9, framealpha=0.95)
    ax.grid(axis="y", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_fleet(results: dict[str, Any], impls: Sequence[str], path: Path) -> bool:
    """RSS and CPU per host against N: one pyucarp run against N ucarp processes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not _ran(results, impls, "fleet"):
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), dpi=110)
    for ax, key, ylabel in ((axes[0], "rss_mib", "RSS per host (MiB)"),
                            (axes[1], "cpu_pct", "CPU per host (% of a core)")):
        for impl in impls:
            for role, style in (("master", "-o"), ("backup", "--s")):
                pts = [(n, fleet_figure(results, impl, n, role, key)) for n in FLEET_NS]
                pts = [(n, v) for n, v in pts if v]
                if not pts:
                    continue
                who = "one pyucarp run" if impl == "pyucarp" else "N ucarp processes"
                ax.plot([n for n, _ in pts], [v for _, v in pts], style,
                        color=COLOURS.get(impl, "grey"), label=f"{who}, {role} host")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(FLEET_NS, [str(n) for n in FLEET_NS])
        ax.set_xlabel("virtual hosts per host (N)")
        ax.set_ylabel(ylabel)
        ax.grid(which="both", alpha=0.25)
    axes[0].legend(fontsize=8)
    fig.suptitle("N virtual addresses (advbase 1): one pyucarp run per host vs N ucarp "
                 "processes")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def environment() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tree = ""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        tree = head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"date": dt.datetime.now().isoformat(timespec="seconds"),
            "kernel": platform.release(), "python": platform.python_version(),
            "cpu": cpu, "cpus": str(os.cpu_count()), "tree": tree}


def tmpfs_dir() -> str | None:
    """A tmpfs for the labs' files (/run, else /dev/shm), None when there is none.

    The daemons' state files live there, as in production (/run/pyucarp is a tmpfs on
    Debian). On a journaling disk file system a state file's write-and-rename can wait
    for the journal thread, which CPU hogs starve: here on ext4 under the soak's load,
    up to 0.48 s, even for a SCHED_RR writer -- takeovers at advbase 0 that no tmpfs
    deployment would see.
    """
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    for candidate in ("/run", "/dev/shm"):
        if any(len(f) > 2 and f[1] == candidate and f[2] == "tmpfs" for f in mounts):
            return candidate
    return None


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def write_outputs(results: dict[str, Any], impls: Sequence[str], out: Path,
                  durations: Durations) -> list[Path]:
    """The plots that have data; the paths written."""
    written = []
    if plot(results, impls, out / "outage.png"):
        written.append(out / "outage.png")
    if plot_fleet(results, impls, out / "fleet.png"):
        written.append(out / "fleet.png")
    return written


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write results.json and the plots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", action="append", choices=GROUPS,
                        help="run only this group of scenarios (repeatable; default: all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"shorter soaks ({QUICK.soak_s:.0f} s, ladder steps "
                             f"{QUICK.step_s:.0f} s) and {QUICK.sample_s:.0f} s CPU samples")
    parser.add_argument("--reps", type=int,
                        help="repetitions per scenario (1-10; default 3, and for the beyond "
                             f"group under --quick {BEYOND_QUICK_REPS})")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--only", choices=IMPLS, help="one implementation only")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the table (also in DIR/results.json) and the plots "
                             "from DIR/results.json")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        # the columns the run printed (a beyond-only run has runs of pyucarp alone)
        impls = saved.get("impls") or [i for i in IMPLS if i in saved["runs"]]
        durations = Durations(**saved.get("durations", {}))
        rows = build_rows(saved["runs"], impls, durations)
        print(render(rows, impls))
        saved["table"] = [{"metric": r.label, "target": r.target, **r.cells, "met": r.met}
                          for r in rows]
        (args.out / "results.json").write_text(json.dumps(saved, indent=2) + "\n")
        write_outputs(saved["runs"], impls, args.out, durations)
        return 0
    reps = 3 if args.reps is None else args.reps
    # --quick: the beyond group has no soak to shorten, it runs fewer times
    beyond_reps = args.reps if args.reps is not None else (
        BEYOND_QUICK_REPS if args.quick else reps)
    if not 1 <= reps <= 10:
        parser.error("--reps must be between 1 and 10")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    groups = [g for g in GROUPS if g in (args.group or GROUPS)]
    durations = QUICK if args.quick else FULL
    impls = [args.only] if args.only else list(IMPLS)
    if "ucarp" in impls and not os.access(CUCARP, os.X_OK):
        log(f"{CUCARP} is missing: measuring pyucarp only")
        impls = ["pyucarp"]
    if "subsecond" in groups and subprocess.run(["sh", "-c", "command -v nft"],
                                                capture_output=True).returncode != 0:
        parser.error("the subsecond group needs nft (./run setup installs nftables)")
    realtime = "subsecond" in groups and "pyucarp" in impls and realtime_available()
    if "subsecond" in groups and "pyucarp" in impls:
        log("pyucarp --realtime: " + ("listed by --help, soaked beside plain pyucarp"
                                      if realtime else "not in --help, skipped"))
    signal.signal(signal.SIGTERM, _on_term)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    workspace = tmpfs_dir()
    log(f"the labs' files (state files, consoles) in {workspace or tempfile.gettempdir()}"
        + ("" if workspace else ": no tmpfs found, state file writes may stall under load"))
    with tempfile.TemporaryDirectory(prefix="pyucarp-bench-", dir=workspace) as tmp:
        runner = Runner(impls, Path(tmp), durations)
        try:
            if "classic" in groups:
                runner.classic(reps)
            if "fleet" in groups:
                runner.fleet(reps)
            if "subsecond" in groups:
                runner.subsecond(reps, realtime)
            if "beyond" in groups:
                runner.beyond(beyond_reps)
        except KeyboardInterrupt:
            log("interrupted: every lab has been torn down")
            return 130
    results = runner.results
    rows = build_rows(results, impls, durations)
    table = render(rows, impls)
    minutes = (time.monotonic() - started) / 60
    print(table)
    counted = (f"{beyond_reps} repetitions" if groups == ["beyond"] else f"{reps} repetitions"
               + (f" (beyond: {beyond_reps})" if "beyond" in groups and beyond_reps != reps
                  else ""))
    notes = [f"{', '.join(groups)}; {counted}; median [min-max]; {minutes:.1f} min"]
    if "classic" in groups or "beyond" in groups:
        notes.append(f"CARP bound after host loss = 3 x 1 s + 20/256 s = {BOUND:.3f} s")
    if "subsecond" in groups:
        notes.append("* the C ucarp's backup never settles at advbase 0 (see the quiet-segment "
                     f"takeovers): its pair is cut after {SETTLE_S:g} s all the same, often while "
                     "the backup is MASTER too")
        if "pyucarp" in impls and not realtime:
            notes.append("pyucarp --realtime: not listed by --help, not measured")
    if "beyond" in groups:
        notes.append("beyond: the master's daemon SIGKILLed and its host unplugged at once; "
                     "addresses up = ip -ts monitor in the new master's namespace, "
                     "CLOCK_REALTIME like the capture's stamps")
    print("\n" + "\n".join(notes))
    summary = {
        "command": " ".join(["python3", "bench/run.py", *(argv if argv is not None
                                                          else sys.argv[1:])]),
        "environment": environment(),
        "groups": groups,
        "impls": impls,
        "reps": reps,
        "beyond_reps": beyond_reps if "beyond" in groups else None,
        "minutes": round(minutes, 1),
        "durations": {"sample_s": durations.sample_s, "soak_s": durations.soak_s,
                      "step_s": durations.step_s},
        "realtime": realtime,
        "bound_s": BOUND,
        "targets": TARGETS,
        "table": [{"metric": r.label, "target": r.target, **r.cells, "met": r.met}
                  for r in rows],
        "runs": results,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    written = write_outputs(results, impls, args.out, durations)
    log(f"wrote {', '.join(str(p) for p in [args.out / 'results.json', *written])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
