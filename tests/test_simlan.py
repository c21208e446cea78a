"""Clusters of pyucarp state machines on a simulated segment (tests/simlan.py).

Frames go through the real codec; time is virtual. Each test states a protocol bound and
measures it: how long two nodes were MASTER at once, how long none was, and, for the
hand-offs, how long two nodes held the address at once (never, when a master leaves).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Literal

import pytest

from pyucarp.core.codec import DropReason
from pyucarp.core.machine import (
    Reason,
    State,
    interval,
    leave_takeover_delay,
    master_down_interval,
)
from simlan import LinkModel, NodeSpec, SimLan

D = 0.0005  # one-way link delay
TOL = 1e-9


def ip(n: int) -> IPv4Address:
    return IPv4Address(f"192.0.2.{n}")


def lan(
    *specs: NodeSpec, seed: int = 0, link: LinkModel = LinkModel(delay=D), start: float = 0.0
) -> SimLan:
    sim = SimLan(seed=seed, link=link)
    for s in specs:
        sim.add(s, start_at=start)
    return sim


def assert_settled(sim: SimLan, since: float) -> None:
    """Exactly one master, every other running node BACKUP, nothing changed since ``since``."""
    assert len(sim.masters()) == 1, sim.states()
    assert all(s in (State.MASTER, State.BACKUP, None) for s in sim.states().values())
    assert sim.transitions_between(since, sim.now) == []
    assert sim.dual_master_time(since) == 0 and sim.no_master_time(since) == 0


def assert_leave_hand_off(sim: SimLan, old: str, new: str, at: float) -> float:
    """``old`` left MASTER at ``at`` (demotion, maintenance or -z): its downscript ran at
    once, its leave advert went out as the downscript ended and not before, ``new`` took
    over one frame and an eighth of its skew later, and the address was never on two nodes.
    Returns when ``new`` took over."""
    o, n = sim.nodes[old], sim.nodes[new]
    takeovers = sim.became_master(new, after=at)
    assert takeovers, sim.transitions_between(at, sim.now)
    took = takeovers[0]
    downs = [(s, e) for s, e, kind in o.script_runs if kind == "down" and s >= at]
    assert downs and downs[0] == (at, at + o.spec.script_time)
    gone = downs[0][1]
    sent = [(t, ad.is_leave) for t, ad in o.sent if at <= t <= took]
    assert sent == [(gone, True)]  # nothing while the address was still here
    assert gone + D - TOL <= took
    assert took <= gone + sim.link.max_delay + leave_takeover_delay(n.spec.advskew) + TOL
    # with no master from ``at`` (old is BACKUP at once) until ``new`` took over
    assert sim.no_master_time(at - 1, took + 0.5) == pytest.approx(took - at, abs=TOL)
    assert sim.dual_master_time(at - 1, took + 0.5) == 0
    # the address: old's ends with its downscript; new's begins when it takes over
    assert [e for s, e in sim.vip_holds(old) if s < at <= e] == [gone]
    assert [s for s, _ in sim.vip_holds(new) if s >= at][:1] == [took]
    assert sim.vip_overlap_time(at - 1, took + 0.5) == 0
    return took


# ---------------------------------------------------------------- convergence


@pytest.mark.parametrize("n", [2, 3, 4, 5])
@pytest.mark.parametrize("preempt", [False, True])
def test_one_master_after_convergence(n: int, preempt: bool) -> None:
    for seed in range(25):
        rng = random.Random(seed * 10 + n)
        skews = rng.sample(range(0, 250), n)
        sim = SimLan(seed=seed, link=LinkModel(delay=D, spread=0.001, jitter=0.0005))
        starts = [rng.uniform(0, 2) for _ in skews]
        for i, skew in enumerate(skews):
            spec = NodeSpec(f"n{i}", ip(10 + i), advskew=skew, preempt=preempt)
            sim.add(spec, start_at=starts[i])
        sim.run(30.0)
        assert_settled(sim, 12.0)
        if preempt:
            assert sim.masters() == [f"n{skews.index(min(skews))}"], (seed, skews)
        # nothing is on the wire before the first master: it is the earliest master-down expiry
        first = min(t for name in sim.nodes for t in sim.became_master(name))
        assert first == min(st + 3 + sk / 256 for st, sk in zip(starts, skews, strict=True))
        assert sim.no_master_time(first) == 0


def test_simultaneous_start_with_distinct_skews_has_no_dual_master() -> None:
    """Skews 1/256 s apart exceed the link delay: the lowest skew wins alone."""
    sim = lan(*(NodeSpec(f"n{i}", ip(10 + i), advskew=i) for i in range(5)))
    sim.run(20)
    assert sim.masters() == ["n0"]
    assert sim.became_master("n0") == [3.0]
    assert sim.dual_master_time() == 0
    assert sim.no_master_time(3.0) == 0


def test_neutral_start_runs_no_downscript() -> None:
    sim = lan(NodeSpec("a", ip(1), neutral=True), NodeSpec("b", ip(2), advskew=50))
    sim.run(10)
    assert sim.nodes["a"].scripts[0] == (3.0, "up")
    assert sim.nodes["b"].scripts == [(0.0, "down")]


def test_frames_really_cross_the_codec() -> None:
    sim = lan(NodeSpec("a", ip(1)), NodeSpec("b", ip(2), advskew=10))
    sim.run(10)
    a, b = sim.nodes["a"], sim.nodes["b"]
    assert len(b.accepted) == len([s for s in a.sent if s[0] <= 10 - D])
    assert all(adv.src == ip(1) and adv.counter == sent.counter
               for (_, adv), (_, sent) in zip(b.accepted, a.sent, strict=False))
    assert sum(b.drops.values()) == 0


# ---------------------------------------------------------------- failure and takeover


@pytest.mark.parametrize("kill_at", [10.0, 10.3, 10.999])
def test_takeover_exactly_at_master_down_time_after_last_advert(kill_at: float) -> None:
    sim = lan(NodeSpec("a", ip(1)), NodeSpec("b", ip(2), advskew=20),
              NodeSpec("c", ip(3), advskew=100))
    sim.kill("a", at=kill_at)
    sim.run(25)
    assert sim.masters() == ["b"]
    b = sim.nodes["b"]
    (took_over,) = sim.became_master("b")
    last_rx = b.last_accepted_before(kill_at + D)
    assert last_rx is not None
    assert took_over == pytest.approx(last_rx + 3 + 20 / 256, abs=TOL)
    last_sent = max(t for t, _ in sim.nodes["a"].sent)
    assert 0 <= last_rx - last_sent <= D + TOL
    # the VIP was unowned from the kill until the takeover, within the protocol bound
    gap = sim.no_master_time(0.0 + 3.1)
    assert gap == pytest.approx(took_over - kill_at, abs=TOL)
    assert 2 + 20 / 256 <= gap <= 3 + 20 / 256 + D + TOL
    assert sim.dual_master_time() == 0
    assert sim.became_master("c") == []


def test_kill_and_revive_without_and_with_preempt() -> None:
    for preempt in (False, True):
        sim = lan(NodeSpec("a", ip(1), preempt=preempt), NodeSpec("b", ip(2), advskew=30))
        sim.kill("a", at=10.5)
        sim.revive("a", at=20.0)
        sim.run(40)
        assert sim.masters() == (["a"] if preempt else ["b"])
        if preempt:
            (back,) = sim.became_master("a", after=20)
            assert back <= 20 + 1 + 30 / 256 + D + TOL  # at the first advert of b it hears
            assert sim.dual_master_time(20) <= D + TOL
        assert sim.no_master_time(20) == 0


# ---------------------------------------------------------------- preemption and ties


def test_preemption_by_a_better_node_that_joins() -> None:
    sim = SimLan(link=LinkModel(delay=D))
    sim.add(NodeSpec("a", ip(1), advskew=100))
    sim.add(NodeSpec("b", ip(2), advskew=0, preempt=True), start_at=10.0)
    sim.run(30)
    assert sim.masters() == ["b"]
    (t,) = sim.became_master("b")
    assert 10 < t <= 10 + 1 + 100 / 256 + D + TOL
    assert sim.transitions_between(t, 30)[-1].node == "a"  # a stepped down on hearing b
    assert sim.dual_master_time() <= D + TOL
    assert sim.no_master_time(3 + 100 / 256 + TOL) == 0
    assert [k for _, k in sim.nodes["a"].scripts] == ["down", "up", "down"]


def test_better_node_without_preempt_stays_backup() -> None:
    sim = SimLan(link=LinkModel(delay=D))
    sim.add(NodeSpec("a", ip(1), advskew=100))
    sim.add(NodeSpec("b", ip(2), advskew=0), start_at=10.0)
    sim.run(60)
    assert sim.masters() == ["a"] and sim.became_master("b") == []


@pytest.mark.parametrize(("byteorder", "winner"), [("little", "x"), ("big", "y")])
def test_tie_break_with_equal_skews(byteorder: Literal["little", "big"], winner: str) -> None:
    """Both time out together; the lower native-endian address stays master."""
    x, y = IPv4Address("10.0.1.1"), IPv4Address("10.0.0.2")  # little: x lower; big: y lower
    sim = lan(NodeSpec("x", x, byteorder=byteorder), NodeSpec("y", y, byteorder=byteorder))
    sim.run(20)
    assert sim.became_master("x") == [3.0] and sim.became_master("y") == [3.0]
    assert sim.masters() == [winner]
    assert sim.dual_master_time() <= D + TOL
    loser = "y" if winner == "x" else "x"
    assert [t.why for t in sim.transitions if t.node == loser][-1] == Reason.PREFERRED_MASTER.value


# ---------------------------------------------------------------- graceful hand-over


def three(preempt: bool = False, script_time: float = 0.05) -> SimLan:
    """a (skew 0, the master), b (10), c (50); ``script_time``: how long a's scripts take."""
    return lan(
        NodeSpec("a", ip(1), advskew=0, preempt=preempt, script_time=script_time),
        NodeSpec("b", ip(2), advskew=10, preempt=preempt),
        NodeSpec("c", ip(3), advskew=50, preempt=preempt),
        link=LinkModel(delay=D, spread=0.0005),
    )


