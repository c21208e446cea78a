#!/usr/bin/env python3
"""pyucarp beside the C ucarp (/usr/sbin/ucarp): the same scenarios, measured the same way.

``python3 bench/run.py [--reps N] [--out DIR] [--only pyucarp|ucarp]`` (root; about 8 minutes
with the default 3 repetitions). Every measurement runs in a fresh namespace lab
(``pyucarp.lab.netlab``, daemons started with ``pyucarp.lab.daemons``) on 192.0.2.0/24:
nodes ``alpha`` (advskew 0) and ``beta`` (advskew 20) share the VIP 192.0.2.100 (vhid 7,
advbase 1, the shipped vip-up/vip-down scripts), a ``client`` pings the VIP every 10 ms,
and a capture on the bridge records every CARP frame.

How each figure is obtained:

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
* resources: one node runs N daemons that become MASTER (vhids 1..N, advskew 0), the other
  N BACKUPs (advskew 20), N = 1, 10, 50. After they settle, CPU time (the sum of
  /proc/PID/task/*/schedstat, nanoseconds) over 20 s, and VmRSS / Pss at the end, per daemon.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
)
from pyucarp.lab.netlab import FrameCapture, Host, Lab, PingWatch, largest_gap, wait_until  # noqa: E402

VIP = "192.0.2.100"
VHID = 7
PASSWORD = "benchpw"
ALPHA_IP, BETA_IP, CLIENT_IP = "192.0.2.1", "192.0.2.2", "192.0.2.10"
BETA_SKEW = 20
BOUND = 3 * 1 + BETA_SKEW / 256  # master-down time of beta at advbase 1, deadratio 3
IMPLS = ("pyucarp", "ucarp")
SCALE_NS = (1, 10, 50)
SAMPLE_S = 20.0
SLOW_SCRIPT_S = 8

# pyucarp targets: every figure must stay below its limit (failover: excess over BOUND)
TARGETS = {
    "failover_excess_s": 0.030,
    "graceful_outage_s": 0.100,
    "usr2_outage_s": 0.100,
    "dual_master_s": 0.020,
    "rss_mib": 20.0,
    "cpu_pct": 0.1,
}


def log(msg: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ frames


@dataclass(frozen=True)
class Ad:
    """One CARP advert seen on the bridge."""

    t: float
    src: str
    vhid: int
    advbase: int
    advskew: int

    @property
    def leave(self) -> bool:
        """pyucarp's leave advert (advbase 255, advskew 255)."""
        return self.advbase == 255 and self.advskew == 255


def adverts(cap: FrameCapture) -> list[Ad]:
    """The CARP adverts captured so far."""
    out = []
    for t, f in cap.frames():
        if len(f) >= 14 + 20 + 36 and f[12:14] == b"\x08\x00" and f[23] == 112:
            out.append(Ad(t, ".".join(str(b) for b in f[26:30]), f[35], f[39], f[36]))
    return out


def of(ads: Sequence[Ad], src: str, after: float = 0.0, leave: bool = False) -> list[Ad]:
    """Adverts from ``src`` after ``after``, leave adverts only if asked."""
    return [a for a in ads if a.src == src and a.t > after and (leave or not a.leave)]


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


def wait_new_advert(seg: Segment, src: str, timeout: float = 2.5) -> Ad | None:
    """Poll the capture (1 ms) until ``src`` sends its next advert; return it."""
    before = len(of(adverts(seg.cap), src))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ads = of(adverts(seg.cap), src)
        if len(ads) > before:
            return ads[-1]
        time.sleep(0.001)
    return None


def wait_recovered(seg: Segment, new_master: str, since: float, timeout: float) -> float | None:
    """Wait for ``new_master``'s first advert after ``since`` and steady replies after it."""
    def ok() -> bool:
        ads = of(adverts(seg.cap), new_master, since)
        if not ads:
            return False
        after = [r for r in seg.replies() if r > ads[0].t]
        return len(after) >= 20
    if not wait_until(ok, timeout, interval=0.02):
        return None
    return time.monotonic()


# ------------------------------------------------------------------------------ scenarios


def scenario_failover(seg: Segment) -> dict[str, Any]:
    """Unplug the MASTER right after one of its adverts; beta must take over."""
    seg.start_ping()
    seg.start("alpha", seg.alpha, 0, ["-z"])
    seg.start("beta", seg.beta, BETA_SKEW, ["-z"])
    if not seg.settled(ALPHA_IP, BETA_IP):
        raise RuntimeError("alpha never became the only MASTER")
    ad = wait_new_advert(seg, ALPHA_IP)
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


def scenario_resources(seg: Segment, n: int) -> dict[str, Any]:
    """N masters on alpha and N backups on beta; CPU and memory per daemon over 20 s."""
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
    time.sleep(SAMPLE_S)
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


# ------------------------------------------------------------------------------ the run


