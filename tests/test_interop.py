"""pyucarp beside the real C ucarp (/usr/sbin/ucarp) on one bridge: mixed clusters must work.

The C ucarp hands received adverts over in ~1 s batches and checks its timers once per
poll, so every wait here gives it about a second of slack on top of the protocol times.
The intended master has advskew 0, the backup 100. The first tests run ucarp's default
deadratio 3 (master-down time 3 + 100/256 = 3.39 s). The hand-off tests further down run
two independent pairs in one lab, one each way, through the same timeline, with
deadratio 2 wherever the node's master-down time still covers its peer's advert spacing
(see ``_deadratio``). For every hand-off they check, besides its timing, that the two
hosts never carried the VIP at once (sampled all along), that the old master's downscript
started no later than the new master's upscript, and what each node sent on the wire.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyucarp.lab.daemons import (
    VIP_UP,
    Daemon,
    Impl,
    describe,
    holders,
    masters,
    start_node,
    wait_converged,
)
from pyucarp.lab.netlab import FrameCapture, Host, Lab, largest_gap, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.cucarp, pytest.mark.timeout(120)]

A_IP = "192.0.2.1/24"
B_IP = "192.0.2.2/24"
B_SKEW = 100
C_SLACK = 1.2  # the C ucarp's receive batching plus its poll granularity
C_TAKEOVER_SLACK = 2.3  # a C backup's timeout: one poll (advbase 1 s) + one batch + margin
RecordProperty = Callable[[str, object], None]


def _hosts(lab: Lab) -> tuple[Host, Host]:
    return lab.add_host("a", A_IP), lab.add_host("b", B_IP)


def _mixed_pair(
    lab: Lab, tmp_path: Path, master: Impl, backup: Impl, shutdown: bool = False
) -> tuple[Daemon, Daemon]:
    """The intended master on ``a`` first, until it holds the VIP, then the backup on ``b``."""
    ha, hb = _hosts(lab)
    nm = start_node(ha, tmp_path, impl=master, advskew=0, shutdown=shutdown)
    assert nm.wait_state("MASTER", 3 + 2 * C_SLACK), describe([nm])
    assert wait_until(nm.holds_vip, 3), describe([nm])
    nb = start_node(hb, tmp_path, impl=backup, advskew=B_SKEW, shutdown=shutdown)
    nodes = [nm, nb]
    assert nb.wait_state("BACKUP", 3), describe(nodes)
    # one master, and it stays so for longer than a batching period and an advert interval
    assert wait_converged(nodes, 6, settle=1.5 + C_SLACK) is nm, describe(nodes)
    assert nb.states() == ["BACKUP"], describe(nodes)
    return nm, nb


PAIRS = [("c", "py"), ("py", "c")]
PAIR_IDS = ["C-master+py-backup", "py-master+C-backup"]


@pytest.mark.parametrize("master, backup", PAIRS, ids=PAIR_IDS)
def test_mixed_pair_failover_on_link_loss(
    lab: Lab, tmp_path: Path, master: Impl, backup: Impl, record_property: RecordProperty
) -> None:
    nm, nb = _mixed_pair(lab, tmp_path, master, backup)
    nodes = [nm, nb]
    t_down = time.time()
    nm.host.link_down()
    assert nb.wait_calls("up", 3.4 + 2 * C_SLACK + 1, since=t_down), describe(nodes)
    took = nb.calls("up", since=t_down)[0].t - t_down
    record_property("takeover_s", round(took, 3))
    # master-down 3.39 s after the master's last advert (at most 1 s before the link went)
    assert 1.5 <= took <= 3.4 + C_SLACK + 0.5, f"takeover after {took:.2f} s\n{describe(nodes)}"
    assert wait_until(nb.holds_vip, 3), describe(nodes)
    # the old master saw its carrier go: BACKUP, downscript, VIP removed
    assert nm.wait_state("BACKUP", 1 + C_SLACK + 1), describe(nodes)
    assert nm.wait_calls("down", 2, since=t_down), describe(nodes)
    assert wait_until(lambda: not nm.holds_vip(), 3), describe(nodes)

    nm.host.link_up()
    # back without -P: the old master stays BACKUP past its own master-down time
    time.sleep(3 + C_SLACK)
    assert nm.state() == "BACKUP", describe(nodes)
    assert nb.state() == "MASTER" and holders(nodes) == [nb], describe(nodes)


def test_wrong_password_refused_both_ways(lab: Lab, tmp_path: Path) -> None:
    ha, hb = _hosts(lab)
    hc = lab.add_host("c", "192.0.2.3/24")  # replays the C node's adverts
    with lab.capture_bridge(kinds=("carp",), max_seconds=60) as cap:
        npy = start_node(ha, tmp_path, impl="py", password="alpha", advskew=0, deadratio=1)
        nc = start_node(hb, tmp_path, impl="c", password="bravo", advskew=B_SKEW, deadratio=1)
        nodes = [npy, nc]
        # neither accepts the other's adverts: a misconfigured pair has two masters
        assert npy.wait_state("MASTER", 4) and nc.wait_state("MASTER", 4 + C_SLACK), describe(nodes)
        assert npy.wait_log(r"\[WARNING\] Bad digest", 4), describe(nodes)
        assert nc.wait_log(r"Bad digest", 4 + C_SLACK), describe(nodes)
        assert wait_until(lambda: holders(nodes) == nodes, 3), describe(nodes)

        c_adverts = [f for _, f in cap.frames() if f[26:30] == bytes([192, 0, 2, 2])]
        assert c_adverts
        # a flood of the C node's (authentic, but wrong-key) adverts from a third host
        hc.send_frames([c_adverts[-1]] * 40, interval_s=0.005)
        time.sleep(1.0)
    # the bridge saw the C node's own adverts and the replayed copies alike
    received = sum(1 for _, f in cap.frames() if f[26:30] == bytes([192, 0, 2, 2]))
    assert received >= 40
    warned = npy.count(r"\[WARNING\] Bad digest")
    # rate-limited: a short burst of lines, not one per refused advert
    assert warned <= 10 and warned * 4 < received, (
        f"{warned} warnings for {received} refused adverts\n{describe(nodes)}"
    )
    assert npy.alive() and nc.alive()
    assert npy.state() == "MASTER" and nc.state() == "MASTER", describe(nodes)


@pytest.mark.parametrize("on_a", ["c", "py"], ids=["C-on-.1", "py-on-.1"])
def test_simultaneous_start_with_preempt_converges(lab: Lab, tmp_path: Path, on_a: Impl) -> None:
    ha, hb = _hosts(lab)
    on_b: Impl = "py" if on_a == "c" else "c"
    na = start_node(ha, tmp_path, impl=on_a, advskew=0, preempt=True)
    nb = start_node(hb, tmp_path, impl=on_b, advskew=0, preempt=True)
    nodes = [na, nb]
    # equal (advbase, advskew): between two masters, ucarp's tie-break keeps the smaller
    # native-endian s_addr; these two differ only in the last octet, so 192.0.2.1 wins
    # in either byte order
    # The one that times out first may be heard by the other before its own timer fires:
    # that one then stays BACKUP (-P needs a strictly better pair). When both became
    # MASTER, the tie-break must have kept 192.0.2.1.
    winner = wait_converged(nodes, 6 + 2 * C_SLACK, settle=1.5 + C_SLACK)
    assert winner is not None, describe(nodes)
    loser = nb if winner is na else na
    assert loser.state() == "BACKUP", describe(nodes)
    if "MASTER" in loser.states():
        assert winner is na, describe(nodes)
        assert loser.count("Preferred master advertised: going back to BACKUP state") >= 1


def _tie_key(address: str) -> int:
    """ucarp's tie-break key: the address's network-order bytes read as a native integer."""
    return int.from_bytes(ipaddress.IPv4Address(address).packed, sys.byteorder)


@pytest.mark.parametrize("winner_impl", ["c", "py"], ids=["C-wins", "py-wins"])
def test_split_brain_heals_by_the_address_tie_break(
    lab: Lab, tmp_path: Path, winner_impl: Impl
) -> None:
    # Two addresses whose order differs between network and native byte order, so both
    # implementations must use ucarp's exact tie-break to agree (on x86 the last octet
    # is the most significant: 198.51.100.10 beats 192.0.2.20).
    first, second = "192.0.2.20", "198.51.100.10"
    win_ip, lose_ip = (first, second) if _tie_key(first) < _tie_key(second) else (second, first)
    hw = lab.add_host("w", f"{win_ip}/24")
    hl = lab.add_host("l", f"{lose_ip}/24")
    lose_impl: Impl = "py" if winner_impl == "c" else "c"
    # cut off from each other (carrier stays), both become MASTER with equal priorities
    hw.unplug()
    hl.unplug()
    nw = start_node(hw, tmp_path, impl=winner_impl, advskew=0)
    nl = start_node(hl, tmp_path, impl=lose_impl, advskew=0)
    nodes = [nw, nl]
    both = wait_until(lambda: nw.state() == nl.state() == "MASTER", 3 + 2 * C_SLACK)
    assert both, describe(nodes)
    hw.plug()
    hl.plug()
    assert wait_converged(nodes, 3 + 2 * C_SLACK, settle=1.5 + C_SLACK) is nw, describe(nodes)
    assert nl.count("Preferred master advertised: going back to BACKUP state") >= 1, describe(nodes)
    assert nl.states() == ["BACKUP", "MASTER", "BACKUP"], describe(nodes)
    assert nw.states() == ["BACKUP", "MASTER"], describe(nodes)


# ---------------------------------------------------------------------------------------
# Every hand-off both ways at once: two independent pairs share one lab, one pyucarp
# master with a C backup and one C master with a pyucarp backup, each with its own
# hosts, vhid and VIP, driven through the same timeline.

PY_C, C_PY = "py-master+C-backup", "C-master+py-backup"
LEAVE = (255, 255)  # pyucarp's leave advert (advbase, advskew)
ORDER_SLACK = 0.05  # "at the same time" for script start times on two hosts


def _deadratio(impl: Impl, skew: int, peer_skew: int) -> int:
    """2 where the node's master-down time safely covers its peer's advert spacing, else 3.

    pyucarp handles each advert as it arrives, so 2 s always exceeds an interval of at most
    1 + 255/256 s. The C ucarp may see an advert up to a batching period late, so its
    master-down time must also cover the peer's interval plus that period.
    """
    if impl == "py":
        return 2
    return 2 if 2 + skew / 256 >= 1 + peer_skew / 256 + C_SLACK + 0.15 else 3


def _master_down(impl: Impl, skew: int, peer_skew: int) -> float:
    """The node's master-down time with the dead ratio :func:`_deadratio` picks."""
    return _deadratio(impl, skew, peer_skew) + skew / 256