# a's downscript: instant, the default, and slow but within b's master-down time
SCRIPT_TIMES = [0.0, 0.05, 1.5]


def leaving(how: Literal["demote", "shutdown"], at: float, node: str = "a", *,
            preempt: bool = False, script_time: float = 0.05) -> SimLan:
    """:func:`three` run for 40 s, ``node`` demoted or shut down at ``at``."""
    sim = three(preempt=preempt, script_time=script_time)
    getattr(sim, how)(node, at=at)
    sim.run(40)
    return sim


@pytest.mark.parametrize("script_time", SCRIPT_TIMES)
def test_demotion_hands_over_within_the_takeover_skew(script_time: float) -> None:
    sim = leaving("demote", 20.25, script_time=script_time)
    assert sim.masters() == ["b"]
    assert_leave_hand_off(sim, "a", "b", at=20.25)
    assert len(sim.became_master("b")) == 1
    assert sim.dual_master_time() == 0 and sim.vip_overlap_time() == 0
    bound = script_time + sim.link.max_delay + leave_takeover_delay(10) + TOL
    assert sim.no_master_time(10) <= bound
    assert sim.became_master("c") == []  # b's first advert cancelled c's longer wait
    a = sim.nodes["a"]
    assert a.scripts[-1] == (20.25, "down")
    assert sim.became_master("a", after=20.25) == []  # quiet, then a normal backup


