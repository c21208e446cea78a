"""The CARP state machine, stepped by hand: explicit ``now``, no sleeps, seeded randomness.

One test (at least) per rule of ``pyucarp.core.machine``'s docstring, then a stateful Hypothesis
test that drives random input sequences against an independent model of ucarp's decisions
(timevals in microseconds, as ``carp.c`` compares them).
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pyucarp.core.codec import Advert, AdvertCodec, CarpFrame, parse_frame
from pyucarp.core.machine import (
    DEMOTION_QUIET,
    SUPPRESSED_ADVSKEW,
    Action,
    CarpMachine,
    Log,
    MasterInfo,
    Params,
    Reason,
    RunScript,
    SendAdvert,
    SendGratuitousArp,
    Severity,
    leave_takeover_delay,
    State,
    StateChanged,
    interval,
    tie_value,
)

ME = IPv4Address("10.0.0.2")
PEER = IPv4Address("10.0.0.3")
OTHER = IPv4Address("10.0.0.4")
EPS = 1e-6
SWITCH_BACKUP = Log(Severity.WARNING, "Switching to state: BACKUP")
SWITCH_MASTER = Log(Severity.WARNING, "Switching to state: MASTER")
PREFERRED = Log(Severity.WARNING, "Preferred master advertised: going back to BACKUP state")
NON_PREFERRED = Log(
    Severity.WARNING,
    "Non-preferred master advertising: reasserting control of VIP with another gratuitous arp",
)
PREEMPTION = Log(Severity.WARNING, "Putting MASTER down - preemption")
TIMING_OUT = Log(Severity.WARNING, "Putting MASTER DOWN (going to time out)")
ARP = SendGratuitousArp()
UP = RunScript("up")
DOWN = RunScript("down")


@dataclass
class Rig:
    """A machine with a recording, seeded random source."""

    m: CarpMachine
    draws: list[int] = field(default_factory=list)


def rig(seed: int = 7, **kw: Any) -> Rig:
    """A fresh machine; Params defaults: srcip ME, little-endian tie-break."""
    kw.setdefault("srcip", ME)
    kw.setdefault("byteorder", "little")
    rng = random.Random(seed)
    draws: list[int] = []

    def random64() -> int:
        v = rng.getrandbits(64)
        draws.append(v)
        return v

    return Rig(CarpMachine(Params(**kw), random64), draws)


def master_rig(start: float = 0.0, **kw: Any) -> tuple[Rig, float]:
    """A machine that became MASTER by its master-down timer; returns it and the time.

    Its start downscript has been reported finished, as the shell does, so that no
    downscript is outstanding.
    """
    r = rig(**kw)
    r.m.start(start)
    assert r.m.script_finished("down", True) == []
    t = r.m.next_wakeup()
    assert t is not None
    r.m.handle_timer(t)
    assert r.m.state is State.MASTER
    return r, t


def adv(advbase: int = 1, advskew: int = 0, src: IPv4Address = PEER, counter: int = 1000) -> Advert:
    return Advert(src=src, advbase=advbase, advskew=advskew, counter=counter)


def of(actions: list[Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def changes(actions: list[Action]) -> list[StateChanged]:
    return of(actions, StateChanged)


# ---------------------------------------------------------------- start


def test_start_goes_backup_and_runs_the_downscript() -> None:
    r = rig()
    initial = r.m.state
    assert initial is State.INIT
    acts = r.m.start(5.0)
    assert acts == [SWITCH_BACKUP, StateChanged(State.INIT, State.BACKUP, Reason.STARTUP), DOWN]
    assert r.m.state is State.BACKUP and r.m.since == 5.0 and r.m.transitions == 1


def test_neutral_start_runs_no_downscript_but_later_backups_do() -> None:
    r = rig(neutral=True)
    acts = r.m.start(0.0)
    assert acts == [SWITCH_BACKUP, StateChanged(State.INIT, State.BACKUP, Reason.STARTUP)]
    r.m.handle_timer(3.0)
    assert r.m.state is State.MASTER
    assert DOWN in r.m.advert_received(3.5, adv(1, 0, src=IPv4Address("10.0.0.1")))


def test_there_is_no_init_to_master() -> None:
    r = rig()
    assert r.m.next_wakeup() is None
    assert r.m.handle_timer(1000.0) == []
    assert r.m.advert_received(1.0, adv(advbase=9)) == []  # INIT ignores adverts
    assert r.m.state is State.INIT


# ---------------------------------------------------------------- master-down timer


@pytest.mark.parametrize(("advbase", "advskew", "deadratio"), [(1, 0, 3), (1, 64, 3), (2, 10, 5), (3, 255, 1), (1, 128, 2)])
def test_master_down_exactly_after_start(advbase: int, advskew: int, deadratio: int) -> None:
    r = rig(advbase=advbase, advskew=advskew, deadratio=deadratio)
    start = 100.0
    r.m.start(start)
    due = start + advbase * deadratio + advskew / 256  # the skew is not multiplied
    assert r.m.next_wakeup() == due
    assert r.m.handle_timer(due - EPS) == [] and r.m.state is State.BACKUP
    acts = r.m.handle_timer(due)
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)]
    assert r.m.since == due


def test_master_down_exactly_after_the_last_accepted_advert() -> None:
    r = rig(advskew=64)
    r.m.start(0.0)
    for t in (1.0, 2.0, 2.5):
        assert r.m.advert_received(t, adv(1, 0)) == []
        assert r.m.next_wakeup() == t + 3.25
    assert r.m.handle_timer(3.25) == []  # the start deadline is gone
    assert r.m.handle_timer(5.75 - EPS) == []
    assert changes(r.m.handle_timer(5.75)) == [StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)]


# ---------------------------------------------------------------- becoming MASTER


def test_becoming_master_actions_in_order() -> None:
    r = rig(advskew=10)
    r.m.start(0.0)
    acts = r.m.handle_timer(3 + 10 / 256)
    assert acts == [
        SWITCH_MASTER,
        StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN),
        SendAdvert(1, 10, r.draws[-1]),
        ARP,
        UP,
    ]
    # pyucarp advertises before the upscript (ucarp ran and waited for it first)
    assert acts.index(SendAdvert(1, 10, r.draws[-1])) < acts.index(UP)
    assert r.m.master == MasterInfo(ME, 1, 10)


def test_adverts_every_interval_and_second_arp_after_the_third() -> None:
    r, t0 = master_rig(advbase=2, advskew=64)
    step = interval(2, 64)
    assert step == 2.25
    assert r.m.next_wakeup() == t0 + step
    for k in range(1, 7):
        t = t0 + k * step
        assert r.m.handle_timer(t - EPS) == []
        acts = r.m.handle_timer(t)
        assert acts[0] == SendAdvert(2, 64, r.draws[-1])
        # advert #1 went out on becoming master; #3 is the second timer advert
        assert acts[1:] == ([ARP] if k == 2 else []), k
        assert r.m.next_wakeup() == t0 + (k + 1) * step


def test_late_timer_keeps_the_cadence_or_restarts_it() -> None:
    r, t0 = master_rig()
    r.m.handle_timer(t0 + 1.3)  # a little late: the next one stays on the grid
    assert r.m.next_wakeup() == t0 + 2
    r.m.handle_timer(t0 + 7.5)  # very late: no burst, one advert and a fresh interval
    assert r.m.next_wakeup() == t0 + 8.5


def test_script_finished_sends_one_more_arp_only_for_a_good_upscript_as_master() -> None:
    r, _ = master_rig()
    assert r.m.script_finished("up", True) == [ARP]
    assert r.m.script_finished("up", False) == []
    assert r.m.script_finished("down", True) == []
    b = rig()
    b.m.start(0)
    assert b.m.script_finished("up", True) == []


# ---------------------------------------------------------------- adverts heard as MASTER


@pytest.mark.parametrize("preempt", [False, True])
def test_master_steps_down_for_a_preferred_master(preempt: bool) -> None:
    r, t0 = master_rig(advskew=100, preempt=preempt)
    t = t0 + 0.5
    acts = r.m.advert_received(t, adv(1, 99, counter=41))
    assert acts == [
        SendAdvert(1, 100, 42),  # one more advert, carrying the peer's counter + 1
        SWITCH_BACKUP,
        StateChanged(State.MASTER, State.BACKUP, Reason.PREFERRED_MASTER),
        DOWN,
        PREFERRED,
    ]
    assert r.m.state is State.BACKUP
    assert r.m.master == MasterInfo(PEER, 1, 99)
    assert r.m.next_wakeup() == t + 3 + 100 / 256


@pytest.mark.parametrize(("ours", "theirs", "steps_down"), [
    ((2, 0), (1, 200), True),  # (1,200) beats (2,0): advbase first
    ((1, 200), (2, 0), False),
    ((1, 10), (1, 9), True),
    ((1, 10), (1, 11), False),
    ((0, 255), (1, 0), False),
])
def test_priorities_compare_lexicographically(ours: tuple[int, int], theirs: tuple[int, int], steps_down: bool) -> None:
    r, t0 = master_rig(advbase=ours[0], advskew=ours[1])
    acts = r.m.advert_received(t0 + 0.1, adv(*theirs))
    assert (r.m.state is State.BACKUP) is steps_down
    assert (PREFERRED in acts) is steps_down
    assert (NON_PREFERRED in acts) is not steps_down


def test_master_reasserts_against_a_worse_master_with_arp_now_and_two_adverts_later() -> None:
    r, t0 = master_rig()
    for _ in range(3):  # past the takeover's own delayed ARP
        t0 += 1
        r.m.handle_timer(t0)
    acts = r.m.advert_received(t0 + 0.5, adv(1, 50))
    assert acts == [ARP, NON_PREFERRED]
    assert r.m.state is State.MASTER
    assert of(r.m.handle_timer(t0 + 1), SendGratuitousArp) == []
    assert of(r.m.handle_timer(t0 + 2), SendGratuitousArp) == [ARP]
    assert of(r.m.handle_timer(t0 + 3), SendGratuitousArp) == []


def test_master_reasserts_against_a_leaving_master() -> None:
    r, t0 = master_rig()
    assert r.m.advert_received(t0 + 0.5, adv(255, 255)) == [ARP, NON_PREFERRED]


@pytest.mark.parametrize(("byteorder", "steps_down"), [("little", True), ("big", False)])
def test_tie_break_native_byte_order(byteorder: Literal["little", "big"], steps_down: bool) -> None:
    """Equal pairs: the lower native-endian address value stays master (ucarp's s_addr <)."""
    low_le = IPv4Address("10.0.1.1")  # 0x0101000a little-endian, 0x0a000101 big-endian
    high_le = IPv4Address("10.0.0.2")  # 0x0200000a little-endian, 0x0a000002 big-endian
    assert tie_value(low_le, "little") < tie_value(high_le, "little")
    assert tie_value(low_le, "big") > tie_value(high_le, "big")
    r, t0 = master_rig(srcip=high_le, byteorder=byteorder)
    acts = r.m.advert_received(t0 + 0.1, adv(1, 0, src=low_le))
    assert (r.m.state is State.BACKUP) is steps_down
    # and the other side of the same pair decides the opposite way
    r2, t1 = master_rig(srcip=low_le, byteorder=byteorder)
    r2.m.advert_received(t1 + 0.1, adv(1, 0, src=high_le))
    assert (r2.m.state is State.BACKUP) is not steps_down
    assert acts


# ---------------------------------------------------------------- adverts heard as BACKUP


def test_backup_preempts_only_a_strictly_worse_master_and_only_with_preempt() -> None:
    for theirs, expect in (((1, 11), True), ((2, 0), True), ((1, 10), False), ((1, 9), False)):
        r = rig(advskew=10, preempt=True)
        r.m.start(0.0)
        # an equal pair never preempts, even when we would win the tie
        acts = r.m.advert_received(1.0, adv(*theirs, src=IPv4Address("10.0.0.200")))
        assert (r.m.state is State.MASTER) is expect, theirs
        if expect:
            assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.PREEMPTION)]
            assert acts[-1] == PREEMPTION  # logged after the switch, as carp.c does
            assert acts.index(SWITCH_MASTER) < acts.index(PREEMPTION)
    r = rig(advskew=0, preempt=False)
    r.m.start(0.0)
    assert r.m.advert_received(1.0, adv(1, 255)) == []
    assert r.m.state is State.BACKUP