@dataclass
class Pair:
    """One vhid's two nodes; ``a`` is the intended master (advskew 0), ``b`` the backup."""

    label: str
    a: Daemon
    b: Daemon

    @property
    def nodes(self) -> list[Daemon]:
        """Both nodes, ``a`` first."""
        return [self.a, self.b]


def _other(impl: Impl) -> Impl:
    return "py" if impl == "c" else "c"


def _pair_host(lab: Lab, index: int, role: str) -> Host:
    """Host ``<role><index>`` of pair ``index`` (192.0.2.1 and .2 for pair 0, ...), made on
    first use."""
    name = f"{role}{index}"
    existing = lab.hosts.get(name)
    if existing is not None:
        return existing
    return lab.add_host(name, f"192.0.2.{2 * index + (1 if role == 'a' else 2)}/24")


def _pair_node(
    lab: Lab, tmp_path: Path, index: int, role: str, impl: Impl, skew: int, peer_skew: int,
    *, shutdown: bool = False, preempt: bool = False,
) -> Daemon:
    """Start ``impl`` for pair ``index`` (its own vhid and VIP) on host ``<role><index>``."""
    return start_node(_pair_host(lab, index, role), tmp_path, impl=impl, vhid=10 + index,
                      vip=f"192.0.2.{101 + index}", advskew=skew,
                      deadratio=_deadratio(impl, skew, peer_skew), shutdown=shutdown,
                      preempt=preempt)