def test_demotion_with_preempt_returns_after_the_quiet_time() -> None:
    sim = leaving("demote", 20.25, preempt=True)
    assert sim.masters() == ["a"]
    assert_leave_hand_off(sim, "a", "b", at=20.25)
    (back,) = sim.became_master("a", after=20.25)
    assert 23.25 <= back <= 23.25 + 1 + 10 / 256 + sim.link.max_delay + TOL
    assert sim.dual_master_time() <= sim.link.max_delay + TOL
    assert sim.no_master_time(10) <= 0.05 + sim.link.max_delay + leave_takeover_delay(10) + TOL
    # Preemption is no leave: a takes the address, b drops it once it heard a's advert.
    b = sim.nodes["b"]
    assert sim.vip_overlap_time(back - 1) <= sim.link.max_delay + b.spec.script_time + TOL


@pytest.mark.parametrize("script_time", SCRIPT_TIMES)
def test_shutdown_hands_over_within_the_takeover_skew(script_time: float) -> None:
    sim = leaving("shutdown", 20.5, script_time=script_time)
    assert sim.masters() == ["b"]
    a = sim.nodes["a"]
    assert a.scripts[-1] == (20.5, "down") and not a.alive
    # the process lived on until its downscript had ended and its leave had gone out
    exits = [(tr.time, tr.old, tr.why) for tr in sim.transitions
             if tr.node == "a" and tr.new is None]
    assert exits == [(20.5 + script_time, State.BACKUP, "exited")]
    assert_leave_hand_off(sim, "a", "b", at=20.5)
    bound = script_time + sim.link.max_delay + leave_takeover_delay(10) + TOL
    assert sim.no_master_time(10) <= bound
    assert sim.dual_master_time() == 0 and sim.vip_overlap_time() == 0


def test_shutdown_drains_every_queued_script_before_the_leave() -> None:
    """-z just after a takeover: the upscript still runs, the downscript queues behind it;
    the leave goes out when the last one ended, and only then does the process end."""
    sim = lan(NodeSpec("a", ip(1), script_time=0.4), NodeSpec("b", ip(2), advskew=10),
              link=LinkModel(delay=D))
    sim.kill("b", at=0.0)  # alone first: a becomes MASTER at 3.0, its upscript runs to 3.4
    sim.revive("b", at=2.5)
    sim.shutdown("a", at=3.1)
    sim.run(20)
    a = sim.nodes["a"]
    runs = [(s, e, k) for s, e, k in a.script_runs if s >= 3]
    assert runs == [(3.0, 3.4, "up"), (3.4, 3.8, "down")]
    assert [(t, ad.is_leave) for t, ad in a.sent if t > 3.0] == [(3.8, True)]
    assert [tr.time for tr in sim.transitions if tr.node == "a" and tr.new is None] == [3.8]
    assert sim.masters() == ["b"]
    (took,) = sim.became_master("b")
    assert 3.8 + D <= took <= 3.8 + D + leave_takeover_delay(10) + TOL
    assert sim.vip_overlap_time() == 0