@pytest.mark.parametrize(("ours", "ratio", "theirs", "takes_over"), [
    ((1, 0), 3, (5, 0), True),
    ((1, 0), 3, (3, 0), False),
    ((1, 0), 3, (3, 1), True),
    ((1, 10), 3, (3, 10), False),
    ((1, 10), 3, (3, 11), True),
    ((2, 0), 2, (4, 255), True),
    ((2, 0), 3, (4, 255), False),
])
def test_backup_abandons_a_master_that_will_time_out(
    ours: tuple[int, int], ratio: int, theirs: tuple[int, int], takes_over: bool
) -> None:
    r = rig(advbase=ours[0], advskew=ours[1], deadratio=ratio)
    r.m.start(0.0)
    acts = r.m.advert_received(0.5, adv(*theirs))
    assert (r.m.state is State.MASTER) is takes_over
    if takes_over:
        assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.SLOW_MASTER)]
        assert acts[-1] == TIMING_OUT
    else:
        assert acts == [] and r.m.next_wakeup() == 0.5 + ours[0] * ratio + ours[1] / 256


def test_leave_advert_backup_with_skew_0_takes_over_at_once() -> None:
    r = rig(advskew=0)
    r.m.start(0.0)
    r.m.advert_received(1.0, adv(1, 0))
    acts = r.m.advert_received(1.5, adv(255, 255))
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_LEFT)]
    assert r.m.master == MasterInfo(ME, 1, 0)


def test_leave_advert_backup_with_skew_64_waits_an_eighth_of_its_skew() -> None:
    r = rig(advskew=64)
    r.m.start(0.0)
    r.m.advert_received(1.0, adv(1, 0))
    assert r.m.advert_received(1.5, adv(255, 255)) == []
    assert r.m.master is None
    assert leave_takeover_delay(64) == 64 / 256 / 8
    assert r.m.next_wakeup() == 1.53125
    assert r.m.handle_timer(1.53125 - EPS) == []
    acts = r.m.handle_timer(1.53125)
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_LEFT)]