def _single(nodes: Sequence[Daemon]) -> Daemon | None:
    """The one node that is MASTER and holds the VIP, when exactly one does."""
    ms = masters(nodes)
    return ms[0] if len(ms) == 1 and holders(nodes) == ms else None


def _wait_all_converged(
    pairs: Sequence[Pair], timeout: float, settle: float
) -> list[Daemon | None]:
    """Wait until every pair has a single master holding the VIP, unchanged for ``settle`` s.

    Returns each pair's master (None for a pair that did not converge in time).
    """
    deadline = time.monotonic() + timeout
    current: list[Daemon | None] = [None] * len(pairs)
    while time.monotonic() < deadline:
        current = [_single(p.nodes) for p in pairs]
        if any(m is None for m in current):
            time.sleep(0.05)
            continue
        stable_until = time.monotonic() + settle
        while time.monotonic() < stable_until and [_single(p.nodes) for p in pairs] == current:
            time.sleep(0.05)
        if time.monotonic() >= stable_until:
            return current
    return current


def _start_pairs(
    lab: Lab, tmp_path: Path, a_impls: Sequence[Impl], b_skew: int = B_SKEW, shutdown: bool = False
) -> list[Pair]:
    """One pair per entry (the a-node's implementation; the b-node runs the other one).

    The a-nodes start first and must become MASTER holding their VIP, then the b-nodes
    join as BACKUP, and every pair must settle on its a-node.
    """
    firsts = [_pair_node(lab, tmp_path, i, "a", impl, 0, b_skew, shutdown=shutdown)
              for i, impl in enumerate(a_impls)]
    everyone = list(firsts)
    assert wait_until(lambda: all(n.state() == "MASTER" and n.holds_vip() for n in firsts),
                      3 + 2 * C_SLACK + 1), describe(everyone)
    pairs = []
    for i, (impl, a) in enumerate(zip(a_impls, firsts, strict=True)):
        b = _pair_node(lab, tmp_path, i, "b", _other(impl), b_skew, 0, shutdown=shutdown)
        everyone.append(b)
        pairs.append(Pair(PY_C if impl == "py" else C_PY, a, b))
    assert wait_until(lambda: all(p.b.state() == "BACKUP" for p in pairs), 3), describe(everyone)
    # one master per pair, kept past every backup's master-down time
    settle = max(_master_down(p.b.impl, b_skew, 0) for p in pairs) + 0.3
    assert _wait_all_converged(pairs, 6, settle) == [p.a for p in pairs], describe(everyone)
    return pairs