SCENARIOS: dict[str, Callable[[Segment], dict[str, Any]]] = {
    "failover": scenario_failover,
    "graceful": scenario_graceful,
    "usr2": scenario_usr2,
    "dual": scenario_dual,
    "dual_tie": scenario_dual_tie,
    "slow_script": scenario_slow_script,
}


def run_all(reps: int, impls: Sequence[str], workroot: Path) -> dict[str, Any]:
    """Every scenario, ``reps`` times, implementations interleaved; then the resource runs."""
    results: dict[str, Any] = {i: {s: [] for s in [*SCENARIOS, "resources"]} for i in impls}
    total = reps * len(SCENARIOS) * len(impls) + len(SCALE_NS) * len(impls)
    done = 0
    for name, fn in SCENARIOS.items():
        for rep in range(reps):
            for impl in impls:
                done += 1
                workdir = workroot / f"{name}-{impl}-{rep}"
                workdir.mkdir()
                started = time.monotonic()
                try:
                    with segment(impl, workdir) as seg:
                        res = fn(seg)
                except Exception as exc:  # one failed repetition must not end the run
                    res = {"error": f"{type(exc).__name__}: {exc}"}
                res["wall_s"] = round(time.monotonic() - started, 1)
                results[impl][name].append(res)
                log(f"[{done:3}/{total}] {name:<11} {impl:<7} rep {rep + 1}: {_brief(res)}")
    for n in SCALE_NS:
        for impl in impls:
            done += 1
            workdir = workroot / f"resources-{impl}-{n}"
            workdir.mkdir()
            try:
                with segment(impl, workdir) as seg:
                    res = scenario_resources(seg, n)
            except Exception as exc:
                res = {"n": n, "error": f"{type(exc).__name__}: {exc}"}
            results[impl]["resources"].append(res)
            log(f"[{done:3}/{total}] resources  {impl:<7} N={n}: {_brief(res)}")
    return results


def _brief(res: dict[str, Any]) -> str:
    parts = []
    for k, v in res.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.3f}")
        elif isinstance(v, dict):
            parts.append(f"{k}(cpu={v['cpu_pct_mean']:.3f}% rss={v['rss_mib_mean']:.1f}MiB)")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


# ------------------------------------------------------------------------------ reporting


def values(results: dict[str, Any], impl: str, scenario: str, key: str) -> list[float]:
    """The numeric ``key`` of every successful repetition."""
    return [r[key] for r in results[impl][scenario] if isinstance(r.get(key), (int, float))
            and not isinstance(r.get(key), bool)]


def stats(vals: Sequence[float]) -> dict[str, float] | None:
    """median, min, max (None when nothing was measured)."""
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def resource(results: dict[str, Any], impl: str, n: int, role: str, key: str) -> float | None:
    """One figure of the resource run with N daemons per node."""
    for r in results[impl]["resources"]:
        if r.get("n") == n and role in r:
            value: float = r[role][key]
            return value
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


def build_rows(results: dict[str, Any], impls: Sequence[str]) -> list[Row]:
    """The table, from the raw results."""
    rows: list[Row] = []

    def timed(label: str, scenario: str, key: str, target: str, limit: float | None,
              excess: bool = False) -> None:
        cells = {i: _fmt_stats(stats(values(results, i, scenario, key))) for i in impls}
        met = ""
        if limit is not None and "pyucarp" in impls:
            check_key = "excess_s" if excess else key
            vals = values(results, "pyucarp", scenario, check_key)
            misses = sum(1 for v in vals if v >= limit)
            met = ("ok" if vals and not misses
                   else f"MISSED {misses}/{len(vals)}" if vals else "MISSED")
        rows.append(Row(label, target, cells, met))

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
        runs = [r for r in results[i]["slow_script"] if "two_masters" in r]
        yes = sum(1 for r in runs if r["two_masters"])
        cells[i] = f"{'yes' if yes else 'no'} ({yes}/{len(runs)} runs)" if runs else "failed"
    py_runs = [r for r in results.get("pyucarp", {}).get("slow_script", []) if "two_masters" in r]
    met = ("ok" if py_runs and not any(r["two_masters"] for r in py_runs) else "MISSED") \
        if "pyucarp" in impls else ""
    rows.append(Row(f"{SLOW_SCRIPT_S} s upscript: two masters?", "no", cells, met))

    for n in SCALE_NS:
        for role in ("master", "backup"):
            for key, label, unit, limit in (
                ("rss_mib_mean", "RSS", "MiB", TARGETS["rss_mib"]),
                ("pss_mib_mean", "PSS", "MiB", None),
                ("cpu_pct_mean", "CPU", "% core", TARGETS["cpu_pct"] if n == 1 else None),
            ):
                if n != 1 and key == "pss_mib_mean":
                    continue
                if n != 1 and key == "rss_mib_mean" and role == "backup":
                    continue
                cells = {}
                for i in impls:
                    v = resource(results, i, n, role, key)
                    cells[i] = "failed" if v is None else (f"{v:.3f}" if key.startswith("cpu")
                                                           else f"{v:.1f}")
                met = ""
                if limit is not None and "pyucarp" in impls and (n == 1 or key != "cpu_pct_mean"):
                    v = resource(results, "pyucarp", n, role, key)
                    met = "ok" if v is not None and v < limit else "MISSED"
                target = f"< {limit:g}" if limit is not None else ""
                label_n = f"N={n}" if n > 1 else "steady"
                rows.append(Row(f"{label} per {role} daemon, {label_n} ({unit})", target,
                                cells, met))
    return rows