def test_leave_advert_wait_is_cancelled_by_another_nodes_advert() -> None:
    r = rig(advskew=64)
    r.m.start(0.0)
    r.m.advert_received(1.5, adv(255, 255))
    assert r.m.advert_received(1.6, adv(1, 10, src=OTHER)) == []  # a better backup took over
    assert r.m.master == MasterInfo(OTHER, 1, 10)
    assert r.m.next_wakeup() == 1.6 + 3.25
    assert r.m.handle_timer(1.53125) == []
    assert r.m.state is State.BACKUP
    # and if that one goes silent, the ordinary timer applies (reason: master down)
    acts = r.m.handle_timer(4.85)
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)]


def test_leave_advert_with_preempt_still_waits_for_the_skew() -> None:
    r = rig(advskew=64, preempt=True)
    r.m.start(0.0)
    assert r.m.advert_received(1.5, adv(255, 255)) == []
    assert r.m.next_wakeup() == 1.53125


# ---------------------------------------------------------------- demotion (SIGUSR2)


def test_demote_from_master_leaves_then_stays_quiet_three_seconds() -> None:
    r, t0 = master_rig(preempt=True)
    t = t0 + 0.5
    acts = r.m.demote(t)
    # BACKUP and the downscript, no advert: the VIP is still here, nobody may take it yet
    assert acts == [SWITCH_BACKUP, StateChanged(State.MASTER, State.BACKUP, Reason.DEMOTION), DOWN]
    assert r.m.state is State.BACKUP
    assert r.m.next_wakeup() == t + DEMOTION_QUIET == t + 3
    # the downscript's end releases the leave advert (once); the quiet time is unchanged
    n = len(r.draws)
    assert r.m.script_finished("down", True) == [SendAdvert(255, 255, r.draws[n])]
    assert len(r.draws) == n + 1
    assert r.m.script_finished("down", True) == []
    assert r.m.state is State.BACKUP and r.m.next_wakeup() == t + 3
    # quiet: neither a worse master (with preempt), a slow one, a leave nor the clock wakes us
    assert r.m.advert_received(t + 0.5, adv(1, 200)) == []
    assert r.m.advert_received(t + 0.6, adv(9, 0)) == []
    assert r.m.advert_received(t + 0.7, adv(255, 255)) == []
    assert r.m.handle_timer(t + 3 - EPS) == []
    assert r.m.state is State.BACKUP
    assert r.m.handle_timer(t + 3) == []  # quiet over: listen for a full master-down time
    assert r.m.next_wakeup() == t + 6
    # then normal again: preemption of a worse master works
    acts = r.m.advert_received(t + 3.5, adv(1, 200))
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.PREEMPTION)]


def test_demote_then_master_down_after_quiet() -> None:
    r, t0 = master_rig()
    r.m.demote(t0)
    r.m.handle_timer(t0 + 3)
    assert r.m.handle_timer(t0 + 6 - EPS) == []
    assert changes(r.m.handle_timer(t0 + 6))[0].reason is Reason.MASTER_DOWN


def test_demote_in_backup_does_nothing() -> None:
    r = rig()
    r.m.start(0.0)
    assert r.m.demote(1.0) == []
    assert r.m.next_wakeup() == 3.0
    assert changes(r.m.handle_timer(3.0))


# ---------------------------------------------------------------- maintenance


def test_maintenance_on_and_off() -> None:
    r, t0 = master_rig(preempt=True)
    acts = r.m.set_maintenance(t0 + 1, True)
    assert acts == [
        Log(Severity.WARNING, "Entering maintenance: staying BACKUP"),
        SWITCH_BACKUP,
        StateChanged(State.MASTER, State.BACKUP, Reason.MAINTENANCE),
        DOWN,
    ]
    assert r.m.maintenance and r.m.next_wakeup() is None
    leave = r.m.script_finished("down", True)  # the VIP is gone: now the others may take it
    assert len(leave) == 1 and isinstance(leave[0], SendAdvert) and leave[0].is_leave
    assert r.m.state is State.BACKUP and r.m.next_wakeup() is None
    assert r.m.set_maintenance(t0 + 1.5, True) == []
    for a in (adv(1, 200), adv(9, 0), adv(255, 255)):
        assert r.m.advert_received(t0 + 2, a) == []
    assert r.m.handle_timer(t0 + 100) == [] and r.m.state is State.BACKUP
    acts = r.m.set_maintenance(t0 + 100, False)
    assert acts == [Log(Severity.WARNING, "Leaving maintenance")]
    assert r.m.next_wakeup() == t0 + 103
    assert r.m.set_maintenance(t0 + 100, False) == []
    assert changes(r.m.handle_timer(t0 + 103))


def test_maintenance_in_backup_stops_the_timer() -> None:
    r = rig()
    r.m.start(0.0)
    assert r.m.set_maintenance(1.0, True) == [Log(Severity.WARNING, "Entering maintenance: staying BACKUP")]
    assert r.m.next_wakeup() is None


def test_maintenance_released_while_demoted_waits_for_the_quiet_end() -> None:
    r, t0 = master_rig()
    r.m.demote(t0)
    r.m.set_maintenance(t0 + 1, True)
    r.m.set_maintenance(t0 + 2, False)
    assert r.m.next_wakeup() == t0 + 3
    r.m.handle_timer(t0 + 3)
    assert r.m.next_wakeup() == t0 + 6


# ---------------------------------------------------------------- carrier


def test_link_down_as_master() -> None:
    r, t0 = master_rig(preempt=True)
    acts = r.m.set_link(t0 + 0.5, False)
    assert acts == [
        Log(Severity.WARNING, "Interface lost its carrier"),
        SWITCH_BACKUP,
        StateChanged(State.MASTER, State.BACKUP, Reason.LINK_DOWN),
        DOWN,
    ]
    assert of(acts, SendAdvert) == [] and r.m.next_wakeup() is None
    assert r.m.set_link(t0 + 0.6, False) == []
    for a in (adv(1, 200), adv(9, 0), adv(255, 255)):
        assert r.m.advert_received(t0 + 1, a) == []
    assert r.m.handle_timer(t0 + 50) == [] and r.m.state is State.BACKUP
    assert r.m.set_link(t0 + 50, True) == [Log(Severity.WARNING, "Interface carrier is back")]
    assert r.m.next_wakeup() == t0 + 53
    assert changes(r.m.handle_timer(t0 + 53))


def test_link_down_in_backup_and_during_quiet() -> None:
    r, t0 = master_rig()
    r.m.demote(t0)
    r.m.set_link(t0 + 1, False)
    assert r.m.next_wakeup() == t0 + 3  # the quiet deadline remains
    r.m.set_link(t0 + 2, True)  # still quiet: no master-down timer yet
    assert r.m.next_wakeup() == t0 + 3
    r.m.set_link(t0 + 2.5, False)
    r.m.handle_timer(t0 + 3)
    assert r.m.next_wakeup() is None  # quiet over but no carrier
    r.m.set_link(t0 + 4, True)
    assert r.m.next_wakeup() == t0 + 7