def test_shutdown_of_a_backup_changes_nothing() -> None:
    sim = leaving("shutdown", 20.5, "c")
    assert sim.masters() == ["a"] and sim.nodes["c"].scripts == [(0.0, "down")]
    assert sim.no_master_time(3) == 0
    assert [tr.time for tr in sim.transitions if tr.node == "c" and tr.new is None] == [20.5]


def test_maintenance_hands_over_and_back() -> None:
    sim = three(preempt=True)
    sim.set_maintenance("a", True, at=20.25)
    sim.set_maintenance("a", False, at=30.0)
    sim.run(50)
    assert sim.masters() == ["a"]
    assert_leave_hand_off(sim, "a", "b", at=20.25)
    assert sim.dual_master_time() <= sim.link.max_delay + TOL
    assert sim.no_master_time(10) <= 0.05 + sim.link.max_delay + leave_takeover_delay(10) + TOL
    assert sim.vip_overlap_time(10, 30) == 0
    # back by preemption (no leave): bounded by one frame and b's downscript
    assert sim.vip_overlap_time(30) <= sim.link.max_delay + sim.nodes["b"].spec.script_time + TOL


@pytest.mark.parametrize("scripts_ok", [True, False])
def test_failing_downscript_still_hands_over(scripts_ok: bool) -> None:
    sim = lan(NodeSpec("a", ip(1), scripts_ok=scripts_ok), NodeSpec("b", ip(2), advskew=10))
    sim.demote("a", at=10.25)
    sim.run(20)
    assert sim.masters() == ["b"]
    assert_leave_hand_off(sim, "a", "b", at=10.25)


def test_downscript_slower_than_the_master_down_time() -> None:
    """The leave waits for the downscript; the backups do not: b takes over by its own
    timer while a's downscript still runs (so the address may be on both meanwhile), and
    a, having heard b, never sends its now pointless leave."""
    sim = leaving("demote", 20.25, script_time=4.0)
    b = sim.nodes["b"]
    took = sim.became_master("b")[0]
    last_rx = b.last_accepted_before(20.25 + sim.link.max_delay)
    assert last_rx is not None
    assert took == pytest.approx(last_rx + 3 + 10 / 256, abs=TOL) and took < 24.25
    assert [(t, ad.is_leave) for t, ad in sim.nodes["a"].sent if t >= 20.25] == []
    assert sim.masters() == ["b"]


def test_a_late_leave_after_a_takeover_starts_no_second_takeover() -> None:
    sim = leaving("demote", 20.25, script_time=4.0)
    assert sim.became_master("c") == []
    assert sim.dual_master_time() == 0


# ---------------------------------------------------------------- segment trouble


def test_partition_makes_two_masters_and_healing_one() -> None:
    sim = lan(NodeSpec("a", ip(1), advskew=0), NodeSpec("b", ip(2), advskew=10))
    sim.partition([["a"], ["b"]], at=10.0)
    sim.heal(at=20.0)
    sim.run(40)
    assert sim.masters() == ["a"]
    assert sim.dual_master_time(10, 20) > 6
    assert sim.dual_master_time(20) <= 1 + 10 / 256 + D + TOL  # until a's next advert arrives


def test_unplugged_master_gives_up_and_the_backup_takes_over() -> None:
    sim = lan(NodeSpec("a", ip(1)), NodeSpec("b", ip(2), advskew=10))
    sim.set_link("a", False, at=10.5)
    sim.set_link("a", True, at=20.0)
    sim.run(40)
    assert sim.masters() == ["b"]
    assert sim.nodes["a"].scripts[-1] == (10.5, "down")
    assert sim.dual_master_time() == 0
    assert sim.no_master_time(3) <= 3 + 10 / 256 + D + TOL


def test_failing_sends_let_the_backup_take_over_cleanly() -> None:
    sim = lan(NodeSpec("a", ip(1)), NodeSpec("b", ip(2), advskew=10))
    sim.set_send_ok("a", False, at=10.5)
    sim.set_send_ok("a", True, at=30.0)
    sim.run(50)
    a = sim.nodes["a"]
    assert any(ad.advskew == 240 for _, ad in a.sent)  # suppressed after three errors
    assert sim.masters() == ["b"]
    # a believed itself master until it heard b, at b's first advert
    assert sim.dual_master_time() <= D + TOL


def test_wrong_password_is_dropped_as_bad_digest_and_both_are_master() -> None:
    sim = lan(NodeSpec("a", ip(1)), NodeSpec("b", ip(2), advskew=10, password=b"other"))
    sim.run(20)
    assert sim.masters() == ["a", "b"]
    assert sim.nodes["a"].drops[DropReason.BAD_DIGEST] > 10
    assert sim.nodes["b"].drops[DropReason.BAD_DIGEST] > 10
    assert sim.dual_master_time() > 16