@dataclass(frozen=True)
class Seen:
    """One CARP advert seen on the bridge."""

    t: float  # monotonic
    advbase: int
    advskew: int


def _adverts(cap: FrameCapture, node: Daemon, since: float = 0.0) -> list[Seen]:
    """The adverts ``node`` sent that crossed the bridge at or after ``since`` (monotonic)."""
    src = ipaddress.IPv4Address(node.host.ip).packed
    return [Seen(t, f[39], f[36]) for t, f in cap.frames()
            if len(f) >= 40 and f[12:14] == b"\x08\x00" and f[23] == 112 and f[26:30] == src
            and t >= since]


class HolderLog:
    """Which hosts of each pair carried their VIP, sampled as fast as ``ip`` answers."""

    def __init__(self, pairs: Sequence[Pair]) -> None:
        self.pairs = list(pairs)
        self.samples: dict[str, list[tuple[float, tuple[str, ...]]]] = {p.label: [] for p in pairs}

    def sample_for(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        """Sample every pair for ``seconds`` (less once ``until`` holds)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until is not None and until()):
            for p in self.pairs:
                names = tuple(n.name for n in holders(p.nodes))
                self.samples[p.label].append((time.monotonic(), names))
            time.sleep(0.01)

    def both_held(self, pair: Pair) -> list[float]:
        """Sample times at which both hosts of ``pair`` carried the VIP."""
        return [t for t, names in self.samples[pair.label] if len(names) > 1]

    def spacing(self) -> float:
        """The longest time between two samples of one pair."""
        gaps = [largest_gap([t for t, _ in s]) for s in self.samples.values() if len(s) > 1]
        return max(gaps, default=float("inf"))


def _first_call(node: Daemon, kind: str, since: float, what: str, nodes: Sequence[Daemon]) -> float:
    calls = node.calls(kind, since=since)
    assert calls, f"{what}: {node.name} ran no {kind}script\n{describe(nodes)}"
    return calls[0].t


def _check_release_before_takeover(
    old: Daemon, new: Daemon, t_wall: float, log: HolderLog, pair: Pair, what: str
) -> float:
    """The old master released the VIP no later than the new one claimed it; the take-over time."""
    down = _first_call(old, "down", t_wall, what, pair.nodes)
    up = _first_call(new, "up", t_wall, what, pair.nodes)
    assert down <= up + ORDER_SLACK, (
        f"{what}: {new.name} ran its upscript {down - up:.3f} s before {old.name} its downscript\n"
        f"{describe(pair.nodes)}")
    assert not log.both_held(pair), f"{what}: VIP on both hosts\n{describe(pair.nodes)}"
    # an exiting ucarp logs no state change: only the live nodes count as masters
    live_masters = [n for n in masters(pair.nodes) if n.alive()]
    assert holders(pair.nodes) == [new] and live_masters == [new], f"{what}\n{describe(pair.nodes)}"
    return up - t_wall


@dataclass(frozen=True)
class Sent:
    """When a signal went to a node, on both clocks."""

    mono: float
    wall: float


def _signal_after_advert(cap: FrameCapture, node: Daemon, signum: int) -> Sent:
    """Send ``signum`` to ``node`` right after one of its adverts crossed the bridge.

    A take-over by timeout then needs the backup's whole master-down time from the signal.
    """
    seen = len(_adverts(cap, node))
    assert wait_until(lambda: len(_adverts(cap, node)) > seen, 2, interval=0.005), node.name
    sent = Sent(time.monotonic(), time.time())
    node.send_signal(signum)
    return sent


def _check_hand_off(
    cap: FrameCapture, log: HolderLog, pair: Pair, old: Daemon, new: Daemon, sent: Sent,
    down_time: float, what: str, *, leave: bool,
) -> float:
    """``old`` left, signalled at ``sent``; ``new`` took over. With ``leave``, pyucarp ``old``
    sent a leave advert and the C ``new`` took over at once; else the C ``old`` left silently
    and pyucarp ``new`` took over after its master-down time (``down_time``)."""
    took = _check_release_before_takeover(old, new, sent.wall, log, pair, what)
    if not leave:
        assert _adverts(cap, old, sent.mono + 0.05) == [], f"{what}: the C node kept advertising"
        last = _adverts(cap, old, sent.mono - 2)[-1].t
        first = _adverts(cap, new, sent.mono)[0].t
        assert down_time - 0.05 <= first - last <= down_time + 0.3, (
            f"{what}: pyucarp advertised {first - last:.2f} s after the last C advert, "
            f"expected {down_time:.2f} s\n{describe(pair.nodes)}")
        return took
    # ~1 s batching; without the leave advert ucarp would wait its whole master-down
    # time (``down_time``) from the signal, which came right after an advert
    assert took < min(2.0, down_time - 0.3), (
        f"{what}: C ucarp took over after {took:.2f} s\n{describe(pair.nodes)}")
    assert new.count(r"Putting MASTER DOWN \(going to time out\)") == 1, describe(pair.nodes)
    left = _adverts(cap, old, sent.mono)
    assert [(s.advbase, s.advskew) for s in left] == [LEAVE], f"{what}: {left}"
    first = _adverts(cap, new, sent.mono)
    assert first and first[0].t > left[0].t, f"{what}: {left} {first}"
    return took


def test_demotion_and_graceful_exit_hand_offs_both_ways(
    lab: Lab, tmp_path: Path, record_property: RecordProperty
) -> None:
    with lab.capture_bridge(kinds=("carp",), max_seconds=90) as cap:
        pc, cp = _start_pairs(lab, tmp_path, ["py", "c"], shutdown=True)
        everyone = pc.nodes + cp.nodes

        # SIGUSR2 to both masters ----------------------------------------------------
        log = HolderLog([pc, cp])
        to_py = _signal_after_advert(cap, pc.a, signal.SIGUSR2)
        to_c = _signal_after_advert(cap, cp.a, signal.SIGUSR2)
        # until the C node's 3 s pause is over and its master-down time has passed again
        log.sample_for(3 + _master_down("c", 0, B_SKEW) + C_SLACK)
        assert log.spacing() < 0.25, f"holders sampled every {log.spacing():.2f} s only"

        took = _check_hand_off(cap, log, pc, pc.a, pc.b, to_py, _master_down("c", B_SKEW, 0),
                               "SIGUSR2, pyucarp master", leave=True)
        record_property("sigusr2_py_to_c_s", round(took, 3))
        # demoted: BACKUP at once, quiet for 3 s, then a listening BACKUP (no -P)
        assert pc.a.states()[-2:] == ["MASTER", "BACKUP"], describe(pc.nodes)

        what = "SIGUSR2, C master"
        took = _check_hand_off(cap, log, cp, cp.a, cp.b, to_c, _master_down("py", B_SKEW, 0),
                               what, leave=False)
        record_property("sigusr2_c_to_py_s", round(took, 3))
        # ucarp went BACKUP at the signal (downscript at once), and after its 3 s pause
        # it stayed a silent BACKUP behind the new master
        assert cp.a.calls("down", since=to_c.wall)[0].t - to_c.wall < 0.5, describe(cp.nodes)
        assert cp.a.alive() and cp.a.states()[-2:] == ["MASTER", "BACKUP"], describe(cp.nodes)
        assert _adverts(cap, cp.a, to_c.mono + 0.05) == [], f"{what}: the C node advertised again"

        # the roles are swapped: -z exit of both new masters ---------------------------
        assert _wait_all_converged([pc, cp], 1, 0.2) == [pc.b, cp.b], describe(everyone)
        log = HolderLog([pc, cp])
        to_c = _signal_after_advert(cap, pc.b, signal.SIGTERM)
        to_py = _signal_after_advert(cap, cp.b, signal.SIGTERM)
        log.sample_for(_master_down("py", 0, B_SKEW) + 1 + C_SLACK + 0.5,
                       until=lambda: not pc.b.alive() and not cp.b.alive()
                       and pc.a.holds_vip() and cp.a.holds_vip())
        log.sample_for(0.3)
        for leaving, sent in ((pc.b, to_c), (cp.b, to_py)):
            assert leaving.wait_exit(5) == 0, describe(everyone)
            assert [c.kind for c in leaving.calls(since=sent.wall)] == ["down"], describe(everyone)

        took = _check_hand_off(cap, log, pc, pc.b, pc.a, to_c, _master_down("py", 0, B_SKEW),
                               "-z exit, C master", leave=False)
        record_property("exit_c_to_py_s", round(took, 3))
        took = _check_hand_off(cap, log, cp, cp.b, cp.a, to_py, _master_down("c", 0, B_SKEW),
                               "-z exit, pyucarp master", leave=True)
        record_property("exit_py_to_c_s", round(took, 3))


SLOW_UP_S = 8


def _make_upscript_slow(node: Daemon, seconds: float) -> None:
    """Rewrite ``node``'s recording upscript: record the call, sleep, then add the VIP.

    Done right after the start: a node's first upscript runs a master-down time later.
    """
    path = node.dir / "up.sh"
    tmp = path.with_name("up.sh.new")
    tmp.write_text(
        "#!/bin/sh\n"
        f'echo "up $(date +%s.%N) $*" >> "{node.record_path}"\n'
        f"sleep {seconds}\n"
        f'exec "{VIP_UP}" "$@"\n'
    )
    tmp.chmod(0o755)
    tmp.replace(path)


def test_slow_upscript_on_a_new_master_both_ways(lab: Lab, tmp_path: Path) -> None:
    with lab.capture_bridge(kinds=("carp",), max_seconds=60) as cap:
        py_m = _pair_node(lab, tmp_path, 0, "a", "py", 0, B_SKEW)
        c_m = _pair_node(lab, tmp_path, 1, "a", "c", 0, B_SKEW)
        for node in (py_m, c_m):
            _make_upscript_slow(node, SLOW_UP_S)
        assert wait_until(lambda: py_m.state() == c_m.state() == "MASTER", 3 + 2 * C_SLACK),\
            describe([py_m, c_m])
        t_master = time.monotonic()
        c_b = _pair_node(lab, tmp_path, 0, "b", "c", B_SKEW, 0)
        py_b = _pair_node(lab, tmp_path, 1, "b", "py", B_SKEW, 0)
        t_backups = time.time()
        pc, cp = Pair(PY_C, py_m, c_b), Pair(C_PY, c_m, py_b)
        everyone = pc.nodes + cp.nodes

        # both upscripts end ~8 s after their MASTER lines; then the pairs settle
        winners = _wait_all_converged([pc, cp], SLOW_UP_S + 3 + 2 * C_SLACK, 1.5 + C_SLACK)
        t_end = time.monotonic()
        assert winners == [py_m, c_m], describe(everyone)

        # pyucarp master: adverts never paused for the script, so the C backup never
        # took over, and the VIP came when the script was done
        up = py_m.calls("up")
        assert len(up) == 1 and py_m.holds_vip(), describe(pc.nodes)
        assert c_b.states() == ["BACKUP"] and c_b.calls("up") == [], describe(pc.nodes)
        gap = largest_gap([s.t for s in _adverts(cap, py_m, t_master)], t_master, t_end)
        assert gap < 1.3, f"pyucarp's adverts paused {gap:.2f} s\n{describe(pc.nodes)}"

        # C master: ucarp waits for its upscript before its first advert, so the pyucarp
        # backup, which never heard it, took over after its master-down time (both hosts
        # became MASTER); once ucarp advertised, the better node (advskew 0) kept it
        c_up = c_m.calls("up")
        assert len(c_up) == 1, describe(cp.nodes)
        first_c = _adverts(cap, c_m, t_master - 1)[0].t
        assert first_c >= t_master + SLOW_UP_S - 1, (
            f"ucarp advertised {first_c - t_master:.2f} s after its MASTER line: "
            f"it no longer waits for its upscript\n{describe(cp.nodes)}")
        took = _first_call(py_b, "up", t_backups, "slow C upscript", cp.nodes) - t_backups
        down_time = _master_down("py", B_SKEW, 0)
        assert down_time - 0.1 <= took <= down_time + 0.6, (
            f"took {took:.2f} s\n{describe(cp.nodes)}"
        )
        assert py_b.states() == ["BACKUP", "MASTER", "BACKUP"], describe(cp.nodes)
        assert py_b.count("Preferred master advertised: going back to BACKUP state") == 1
        # pyucarp handed back as soon as the first advert of the better master arrived
        to_wall = time.time() - time.monotonic()
        back = py_b.calls("down")[-1].t - (first_c + to_wall)
        assert -0.05 <= back < 0.5, f"pyucarp went BACKUP {back:.2f} s after ucarp's first advert"
        assert c_m.states() == ["BACKUP", "MASTER"], describe(cp.nodes)


def test_host_loss_fails_over_and_heals_both_ways(
    lab: Lab, tmp_path: Path, record_property: RecordProperty
) -> None:
    with lab.capture_bridge(kinds=("carp",), max_seconds=60) as cap:
        pc, cp = _start_pairs(lab, tmp_path, ["py", "c"])
        pairs = [pc, cp]
        everyone = pc.nodes + cp.nodes
        t_mono, t_wall = time.monotonic(), time.time()
        # the masters vanish from the segment but keep their carrier: nothing tells them
        for p in pairs:
            p.a.host.unplug()
        for p in pairs:
            # A C backup checks its master-down timer only when poll() returns (up to one
            # advbase late) and sees adverts in ~1 s batches: allow both, plus a margin.
            slack = 0.3 if p.b.impl == "py" else C_TAKEOVER_SLACK
            down_time = _master_down(p.b.impl, B_SKEW, 0)
            assert p.b.wait_calls("up", down_time + slack + 1, since=t_wall), describe(p.nodes)
            last = _adverts(cap, p.a)[-1].t
            assert last < t_mono + 0.05
            # ucarp runs its upscript before its first advert: give the capture a moment
            assert wait_until(lambda b=p.b: bool(_adverts(cap, b, t_mono)), 3), describe(p.nodes)
            first = _adverts(cap, p.b, t_mono)[0].t
            record_property(f"{p.label}_takeover_s", round(first - last, 3))
            assert down_time - 0.05 <= first - last <= down_time + slack, (
                f"{p.label}: backup advertised {first - last:.2f} s after the master's last "
                f"advert\n{describe(p.nodes)}")
            assert wait_until(p.b.holds_vip, 2), describe(p.nodes)
        # cut off, the old masters carry on: two masters per pair
        assert all(p.a.state() == "MASTER" and p.a.holds_vip() for p in pairs), describe(everyone)

        for p in pairs:
            p.a.host.plug()
        # one advert of the better master reaches the other: it steps down
        winners = _wait_all_converged(pairs, 1 + 2 * C_SLACK + 1, 1.5 + C_SLACK)
        assert winners == [p.a for p in pairs], describe(everyone)
        for p in pairs:
            assert p.b.states() == ["BACKUP", "MASTER", "BACKUP"], describe(p.nodes)
            assert p.b.count("Preferred master advertised: going back to BACKUP state") == 1
            assert p.a.states() == ["BACKUP", "MASTER"], describe(p.nodes)


def test_simultaneous_start_with_preempt_and_different_skews_converges(
    lab: Lab, tmp_path: Path
) -> None:
    # both pairs start all four nodes at once, each with -P; a-nodes advskew 0, b-nodes 100
    a_impls: tuple[Impl, Impl] = ("py", "c")
    specs: list[tuple[int, str, Impl, int, int]] = []
    for index, a_impl in enumerate(a_impls):
        specs += [(index, "a", a_impl, 0, B_SKEW), (index, "b", _other(a_impl), B_SKEW, 0)]
    for index, role, _, _, _ in specs:  # hosts first, so the daemons start close together
        _pair_host(lab, index, role)
    t0 = time.monotonic()
    nodes = [_pair_node(lab, tmp_path, i, role, impl, skew, peer, preempt=True)
             for i, role, impl, skew, peer in specs]
    pc, cp = Pair(PY_C, nodes[0], nodes[1]), Pair(C_PY, nodes[2], nodes[3])
    winners = _wait_all_converged([pc, cp], 3 + 2 * C_SLACK + 1, 1.5 + C_SLACK)
    assert winners == [pc.a, cp.a], describe(nodes)
    # bounded: settled within a master-down time, a batching period and the settle time
    took = time.monotonic() - t0
    bound = 2 + B_SKEW / 256 + 2 * C_SLACK + 1.5 + C_SLACK + 1
    assert took < bound, f"{took:.2f} s\n{describe(nodes)}"
    for p in (pc, cp):
        assert p.b.state() == "BACKUP", describe(p.nodes)
        if "MASTER" in p.b.states():
            # it timed out before hearing the better node: that node's first advert sent it back
            assert p.b.count("Preferred master advertised: going back to BACKUP state") >= 1
        assert p.a.states() == ["BACKUP", "MASTER"], describe(p.nodes)