def test_advert_while_link_down_is_not_even_followed_for_the_counter() -> None:
    r = rig()
    r.m.start(0)
    r.m.set_link(0.5, False)
    r.m.advert_received(1, adv(counter=5))
    r.m.set_link(2, True)
    acts = r.m.handle_timer(5)
    assert of(acts, SendAdvert)[0].counter == r.draws[-1]


# ---------------------------------------------------------------- shutdown


def test_shutdown_as_master_runs_the_downscript_then_leaves() -> None:
    r, t0 = master_rig()
    acts = r.m.shutdown(t0 + 1)
    assert acts == [StateChanged(State.MASTER, State.BACKUP, Reason.SHUTDOWN), DOWN]
    assert r.m.state is State.BACKUP and r.m.next_wakeup() is None
    n = len(r.draws)
    assert r.m.script_finished("down", True) == [SendAdvert(255, 255, r.draws[n])]
    assert r.m.script_finished("down", True) == []
    assert r.m.next_wakeup() is None


def test_shutdown_as_backup_does_nothing() -> None:
    r = rig()
    r.m.start(0)
    assert r.m.shutdown(1) == [] and r.m.next_wakeup() is None
    r2, t0 = master_rig()
    r2.m.demote(t0)
    assert r2.m.script_finished("down", True) != []  # the demotion's leave went out
    assert r2.m.shutdown(t0 + 1) == [] and r2.m.next_wakeup() is None
    assert r2.m.script_finished("down", True) == []  # and is not sent again


def test_shutdown_while_a_leave_waits_still_sends_it_once() -> None:
    """Demoted, downscript still running, then -z: the shell drains it; the leave goes out."""
    r, t0 = master_rig()
    assert of(r.m.demote(t0), SendAdvert) == []
    assert r.m.shutdown(t0 + 0.1) == []  # already BACKUP: no second downscript
    acts = r.m.script_finished("down", False)
    assert len(acts) == 1 and isinstance(acts[0], SendAdvert) and acts[0].is_leave
    assert r.m.script_finished("down", True) == []


# ---------------------------------------------------------------- send errors


def test_three_send_errors_suppress_and_three_successes_restore() -> None:
    r, t0 = master_rig(advskew=10)
    assert r.m.advert_sent(False) == [] and r.m.advert_sent(False) == []
    assert not r.m.suppressed
    acts = r.m.advert_sent(False)
    assert isinstance(acts[0], Log) and acts[0].severity is Severity.WARNING
    assert of(acts, SendAdvert) == [SendAdvert(1, 240, r.draws[-1])]  # at once, like carp_send_ad_all
    assert r.m.suppressed and r.m.advskew == SUPPRESSED_ADVSKEW
    assert r.m.advert_sent(False) == []  # a fourth error changes nothing
    t = t0 + interval(1, 10)  # scheduled before the suppression
    assert r.m.next_wakeup() == t
    assert of(r.m.handle_timer(t), SendAdvert)[0].advskew == 240
    assert r.m.next_wakeup() == t + 1 + 240 / 256  # the interval follows the advertised skew
    assert r.m.advert_sent(True) == [] and r.m.advert_sent(True) == []
    assert r.m.advert_sent(False) == []  # an error resets the successes
    assert r.m.advert_sent(True) == [] and r.m.advert_sent(True) == []
    acts = r.m.advert_sent(True)
    assert acts == [Log(Severity.NOTICE, "Advertisements work again")]
    assert not r.m.suppressed and r.m.advskew == 10
    t = r.m.next_wakeup()
    assert t is not None
    assert of(r.m.handle_timer(t), SendAdvert)[0].advskew == 10


def test_send_errors_need_to_be_consecutive() -> None:
    r, _ = master_rig()
    for ok in (False, False, True, False, False, True):
        assert r.m.advert_sent(ok) == []
    assert not r.m.suppressed


def test_suppression_keeps_a_higher_skew() -> None:
    r, _ = master_rig(advskew=250)
    for _ in range(3):
        r.m.advert_sent(False)
    assert r.m.suppressed and r.m.advskew == 250


def test_suppressed_backup_compares_with_skew_240() -> None:
    r = rig(advskew=0, preempt=True)
    r.m.start(0)
    for _ in range(3):
        assert of(r.m.advert_sent(False), SendAdvert) == []  # a BACKUP sends nothing
    assert r.m.advert_received(1, adv(1, 100)) == []  # (1,240) is not better than (1,100)
    assert r.m.state is State.BACKUP
    assert r.m.next_wakeup() == 4.0  # the master-down time uses the configured skew
    assert changes(r.m.advert_received(2, adv(1, 241)))


# ---------------------------------------------------------------- counter


def test_counter_is_random_while_alone() -> None:
    r, t0 = master_rig()
    counters = [of(r.m.handle_timer(t0 + k), SendAdvert)[0].counter for k in range(1, 11)]
    assert counters == r.draws[-10:]
    assert len(set(counters)) == 10
    other, _ = master_rig(seed=8)
    assert other.draws[0] != r.draws[0]


def test_counter_follows_the_peer_then_increments_and_wraps() -> None:
    r, t0 = master_rig(advskew=50)
    acts = r.m.advert_received(t0 + 0.2, adv(1, 60, counter=2**64 - 2))  # worse master: we stay
    assert NON_PREFERRED in acts
    n = len(r.draws)
    got = [of(r.m.handle_timer(t0 + k * interval(1, 50)), SendAdvert)[0].counter for k in range(1, 5)]
    assert got == [2**64 - 1, 0, 1, 2]
    assert len(r.draws) == n  # no more random draws


def test_counter_of_a_new_master_is_the_last_peer_counter_plus_one() -> None:
    r = rig()
    r.m.start(0)
    r.m.advert_received(1, adv(counter=10))
    r.m.advert_received(2, adv(counter=500))
    acts = r.m.handle_timer(5)
    assert of(acts, SendAdvert) == [SendAdvert(1, 0, 501)]


# ---------------------------------------------------------------- next_wakeup


def test_next_wakeup_is_the_earliest_deadline_in_every_situation() -> None:
    r = rig(advskew=128)
    assert r.m.next_wakeup() is None
    r.m.start(10)
    assert r.m.next_wakeup() == 13.5
    r.m.handle_timer(13.5)
    assert r.m.next_wakeup() == 15.0
    r.m.demote(14)
    assert r.m.next_wakeup() == 17
    r.m.handle_timer(17)
    assert r.m.next_wakeup() == 20.5
    r.m.advert_received(18, adv(255, 255))
    assert r.m.next_wakeup() == 18 + 128 / 256 / 8
    r.m.set_link(18.01, False)
    assert r.m.next_wakeup() is None


def test_next_wakeup_reports_a_deadline_at_time_zero() -> None:
    r = rig()
    r.m.start(-3.0)
    assert r.m.next_wakeup() == 0.0