def render(rows: Sequence[Row], impls: Sequence[str]) -> str:
    """A plain-text table: median [min-max] per implementation."""
    header = ["metric", "pyucarp target", *impls, "met"]
    body = [[r.label, r.target, *(r.cells[i] for i in impls), r.met] for r in rows]
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*line).rstrip() for line in body]
    return "\n".join(lines)


def plot(results: dict[str, Any], impls: Sequence[str], path: Path) -> None:
    """Client-side outage per scenario and implementation, every repetition shown."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [("failover", "host loss\n(unplugged master)"),
                 ("graceful", "graceful stop\n(SIGTERM, -z)"),
                 ("usr2", "demotion\n(SIGUSR2)")]
    colours = {"pyucarp": "#1f77b4", "ucarp": "#d62728"}
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    width = 0.36
    for k, impl in enumerate(impls):
        for j, (name, _label) in enumerate(scenarios):
            vals = values(results, impl, name, "outage_s")
            if not vals:
                continue
            x = j + (k - (len(impls) - 1) / 2) * width
            med = statistics.median(vals)
            ax.bar(x, med, width * 0.9, color=colours.get(impl, "grey"), alpha=0.35,
                   edgecolor=colours.get(impl, "grey"),
                   label=f"{impl} (median, dots = runs)" if j == 0 else None)
            ax.scatter([x] * len(vals), vals, color=colours.get(impl, "grey"), s=18, zorder=3)
            ax.annotate(f"{med * 1000:.0f} ms", (x, max(vals)), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=9)
    ax.axhline(BOUND, color="black", linestyle="--", linewidth=1,
               label=f"CARP bound after host loss: {BOUND:.3f} s")
    ax.axhline(0.1, color="grey", linestyle=":", linewidth=1.2,
               label="pyucarp target for planned hand-offs: 100 ms")
    ax.set_yscale("log")
    ax.set_ylim(0.01, 60)  # the top decade holds the legend, clear of the bars
    ax.set_xticks(range(len(scenarios)), [label for _n, label in scenarios])
    ax.set_xlim(-0.6, len(scenarios) - 0.4)
    ax.set_ylabel("client outage: longest gap in ping replies (s, log scale)")
    ax.set_title("VIP outage seen by a client pinging every 10 ms (advbase 1, backup advskew 20)")
    ax.legend(loc="upper center", ncol=2, fontsize=9, framealpha=0.95)
    ax.grid(axis="y", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
    return {"date": dt.datetime.now().isoformat(timespec="seconds"),
            "kernel": platform.release(), "python": platform.python_version(),
            "cpu": cpu, "cpus": str(os.cpu_count())}


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write results.json and outage.png."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per scenario (1-10)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--only", choices=IMPLS, help="one implementation only")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the table and the plot from DIR/results.json")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        impls = [i for i in IMPLS if i in saved["runs"]]
        print(render(build_rows(saved["runs"], impls), impls))
        plot(saved["runs"], impls, args.out / "outage.png")
        return 0
    if not 1 <= args.reps <= 10:
        parser.error("--reps must be between 1 and 10")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    impls = [args.only] if args.only else list(IMPLS)
    if "ucarp" in impls and not os.access(CUCARP, os.X_OK):
        log(f"{CUCARP} is missing: measuring pyucarp only")
        impls = ["pyucarp"]
    signal.signal(signal.SIGTERM, _on_term)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pyucarp-bench-") as tmp:
        try:
            results = run_all(args.reps, impls, Path(tmp))
        except KeyboardInterrupt:
            log("interrupted: every lab has been torn down")
            return 130
    rows = build_rows(results, impls)
    table = render(rows, impls)
    minutes = (time.monotonic() - started) / 60
    print(table)
    print(f"\n{args.reps} repetitions; median [min-max]; {minutes:.1f} min; "
          f"CARP bound after host loss = 3 x 1 s + 20/256 s = {BOUND:.3f} s")
    summary = {
        "command": " ".join(["python3", "bench/run.py", *(argv if argv is not None
                                                          else sys.argv[1:])]),
        "environment": environment(),
        "reps": args.reps,
        "bound_s": BOUND,
        "targets": TARGETS,
        "table": [{"metric": r.label, "target": r.target, **r.cells, "met": r.met}
                  for r in rows],
        "runs": results,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results, impls, args.out / "outage.png")
    log(f"wrote {args.out / 'results.json'} and {args.out / 'outage.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