@pytest.mark.parametrize("seed", range(6))
def test_loss_and_duplication_never_leave_the_segment_without_master(seed: int) -> None:
    link = LinkModel(delay=D, spread=0.001, jitter=0.002, loss=0.15, duplicate=0.2)
    sim = lan(NodeSpec("a", ip(1)), NodeSpec("b", ip(2), advskew=20),
              NodeSpec("c", ip(3), advskew=40), seed=seed, link=link)
    sim.run(300)
    assert sim.frames_lost > 0
    assert sim.no_master_time(3 + 2 * link.max_delay) == 0  # the best node never steps down
    assert "a" in sim.masters()
    assert sim.dual_master_time() <= 0.02 * 300  # spurious takeovers are short-lived
    assert all(t.node != "a" or t.time < 4 for t in sim.transitions)


def test_random_disturbances_always_settle() -> None:
    """Random kills, revivals, exits, demotions, maintenance, unplugging, failing sends and
    partitions on a loss-free segment: after each calm period, exactly one master."""
    kinds = ["kill", "shutdown", "demote", "maintenance", "link", "sendfail", "partition"]
    for seed in range(40):
        rng = random.Random(seed)
        n = rng.randint(2, 5)
        skews = rng.sample(range(0, 200), n)
        sim = SimLan(seed=seed, link=LinkModel(delay=D, spread=0.001, jitter=0.001))
        names = [f"n{i}" for i in range(n)]
        for i, name in enumerate(names):
            sim.add(NodeSpec(name, ip(10 + i), advbase=rng.choice([1, 1, 2]), advskew=skews[i],
                             preempt=rng.random() < 0.5), start_at=rng.uniform(0, 1))
        t = 10.0
        for _ in range(8):
            what, victim = rng.choice(kinds), rng.choice(names)
            holder = sim.masters() == [victim]
            if what == "kill":
                sim.kill(victim, at=t)
                sim.revive(victim, at=t + 5)
            elif what == "shutdown":
                sim.shutdown(victim, at=t)
                sim.revive(victim, at=t + 5)
            elif what == "demote":
                sim.demote(victim, at=t)
            elif what == "maintenance":
                sim.set_maintenance(victim, True, at=t)
                sim.set_maintenance(victim, False, at=t + 5)
            elif what == "link":
                sim.set_link(victim, False, at=t)
                sim.set_link(victim, True, at=t + 5)
            elif what == "sendfail":
                sim.set_send_ok(victim, False, at=t)
                sim.set_send_ok(victim, True, at=t + 5)
            else:
                sim.partition([[victim]], at=t)
                sim.heal(at=t + 5)
            t += 25
            sim.run(t)
            assert len(sim.masters()) == 1, (seed, what, sim.states())
            assert sim.dual_master_time(t - 5, t) == 0 and sim.no_master_time(t - 5, t) == 0
            if holder and what in ("shutdown", "demote", "maintenance"):
                # a leave hand-off: the victim's address is gone before anyone else's is up
                left = t - 25
                (gone,) = [e for s, e in sim.vip_holds(victim) if s < left <= e]
                assert gone == left + sim.nodes[victim].spec.script_time
                taken = [s for name in names if name != victim
                         for s, _ in sim.vip_holds(name) if left <= s <= left + 5]
                assert taken and min(taken) >= gone, (seed, what, victim)


# ---------------------------------------------------------------- advbase 0 (sub-second)