@pytest.mark.parametrize("how", ["demote", "maintenance", "shutdown"])
def test_leave_advert_sends_no_gratuitous_arp(how: str) -> None:
    r, t0 = master_rig()
    r.m.handle_timer(t0 + 1)  # advert #2: the delayed ARP now waits for the next advert
    t = t0 + 1.5
    if how == "demote":
        acts = r.m.demote(t)
    elif how == "maintenance":
        acts = r.m.set_maintenance(t, True)
    else:
        acts = r.m.shutdown(t)
    assert DOWN in acts and of(acts, SendAdvert) == [] and ARP not in acts
    acts = r.m.script_finished("down", True)
    assert [a.is_leave for a in of(acts, SendAdvert)] == [True]
    assert ARP not in acts
    # nor later: the ARP that was due with advert #3 is dropped with the VIP
    nw = r.m.next_wakeup()
    assert nw is None or ARP not in r.m.handle_timer(nw)


# ---------------------------------------------------------------- the leave waits for the downscripts


def leave_of(acts: list[Action]) -> bool:
    """True when ``acts`` is exactly one leave advert."""
    return len(acts) == 1 and isinstance(acts[0], SendAdvert) and acts[0].is_leave


def test_leave_waits_for_the_last_outstanding_downscript() -> None:
    """The start's downscript is still running (scripts run in order) when the node becomes
    MASTER and is demoted: the leave goes out after the second downscript, not the first."""
    r = rig()
    assert DOWN in r.m.start(0.0)
    assert UP in r.m.handle_timer(3.0)
    acts = r.m.demote(3.5)
    assert DOWN in acts and of(acts, SendAdvert) == []
    assert r.m.script_finished("down", True) == []  # the start's downscript
    assert r.m.script_finished("up", True) == []  # the upscript: no ARP, we are BACKUP
    assert leave_of(r.m.script_finished("down", True))  # the demotion's downscript
    assert r.m.script_finished("down", True) == []


@pytest.mark.parametrize("how", ["demote", "maintenance", "shutdown"])
def test_a_failed_downscript_still_releases_the_leave(how: str) -> None:
    r, t0 = master_rig()
    if how == "demote":
        r.m.demote(t0 + 0.5)
    elif how == "maintenance":
        r.m.set_maintenance(t0 + 0.5, True)
    else:
        r.m.shutdown(t0 + 0.5)
    assert leave_of(r.m.script_finished("down", False))


@pytest.mark.parametrize("how", ["demote", "maintenance", "demote+preempt"])
def test_becoming_master_again_before_the_downscript_ends_cancels_the_leave(how: str) -> None:
    r, t0 = master_rig(preempt=how == "demote+preempt")
    if how == "maintenance":
        r.m.set_maintenance(t0, True)
        r.m.set_maintenance(t0 + 1, False)
        acts = r.m.handle_timer(t0 + 4)  # nobody took over: master down again
        reason = Reason.MASTER_DOWN
    else:
        r.m.demote(t0)
        assert r.m.handle_timer(t0 + 3) == []  # quiet over
        if how == "demote":
            acts = r.m.handle_timer(t0 + 6)
            reason = Reason.MASTER_DOWN
        else:
            acts = r.m.advert_received(t0 + 3.5, adv(1, 200))
            reason = Reason.PREEMPTION
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, reason)]
    assert [a.is_leave for a in of(acts, SendAdvert)] == [False]  # an ordinary advert
    assert r.m.script_finished("down", True) == []  # the VIP is ours again: no leave
    assert r.m.script_finished("up", True) == [ARP]
    assert r.m.state is State.MASTER
    nw = r.m.next_wakeup()
    assert nw is not None
    assert [a.is_leave for a in of(r.m.handle_timer(nw), SendAdvert)] == [False]


def test_a_cancelled_leave_stays_cancelled_when_the_node_steps_down_otherwise() -> None:
    """Demoted, MASTER again before the downscript ended, then a preferred master makes it
    step down: stepping down sends no leave, and the cancelled one does not come back."""
    r, t0 = master_rig(advskew=10)
    r.m.demote(t0)
    r.m.handle_timer(t0 + 3)
    r.m.handle_timer(t0 + 6 + 10 / 256)
    assert r.m.state is State.MASTER
    acts = r.m.advert_received(t0 + 6.5, adv(1, 0))
    assert changes(acts)[0].reason is Reason.PREFERRED_MASTER and DOWN in acts
    assert [a.is_leave for a in of(acts, SendAdvert)] == [False]  # the one more advert
    for kind in ("down", "up", "down"):
        assert r.m.script_finished(kind, True) == [], kind


def test_leaving_twice_sends_one_leave_after_the_last_downscript() -> None:
    """Demoted, back to MASTER before the downscript ended, demoted again: one leave only,
    after the second downscript (the first one's leave was cancelled)."""
    r, t0 = master_rig()
    r.m.demote(t0)
    r.m.handle_timer(t0 + 3)
    assert UP in r.m.handle_timer(t0 + 6)
    acts = r.m.demote(t0 + 6.5)
    assert DOWN in acts and of(acts, SendAdvert) == []
    assert r.m.script_finished("down", True) == []
    assert r.m.script_finished("up", True) == []
    assert leave_of(r.m.script_finished("down", True))
    assert r.m.script_finished("down", True) == []


def test_link_lost_while_the_downscript_runs_sends_no_leave() -> None:
    r, t0 = master_rig()
    r.m.demote(t0)
    # already BACKUP: carrier loss adds no downscript
    assert r.m.set_link(t0 + 0.1, False) == [Log(Severity.WARNING, "Interface lost its carrier")]
    assert r.m.script_finished("down", True) == []
    # dropped, not deferred: carrier coming back sends nothing either
    assert of(r.m.set_link(t0 + 1, True), SendAdvert) == []
    assert r.m.script_finished("down", True) == []
    assert of(r.m.handle_timer(t0 + 3), SendAdvert) == []


def test_a_new_master_heard_before_the_downscript_ends_cancels_the_leave() -> None:
    r, t0 = master_rig()
    r.m.demote(t0)
    # a backup took over by its own timer while our downscript was still running
    assert of(r.m.advert_received(t0 + 3.1, adv(1, 10, src=OTHER)), SendAdvert) == []
    assert r.m.script_finished("down", True) == []  # no leave: it would only disturb


def test_link_back_before_the_downscript_ends_sends_the_leave() -> None:
    """What counts is the carrier when the downscript ends: the VIP is gone by then."""
    r, t0 = master_rig()
    r.m.set_maintenance(t0, True)
    r.m.set_link(t0 + 0.1, False)
    r.m.set_link(t0 + 0.2, True)
    assert leave_of(r.m.script_finished("down", True))


def test_leave_counter_follows_the_peer() -> None:
    r, t0 = master_rig(advskew=50)
    assert NON_PREFERRED in r.m.advert_received(t0 + 0.2, adv(1, 60, counter=41))
    r.m.demote(t0 + 0.5)
    n = len(r.draws)
    assert r.m.script_finished("down", True) == [SendAdvert(255, 255, 42)]
    assert len(r.draws) == n  # no random draw once a peer was heard


def test_master_ignores_an_equal_advert_from_its_own_address() -> None:
    """The codec drops our own frames; should one reach the machine, it changes nothing."""
    r, t0 = master_rig()
    assert r.m.advert_received(t0 + 0.5, adv(1, 0, src=ME)) == []
    assert r.m.state is State.MASTER


def test_maintenance_restored_before_start() -> None:
    """Maintenance set while INIT: one switch to BACKUP (with downscript), start adds nothing."""
    r = rig()
    acts = r.m.set_maintenance(0.0, True)
    assert changes(acts) == [StateChanged(State.INIT, State.BACKUP, Reason.MAINTENANCE)]
    assert of(acts, SendAdvert) == [] and DOWN in acts
    assert r.m.start(0.0) == []
    assert r.m.state is State.BACKUP and r.m.next_wakeup() is None
    assert r.m.set_maintenance(1.0, False) == [Log(Severity.WARNING, "Leaving maintenance")]
    assert r.m.next_wakeup() == 4.0


def test_master_info_and_helpers() -> None:
    assert interval(1, 0) == 1 and interval(3, 128) == 3.5
    assert SendAdvert(255, 255, 0).is_leave and not SendAdvert(255, 254, 0).is_leave
    r = rig()
    r.m.start(0)
    assert r.m.master is None
    r.m.advert_received(1, adv(2, 5))
    assert r.m.master == MasterInfo(PEER, 2, 5)


# ---------------------------------------------------------------- the C ucarp's pair capture

VECTORS_FILE = Path(__file__).resolve().parent / "vectors" / "cucarp.json"


def _pair_capture() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(VECTORS_FILE.read_text())
    except (OSError, ValueError):
        return None
    pair: dict[str, Any] | None = data.get("pair")
    return pair


def _captured_configs() -> list[dict[str, Any]]:
    try:
        data: dict[str, Any] = json.loads(VECTORS_FILE.read_text())
    except (OSError, ValueError):
        return []
    configs: list[dict[str, Any]] = data.get("vectors", [])
    return configs


def _arp_positions(events: list[tuple[float, str]]) -> list[int]:
    """For each ARP, the number of the advert sent at the same moment (1-based, 5 ms)."""
    adverts = [t for t, kind in events if kind == "advert"]
    out = []
    for t, kind in events:
        if kind == "arp":
            near = [i for i, ta in enumerate(adverts, 1) if abs(ta - t) <= 0.005]
            out.append(near[0] if near else 0)
    return out


@pytest.mark.parametrize("cfg", _captured_configs(), ids=lambda c: str(c.get("name")))
def test_cucarp_capture_cadence_and_arps_match_the_machine(cfg: dict[str, Any]) -> None:
    """A lone C ucarp becoming master: its advert interval and the adverts its two gratuitous
    ARPs go out with are what our machine produces for the same configuration."""
    c = cfg["config"]
    captured = [(float(f["t"]), str(f["kind"])) for f in cfg["frames"]]
    r, t0 = master_rig(advbase=c["advbase"], advskew=c["advskew"])
    ours: list[tuple[float, str]] = [(t0, "advert"), (t0, "arp")]
    n_adverts = sum(1 for _, k in captured if k == "advert")
    for _ in range(n_adverts - 1):
        t = r.m.next_wakeup()
        assert t is not None
        for a in r.m.handle_timer(t):
            if isinstance(a, SendAdvert):
                ours.append((t, "advert"))
            elif isinstance(a, SendGratuitousArp):
                ours.append((t, "arp"))
    assert _arp_positions(ours) == _arp_positions(captured) == [1, 3]
    step = interval(c["advbase"], c["advskew"])
    times = [t for t, k in captured if k == "advert"]
    assert all(abs((b - a) - step) <= 0.005 for a, b in zip(times, times[1:])), times


def test_cucarp_pair_counters_and_decisions_replayed() -> None:
    """Two C ucarps (pa skew 100; pb skew 0 with -P joins, preempts, dies): fed the same
    adverts, our machine makes the same decisions and sends byte-identical adverts."""
    pair = _pair_capture()
    if pair is None:
        pytest.skip(f"no pair capture in {VECTORS_FILE.name}")
    c = pair["config"]
    kw: dict[str, Any] = dict(vhid=c["vhid"], password=bytes.fromhex(c["password_hex"]),
                              vip=IPv4Address(c["vip"]), group=IPv4Address("224.0.0.18"))
    ips = {who: IPv4Address(c[who]["srcip"]) for who in ("pa", "pb")}
    codecs = {who: AdvertCodec(srcip=ips[who], **kw) for who in ips}
    listener = AdvertCodec(srcip=IPv4Address("192.0.2.254"), **kw)
    adverts: list[tuple[float, str, bytes, CarpFrame, Advert]] = []
    for fr in pair["frames"]:
        if fr["kind"] != "advert":
            continue
        frame = bytes.fromhex(fr["hex"])
        parsed, decoded = parse_frame(frame), listener.decode(frame)
        assert isinstance(parsed, CarpFrame) and isinstance(decoded, Advert)
        adverts.append((fr["t"], fr["from"], frame, parsed, decoded))

    def same_frame(who: str, sent: SendAdvert, captured: tuple[float, str, bytes, CarpFrame, Advert]) -> None:
        _, frm, frame, parsed, _ = captured
        assert frm == who
        encoded = codecs[who].encode(advbase=sent.advbase, advskew=sent.advskew,
                                     counter=sent.counter, ip_id=parsed.ip_id)
        assert encoded == frame

    def params(who: str) -> Params:
        return Params(advbase=c["advbase"], advskew=c[who]["advskew"],
                      preempt=bool(c[who].get("preempt", False)), srcip=ips[who])

    # pb starts, hears pa's next advert and preempts: its first advert is pa's counter + 1.
    pb = CarpMachine(params("pb"), lambda: 0)
    pb.start(pair["events"]["b_started"])
    i_pb = next(i for i, a in enumerate(adverts) if a[1] == "pb")
    heard = adverts[i_pb - 1]
    assert heard[1] == "pa" and heard[0] > pair["events"]["b_started"]
    acts = pb.advert_received(heard[0], heard[4])
    assert changes(acts)[0].reason is Reason.PREEMPTION
    same_frame("pb", of(acts, SendAdvert)[0], adverts[i_pb])

    # pa, master, hears pb and steps down with one more advert carrying pb's counter + 1.
    pa = CarpMachine(params("pa"), lambda: 0)
    pa.start(0.0)
    pa.handle_timer(3 + c["pa"]["advskew"] / 256)
    assert pa.state is State.MASTER
    acts = pa.advert_received(adverts[i_pb][0], adverts[i_pb][4])
    assert changes(acts)[0].reason is Reason.PREFERRED_MASTER
    one_more = of(acts, SendAdvert)[0]
    same_frame("pa", one_more, next(a for a in adverts[i_pb:] if a[1] == "pa" and a[3].counter == one_more.counter))

    # pa hears pb's remaining adverts; pb dies; pa's takeover advert is the last counter + 1.
    pb_adverts = [a for a in adverts if a[1] == "pb"]
    for a in pb_adverts[1:]:
        pa.advert_received(a[0], a[4])
    wake = pa.next_wakeup()
    assert wake is not None
    assert wake == pb_adverts[-1][0] + 3 + c["pa"]["advskew"] / 256
    acts = pa.handle_timer(wake)
    takeover = next(a for a in adverts if a[1] == "pa" and a[0] > pair["events"]["b_killed"])
    same_frame("pa", of(acts, SendAdvert)[0], takeover)