def test_advbase_zero_fails_over_after_three_intervals_of_the_backup() -> None:
    """-b 0: the master advertises every 13/256 s; its backup (-k 26) waits 3 x 26/256 s,
    the dead ratio applied to the whole interval (OpenBSD), not ucarp's one interval."""
    sim = lan(NodeSpec("a", ip(1), advbase=0, advskew=13),
              NodeSpec("b", ip(2), advbase=0, advskew=26))
    sim.run(5)
    assert sim.masters() == ["a"]
    sim.kill("a", at=5.0)
    sim.run(7)
    last = max(t for t, _ in sim.nodes["a"].sent)
    took = sim.became_master("b", after=5.0)
    assert len(took) == 1
    assert took[0] == pytest.approx(last + D + 3 * 26 / 256, abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_advbase_zero_rides_out_ten_percent_loss(seed: int) -> None:
    """10 % of frames lost for ten minutes: the backup never takes over (with ucarp's
    master-down time of one interval it would, about once every hundred adverts)."""
    link = LinkModel(delay=D, jitter=0.002, loss=0.10)
    sim = lan(NodeSpec("a", ip(1), advbase=0, advskew=13),
              NodeSpec("b", ip(2), advbase=0, advskew=26), seed=seed, link=link)
    sim.run(600)
    assert sim.frames_lost > 1000
    assert sim.became_master("b") == []
    assert sim.masters() == ["a"]


def test_advbase_zero_backup_with_the_lower_skew_does_not_take_over_at_once() -> None:
    """ucarp's "master advertises too slowly" rule would make a -b 0 -k 13 backup take over
    from a -b 0 -k 26 master on its first advert; at advbase 0 it waits, as OpenBSD does."""
    sim = lan(NodeSpec("a", ip(1), advbase=0, advskew=26), start=0.0)
    sim.add(NodeSpec("b", ip(2), advbase=0, advskew=13), start_at=1.0)
    sim.run(30)
    assert sim.masters() == ["a"]
    assert sim.became_master("b") == []



# ---------------------------------------------------------------- service health

CI = 0.5  # how often the checks run
FIRST = 0.25  # the first run of every check


def tracked(name: str, n: int, *, advskew: int = 0, preempt: bool = False, fall: int = 1,
            rise: int = 1, weight: int | None = None) -> NodeSpec:
    """A node with one tracked check."""
    return NodeSpec(name, ip(n), advskew=advskew, preempt=preempt, tracked=True, fall=fall,
                    rise=rise, track_weight=weight)


def checks(sim: SimLan, name: str, ok: Callable[[float], bool], end: float = 200.0
           ) -> list[tuple[float, bool]]:
    """``name``'s check every CI seconds from FIRST to ``end``, ending ``ok(t)``."""
    return sim.check_series(name, ok, FIRST, end, CI)


def always(_t: float) -> bool:
    return True


def failing_pair(preempt: bool) -> SimLan:
    """a (skew 0) and b (skew 10), fall and rise 2; a's check fails from 20 s to 30 s."""
    sim = lan(tracked("a", 1, preempt=preempt, fall=2, rise=2),
              tracked("b", 2, advskew=10, fall=2, rise=2))
    checks(sim, "a", lambda t: not 20 <= t < 30)
    checks(sim, "b", always)
    return sim


def first_result(series: list[tuple[float, bool]], ok: bool, after: float) -> float:
    return min(t for t, r in series if r is ok and t >= after)


def test_a_failing_check_hands_the_address_over_by_the_leave() -> None:
    """Bound: the first failed result at T0 decides nothing with fall 2; the fall-th one,
    (fall - 1) check intervals later, makes a FAULT; its downscript runs, then the leave
    goes out and b takes over one frame and an eighth of its skew later:
    took - T0 <= (fall - 1) * CI + script_time + max_delay + leave_takeover_delay(10)
    (below the brief's fall * CI + hand-off), and the address is never on both nodes."""
    sim = failing_pair(preempt=False)
    sim.run(29)
    a = sim.nodes["a"]
    t0 = min(t for t, _i, ok in a.check_results if not ok)
    assert t0 == 20.25
    fault = t0 + (2 - 1) * CI
    assert [(tr.time, tr.old, tr.new, tr.why) for tr in sim.transitions
            if tr.node == "a" and tr.time >= 20] == [
        (fault, State.MASTER, State.FAULT, Reason.UNHEALTHY.value)]
    took = assert_leave_hand_off(sim, "a", "b", at=fault)
    bound = (2 - 1) * CI + a.spec.script_time + sim.link.max_delay + leave_takeover_delay(10)
    assert fault <= took <= t0 + bound + TOL
    assert took - t0 <= 2 * CI + a.spec.script_time + sim.link.max_delay + 0.125
    assert sim.vip_overlap_time() == 0 and sim.dual_master_time() == 0
    assert sim.masters() == ["b"] and a.state is State.FAULT
    # FAULT is silent: after the leave, a sends nothing at all
    assert [t for t, _ in a.sent if t > fault] == [fault + a.spec.script_time]


def test_recovery_with_preempt_takes_the_address_back() -> None:
    """Bound: the first good result at T1, the rise-th one (rise - 1) intervals later makes
    a BACKUP (no downscript); with -P it takes over at the first advert of b it hears:
    back - T1 <= (rise - 1) * CI + interval(1, 10) + max_delay."""
    sim = failing_pair(preempt=True)
    sim.run(45)
    a, b = sim.nodes["a"], sim.nodes["b"]
    t1 = min(t for t, _i, ok in a.check_results if ok and t >= 30)
    assert t1 == 30.25
    healthy = t1 + (2 - 1) * CI
    (back,) = sim.became_master("a", after=25)
    assert [(tr.time, tr.new, tr.why) for tr in sim.transitions
            if tr.node == "a" and 25 <= tr.time < back] == [
        (healthy, State.BACKUP, Reason.HEALTHY.value)]
    assert [s for s in a.scripts if healthy <= s[0] < back] == []  # no downscript
    assert healthy < back <= t1 + (2 - 1) * CI + interval(1, 10) + sim.link.max_delay + TOL
    assert sim.masters() == ["a"]
    # the hand-off out was a leave (no overlap); the way back is preemption: one frame and
    # b's downscript, as any preemption
    assert sim.vip_overlap_time(0, back) == 0
    assert sim.vip_overlap_time(back) <= sim.link.max_delay + b.spec.script_time + TOL
    assert sim.dual_master_time() <= sim.link.max_delay + TOL


def test_without_preempt_the_recovered_node_stays_backup() -> None:
    sim = failing_pair(preempt=False)
    sim.run(60)
    assert sim.masters() == ["b"] and sim.nodes["a"].state is State.BACKUP
    assert sim.became_master("a", after=10) == []


def test_a_node_failing_from_the_start_never_becomes_master_even_alone() -> None:
    sim = lan(tracked("a", 1, fall=2, rise=2))
    checks(sim, "a", lambda t: t >= 40)
    sim.run(39.9)
    a = sim.nodes["a"]
    assert sim.became_master("a") == [] and a.sent == [] and a.arps == []
    assert a.state is State.FAULT
    assert [(tr.time, tr.new) for tr in sim.transitions if tr.node == "a"][-1] == (
        FIRST, State.FAULT)
    # two good results (rise 2) make it BACKUP; alone, master-down time later it is MASTER
    sim.run(60)
    healthy = 40.25 + CI
    assert sim.became_master("a") == [healthy + master_down_interval(1, 0, 3)]


def test_a_node_whose_checks_never_report_never_becomes_master() -> None:
    sim = lan(tracked("a", 1), NodeSpec("b", ip(2), advskew=100))
    sim.kill("b", at=10.0)
    sim.run(60)
    assert sim.became_master("a") == [] and sim.nodes["a"].sent == []
    assert sim.nodes["a"].state is State.BACKUP


def test_a_node_failing_from_the_start_leaves_the_address_to_its_peer() -> None:
    sim = lan(tracked("a", 1, preempt=True), tracked("b", 2, advskew=100))
    checks(sim, "a", lambda _t: False)
    checks(sim, "b", always)
    sim.run(60)
    assert sim.masters() == ["b"] and sim.became_master("a") == []
    assert sim.nodes["a"].sent == []
    assert sim.became_master("b") == [FIRST + master_down_interval(1, 100, 3)]


def test_a_tracked_interface_losing_carrier_hands_over_at_once() -> None:
    sim = lan(NodeSpec("a", ip(1), tracked=True, checks=0, track_interfaces=("eth1",)),
              NodeSpec("b", ip(2), advskew=10))
    sim.tracked_interface("a", "eth1", True, at=0.0)
    sim.tracked_interface("a", "eth1", False, at=20.3)
    sim.run(30)
    assert sim.masters() == ["b"]
    assert sim.nodes["a"].state is State.FAULT
    took = assert_leave_hand_off(sim, "a", "b", at=20.3)
    assert took - 20.3 <= 0.05 + sim.link.max_delay + leave_takeover_delay(10) + TOL


def flapping(t: float) -> bool:
    """a's service from 10 s to 70 s: up 0.7 s, down 0.7 s, ... (on whole hundredths)."""
    h = round(t * 100)
    return h < 1000 or h >= 7000 or (h - 1000) // 70 % 2 == 0


def runs_of(results: list[bool]) -> list[int]:
    """The lengths of the maximal runs of equal results, in order."""
    return [len(list(run)) for _ok, run in itertools.groupby(results)]


def flap(k: int) -> tuple[SimLan, list[bool]]:
    """a (skew 0, -P) and b (skew 10), a's service flapping; fall = rise = k."""
    sim = lan(tracked("a", 1, preempt=True, fall=k, rise=k), tracked("b", 2, advskew=10))
    series = checks(sim, "a", flapping, end=80)
    checks(sim, "b", always, end=80)
    sim.run(85)
    return sim, [ok for _t, ok in series]


def test_a_flapping_check_moves_the_address_only_as_hysteresis_allows() -> None:
    """a's service toggles every 0.7 s, its check runs every 0.5 s: consecutive results fall
    in the same or the next 0.7 s window (0.5 < 0.7), and three of them span 1 s > 0.7 s,
    so the results come in runs of 1 or 2. Every move of the address needs a verdict change
    of a (to b: a turns FAULT; back: a turns healthy and preempts), and a verdict changes at
    most once per run of min(fall, rise) or more equal results after the first run
    (test_health.py). So with fall = rise = 3 the address never moves; with 1 it moves a
    lot. Each move back is a preemption: at most one frame and b's downscript of overlap."""
    moves: dict[int, int] = {}
    for k in (1, 2, 3):
        sim, results = flap(k)
        runs = runs_of(results)
        window = [flapping(t) for t in (FIRST + CI * i for i in range(160)) if 10 <= t < 70]
        assert max(runs_of(window)) == 2 and min(runs_of(window)) == 1
        a, b = sim.nodes["a"], sim.nodes["b"]
        verdicts = [v for t, v in a.health_changes if t >= 10]
        moves[k] = len(sim.became_master("a", after=10)) + len(sim.became_master("b", after=10))
        assert moves[k] <= len(verdicts) <= sum(1 for n in runs[1:] if n >= k), k
        preemptions = len(sim.became_master("a", after=10))
        assert sim.vip_overlap_time() <= preemptions * (
            sim.link.max_delay + b.spec.script_time) + TOL
        assert sim.dual_master_time() <= preemptions * sim.link.max_delay + TOL
        assert sim.masters() == ["a"]  # healthy again from 70 s
    assert moves[3] == 0
    assert moves[1] > moves[2] > moves[3]
    assert moves[1] >= 30  # without hysteresis the address moves every two seconds or so


def test_weight_mode_a_preempting_backup_takes_over_and_gives_back() -> None:
    """a (skew 0, weight 100, -P) is MASTER; b (skew 50, -P), c (skew 20, no -P). a's check
    fails at 20.25 (fall 1): a advertises skew 100 at once; b preempts on that advert, a
    steps down on b's; c, not preempting, stays BACKUP. a healthy again at 30.25 advertises
    nothing (BACKUP) and takes over at b's next advert, with -P.
    Bounds: took - T0 <= max_delay; back - T1 <= interval(1, 50) + max_delay; the address
    overlaps for at most one frame and a downscript at each move (preemption, no leave)."""
    sim = lan(tracked("a", 1, preempt=True, weight=100), tracked("b", 2, advskew=50, preempt=True),
              tracked("c", 3, advskew=20))
    checks(sim, "a", lambda t: not 20 <= t < 30)
    checks(sim, "b", always)
    checks(sim, "c", always)
    sim.run(45)
    a = sim.nodes["a"]
    t0, t1 = 20.25, 30.25
    (took,) = sim.became_master("b")
    assert {ad.advskew for t, ad in a.sent if t0 <= t <= took + sim.link.max_delay} == {100}
    assert min(t for t, _ad in a.sent if t >= t0) == t0  # at once
    assert t0 < took <= t0 + sim.link.max_delay + TOL
    assert [(tr.new, tr.why) for tr in sim.transitions if tr.node == "a" and t0 <= tr.time < 30
            ] == [(State.BACKUP, Reason.PREFERRED_MASTER.value)]
    assert sim.became_master("c") == []
    (back,) = sim.became_master("a", after=25)
    assert t1 < back <= t1 + interval(1, 50) + sim.link.max_delay + TOL
    assert [ad.advskew for t, ad in a.sent if t >= back][:1] == [0]
    assert sim.masters() == ["a"]
    assert sim.vip_overlap_time() <= 2 * (sim.link.max_delay + 0.05) + TOL
    assert sim.dual_master_time() <= 2 * sim.link.max_delay + TOL
    # none of this was FAULT
    assert all(tr.new is not State.FAULT for tr in sim.transitions)


def test_weight_mode_without_a_preempting_backup_keeps_the_address() -> None:
    sim = lan(tracked("a", 1, weight=100), tracked("b", 2, advskew=50))
    checks(sim, "a", lambda t: t < 20)
    checks(sim, "b", always)
    sim.run(60)
    assert sim.masters() == ["a"] and sim.became_master("b") == []
    assert {ad.advskew for t, ad in sim.nodes["a"].sent if t >= 20.25} == {100}


def test_weight_mode_a_node_failing_from_the_start_still_serves_alone() -> None:
    sim = lan(tracked("a", 1, advskew=10, weight=100))
    checks(sim, "a", lambda _t: False)
    sim.run(30)
    assert sim.became_master("a") == [FIRST + master_down_interval(1, 110, 3)]
    assert {ad.advskew for _t, ad in sim.nodes["a"].sent} == {110}


def test_weight_mode_a_flapping_backup_still_takes_over_from_a_dead_master() -> None:
    """b (skew 10, weight 50) is flapping (fall = rise = 1, 1 s up, 1 s down) when the
    master dies: it must take over within its highest master-down time, 3 + 60/256 s, of
    the last advert it heard; the master-down timer is re-armed by adverts, not by health
    news, or the address could stay on nobody for as long as the check flaps."""
    sim = lan(tracked("a", 1), tracked("b", 2, advskew=10, weight=50))
    checks(sim, "a", always)
    checks(sim, "b", lambda t: t < 10 or int(t - 10) % 2 == 0)
    sim.kill("a", at=20.1)
    sim.run(60)
    b = sim.nodes["b"]
    last_rx = b.last_accepted_before(20.1 + sim.link.max_delay)
    assert last_rx is not None
    took = sim.became_master("b")
    assert took, "b never took over: the address stayed on nobody"
    assert took[0] <= last_rx + master_down_interval(1, 60, 3) + TOL