# ================================================================ stateful model

PEERS = [IPv4Address("10.0.0.1"), IPv4Address("10.0.0.3"), IPv4Address("10.0.1.1"), IPv4Address("9.0.0.2")]
ADVBASES = [0, 1, 2, 3, 5, 255]
ADVSKEWS = [0, 1, 63, 64, 200, 240, 255]


def timeval_us(advbase: int, advskew: int) -> int:
    """ucarp's struct timeval for an (advbase, advskew) pair, as one integer of microseconds."""
    return advbase * 1_000_000 + advskew * 1_000_000 // 256


class MachineModel(RuleBasedStateMachine):
    """Random inputs with increasing ``now``; the shell's loop is modelled by ``advance``.

    Leaving MASTER (demotion, maintenance) is modelled as pyucarp does it: the downscript is
    asked for and a leave advert waits until every downscript asked for has finished; it goes
    out then (BACKUP, carrier up) unless the node became MASTER again meanwhile.
    """

    def __init__(self) -> None:
        super().__init__()
        self.r: Rig | None = None
        self.now = 0.0
        self.link = True
        self.maint = False
        self.quiet_until: float | None = None
        self.peer: int | None = None
        self.draw_idx = 0
        self.scripts: list[str] = []
        self.downs = 0  # downscripts asked for and not yet reported finished
        self.leave_pending = False  # a leave advert waits for self.downs to reach 0
        self.errors = 0
        self.successes = 0
        self.suppress = False
        self.suppressed_ever = False

    @property
    def m(self) -> CarpMachine:
        assert self.r is not None
        return self.r.m

    @property
    def p(self) -> Params:
        return self.m.params

    # ------------------------------------------------------------ checking one call

    def check(self, acts: list[Action], before: State, leave: bool = False) -> None:
        """Check one call's actions; ``leave``: the model expects the leave advert here."""
        s = before
        changed: list[StateChanged] = []
        for a in acts:
            if isinstance(a, StateChanged):
                assert a.old is s
                s = a.new
                changed.append(a)
            elif isinstance(a, SendAdvert):
                if a.is_leave:
                    # only once the downscripts are done: the VIP is gone, we are BACKUP
                    assert leave and s is State.BACKUP and self.link, acts
                else:
                    assert s is State.MASTER, acts  # the step-down advert goes out before the switch
                    assert a.advbase == self.p.advbase
                    assert a.advskew == self.m.advskew
                if self.peer is not None:
                    self.peer = (self.peer + 1) % 2**64
                    assert a.counter == self.peer
                else:
                    assert a.counter == self.r.draws[self.draw_idx]  # type: ignore[union-attr]
                    self.draw_idx += 1
            elif isinstance(a, SendGratuitousArp):
                assert s is State.MASTER, acts
            elif isinstance(a, RunScript):
                assert changed, acts
                assert a.kind == ("up" if changed[-1].new is State.MASTER else "down")
                if self.scripts:
                    assert self.scripts[-1] != a.kind, (self.scripts, acts)
                self.scripts.append(a.kind)
                if a.kind == "up":
                    assert any(isinstance(x, SendAdvert) for x in acts[: acts.index(a)])
                else:
                    self.downs += 1
        assert len(changed) <= 1, acts
        assert s is self.m.state
        assert [a.is_leave for a in of(acts, SendAdvert)].count(True) == int(leave), acts
        for c in changed:
            if c.new is State.MASTER:
                assert c.reason in (Reason.MASTER_DOWN, Reason.PREEMPTION, Reason.SLOW_MASTER, Reason.MASTER_LEFT)
                assert UP in acts and ARP in acts
                self.leave_pending = False  # the VIP is ours again: nobody is to take it
            elif c.old is not State.INIT or not self.p.neutral:
                assert DOWN in acts
        assert len(self.r.draws) == self.draw_idx  # type: ignore[union-attr]

    # ------------------------------------------------------------ rules

    @initialize(
        advbase=st.integers(1, 3), advskew=st.sampled_from(ADVSKEWS), deadratio=st.integers(1, 4),
        preempt=st.booleans(), neutral=st.booleans(), byteorder=st.sampled_from(["little", "big"]),
        start=st.floats(0, 1e6), seed=st.integers(0, 2**32),
    )
    def setup(self, advbase: int, advskew: int, deadratio: int, preempt: bool, neutral: bool,
              byteorder: str, start: float, seed: int) -> None:
        self.r = rig(seed, advbase=advbase, advskew=advskew, deadratio=deadratio, preempt=preempt,
                     neutral=neutral, byteorder=byteorder)
        self.now = start
        self.check(self.m.start(start), State.INIT)

    @rule(dt=st.floats(0.0001, 8))
    def advance(self, dt: float) -> None:
        """Fire every deadline on time, as the shell does, checking that nothing fires early."""
        target = self.now + dt
        for _ in range(10_000):
            nw = self.m.next_wakeup()
            if nw is None or nw > target:
                break
            mid = (self.now + nw) / 2
            if self.now < mid < nw:
                assert self.m.handle_timer(mid) == []
                assert self.m.next_wakeup() == nw
            self.fire(nw)
        else:
            raise AssertionError("timer storm")
        self.now = target

    @rule(dt=st.floats(0.0001, 8))
    def late_timer(self, dt: float) -> None:
        """A shell that wakes up late fires everything due at once."""
        self.fire(self.now + dt)

    def fire(self, t: float) -> None:
        before = self.m.state
        self.now = t
        acts = self.m.handle_timer(t)
        if self.quiet_until is not None and t >= self.quiet_until:
            self.quiet_until = None
        self.check(acts, before)

    @rule(src=st.sampled_from(PEERS), advbase=st.sampled_from(ADVBASES), advskew=st.sampled_from(ADVSKEWS),
          counter=st.integers(0, 2**64 - 1))
    def receive(self, src: IPv4Address, advbase: int, advskew: int, counter: int) -> None:
        m, p, now = self.m, self.p, self.now
        before = m.state
        eff = SUPPRESSED_ADVSKEW if self.suppress and p.advskew < SUPPRESSED_ADVSKEW else p.advskew
        ours, theirs = timeval_us(p.advbase, eff), timeval_us(advbase, advskew)
        if self.link:
            self.peer = counter
        acts = m.advert_received(now, Advert(src, advbase, advskew, counter))
        self.check(acts, before)
        if not self.link:
            assert acts == []
            return
        if before is State.MASTER:
            mine, theirs_tie = tie_value(p.srcip, p.byteorder), tie_value(src, p.byteorder)
            if ours > theirs or (ours == theirs and theirs_tie < mine):
                assert m.state is State.BACKUP and acts[-1] == PREFERRED
            else:
                assert m.state is State.MASTER and acts == [ARP, NON_PREFERRED]
            return
        quiet = self.quiet_until is not None
        leave = (advbase, advskew) == (255, 255)
        if not leave:
            self.leave_pending = False  # another master exists: a late leave is pointless
        if leave and not quiet and not self.maint:
            if p.advskew == 0:
                assert m.state is State.MASTER
            else:
                assert m.state is State.BACKUP and m.next_wakeup() == now + leave_takeover_delay(p.advskew)
        elif quiet or self.maint or leave:
            assert acts == [] and m.state is State.BACKUP
        elif p.preempt and ours < theirs:
            assert m.state is State.MASTER and acts[-1] == PREEMPTION
        elif timeval_us(p.advbase * p.deadratio, eff) < theirs:
            assert m.state is State.MASTER and acts[-1] == TIMING_OUT
        else:
            assert acts == [] and m.next_wakeup() == now + p.advbase * p.deadratio + p.advskew / 256

    @rule(src=st.sampled_from(PEERS), dbase=st.sampled_from([-1, 0, 0, 1]), dskew=st.sampled_from([-1, 0, 0, 1]),
          counter=st.integers(0, 2**64 - 1))
    def receive_near(self, src: IPv4Address, dbase: int, dskew: int, counter: int) -> None:
        """Adverts close to our own pair: ties and one-step differences, where mistakes hide."""
        p = self.p
        base = min(max(p.advbase + dbase, 0), 255)
        skew = min(max(self.m.advskew + dskew, 0), 255)
        self.receive(src, base, skew, counter)

    @rule(ok=st.booleans())
    def sent(self, ok: bool) -> None:
        before = self.m.state
        # ucarp's carp_send_ad bookkeeping, restated
        if not ok:
            self.errors += 1
            self.successes = 0
            if self.errors == 3:
                self.suppress = self.suppressed_ever = True
        elif self.errors >= 3:
            self.successes += 1
            if self.successes >= 3:
                self.suppress = False
                self.errors = 0
        else:
            self.errors = 0
        acts = self.m.advert_sent(ok)
        self.check(acts, before)
        assert self.m.suppressed is self.suppress

    @rule()
    def demote(self) -> None:
        before = self.m.state
        acts = self.m.demote(self.now)
        self.check(acts, before)  # no leave advert yet: the downscript runs first
        if before is State.MASTER:
            assert acts == [SWITCH_BACKUP, StateChanged(State.MASTER, State.BACKUP, Reason.DEMOTION), DOWN]
            self.quiet_until = self.now + DEMOTION_QUIET
            self.leave_pending = True
        else:
            assert acts == []

    @rule(on=st.booleans())
    def maintenance(self, on: bool) -> None:
        before = self.m.state
        acts = self.m.set_maintenance(self.now, on)
        changed = on != self.maint
        self.maint = on
        self.check(acts, before)  # no leave advert yet: the downscript runs first
        if changed and on and before is State.MASTER:
            assert changes(acts) == [StateChanged(State.MASTER, State.BACKUP, Reason.MAINTENANCE)]
            assert acts[-1] == DOWN
            self.leave_pending = True
        elif not changed:
            assert acts == []

    @rule(up=st.booleans())
    def link_change(self, up: bool) -> None:
        before = self.m.state
        acts = self.m.set_link(self.now, up)
        self.link = up
        self.check(acts, before)
        assert of(acts, SendAdvert) == []

    def downscript_done(self) -> bool:
        """The model's bookkeeping for one finished downscript: True if the leave is due."""
        if self.downs == 0:
            return False  # nothing was asked for: a stray report changes nothing
        self.downs -= 1
        if self.downs > 0 or not self.leave_pending:
            return False
        self.leave_pending = False
        return self.link  # no carrier now: the leave is dropped, not deferred

    @rule(kind=st.sampled_from(["up", "down", "down"]), ok=st.booleans())
    def script_done(self, kind: Literal["up", "down"], ok: bool) -> None:
        """A script ended, whatever its outcome (the shell also reports a missing one)."""
        before = self.m.state
        leave = kind == "down" and self.downscript_done()
        acts = self.m.script_finished(kind, ok)
        self.check(acts, before, leave=leave)
        if kind == "up":
            assert acts == ([ARP] if ok and before is State.MASTER else [])
        elif not leave:
            assert acts == []
        else:
            assert len(acts) == 1 and isinstance(acts[0], SendAdvert)
            assert (acts[0].advbase, acts[0].advskew) == (255, 255)  # counter: checked above
        assert self.m.state is before

    @precondition(lambda self: self.r is not None)
    @rule(oks=st.lists(st.booleans(), min_size=6, max_size=6))
    def shutdown_copy(self, oks: list[bool]) -> None:
        """Shutdown ends the run, so it is tried on a copy; the shell then drains every
        outstanding script (the downscripts are all that matter to the machine)."""
        m = copy.deepcopy(self.m)  # shares the random source with the original
        drawn = len(self.r.draws)  # type: ignore[union-attr]
        acts = m.shutdown(self.now)
        assert of(acts, SendAdvert) == []  # never before the downscript
        downs, leave_due = self.downs, self.leave_pending
        if self.m.state is State.MASTER:
            assert acts == [StateChanged(State.MASTER, State.BACKUP, Reason.SHUTDOWN), DOWN]
            downs, leave_due = downs + 1, True
        else:
            assert acts == []
        assert m.next_wakeup() is None and m.state is State.BACKUP
        for i in range(downs):
            out = m.script_finished("down", oks[i % len(oks)])
            if i < downs - 1 or not (leave_due and self.link):
                assert out == [], (i, downs, out)
                continue
            assert len(out) == 1 and isinstance(out[0], SendAdvert) and out[0].is_leave
            if self.peer is None:
                assert out[0].counter == self.r.draws[drawn]  # type: ignore[union-attr]
            else:
                assert out[0].counter == (self.peer + 1) % 2**64
        assert m.script_finished("down", True) == []  # the leave goes out at most once
        self.draw_idx = len(self.r.draws)  # type: ignore[union-attr]
        assert m.next_wakeup() is None and m.state is State.BACKUP

    # ------------------------------------------------------------ invariants

    @invariant()
    def state_and_deadlines(self) -> None:
        if self.r is None:
            return
        m, p, now = self.m, self.p, self.now
        assert m.state in (State.BACKUP, State.MASTER)
        assert m.suppressed is self.suppress
        nw = m.next_wakeup()
        assert nw is None or nw > now
        if self.leave_pending:  # only a BACKUP waits to send a leave, and only for a downscript
            assert m.state is State.BACKUP and self.downs > 0
        if m.state is State.MASTER:
            assert self.link and not self.maint and self.quiet_until is None
            skew = max(p.advskew, SUPPRESSED_ADVSKEW) if self.suppressed_ever else p.advskew
            assert nw is not None and nw <= now + interval(p.advbase, skew)
        elif self.quiet_until is not None:
            assert nw == self.quiet_until
        elif not self.link or self.maint:
            assert nw is None
        else:
            assert nw is not None and nw <= now + p.advbase * p.deadratio + p.advskew / 256


TestMachineModel = MachineModel.TestCase
TestMachineModel.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
