"""Service health in the CARP state machine, rule by rule (``pyucarp.core.machine``'s
"Service health" section): explicit ``now``, no sleeps, seeded randomness.

* An instance with checks starts with its health unknown: BACKUP, never MASTER (timer,
  preemption, leave advert) before its first decision.
* Unhealthy without a weight: FAULT. A MASTER runs its downscript, then sends the leave
  advert; a BACKUP just moves. FAULT sends nothing and never takes over. Healthy again:
  FAULT -> BACKUP without a downscript, the master-down timer armed from then.
* Unhealthy with a weight N: the advertised skew and the master-down time grow by N,
  capped at 240 (a skew already at or past 240 is kept); a MASTER advertises at once.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from typing import Any

import pytest

from machine_helpers import (
    ARP,
    DOWN,
    EPS,
    ME,
    OTHER,
    PEER,
    UP,
    Rig,
    adv,
    changes,
    of,
    rig,
)
from pyucarp.core.codec import Advert, Dropped, parse_frame
from pyucarp.core.health import HealthJudge
from pyucarp.core.instance import CarpInstance, Event
from pyucarp.core.machine import (
    WEIGHTED_ADVSKEW_CAP,
    Action,
    CarpMachine,
    Log,
    Params,
    Reason,
    RunScript,
    SendAdvert,
    SendGratuitousArp,
    Severity,
    State,
    StateChanged,
    leave_takeover_delay,
    master_down_interval,
)


def md(advskew: int, advbase: int = 1, deadratio: int = 3) -> float:
    """The master-down time, written out: advbase*deadratio + advskew/256 (advbase >= 1)."""
    assert advbase >= 1
    return advbase * deadratio + advskew / 256


def weighted(advskew: int, weight: int) -> int:
    """The skew an unhealthy weighted node advertises: +weight, capped at 240, never lower."""
    return advskew if advskew >= 240 else min(advskew + weight, 240)


def healthy_master(start: float = 0.0, **kw: Any) -> tuple[Rig, float]:
    """A tracked machine, healthy from ``start``, MASTER by its master-down timer; its
    start downscript reported finished. Returns it and the time it became MASTER."""
    kw.setdefault("tracked", True)
    r = rig(**kw)
    r.m.start(start)
    assert r.m.script_finished("down", True) == []
    r.m.set_health(start, True)
    t = r.m.next_wakeup()
    assert t is not None
    r.m.handle_timer(t)
    assert state_of(r.m) is State.MASTER
    return r, t


def state_of(x: CarpMachine | CarpInstance) -> State:
    """The state now (read through a call, so that no earlier assertion narrows it)."""
    return x.state


def scripts(acts: list[Action]) -> list[str]:
    return [a.kind for a in of(acts, RunScript)]


def adverts(acts: list[Action]) -> list[SendAdvert]:
    return of(acts, SendAdvert)


def is_one_leave(acts: list[Action]) -> bool:
    return len(acts) == 1 and isinstance(acts[0], SendAdvert) and acts[0].is_leave


def sent_as(advert: SendAdvert, src: IPv4Address) -> Advert:
    """What a peer receives of an advert this machine sent."""
    return Advert(src=src, advbase=advert.advbase, advskew=advert.advskew, counter=advert.counter)


LISTENING = [adv(1, 200), adv(9, 0), adv(255, 255), adv(1, 0, src=OTHER)]
"""Adverts that would make a preempting BACKUP act: a worse master, one about to time out,
a leave, and a better master."""


# ---------------------------------------------------------------- unknown health at start


def test_an_untracked_machine_is_healthy_from_the_start() -> None:
    r = rig()
    assert r.m.health is True
    r.m.start(0.0)
    assert r.m.next_wakeup() == md(0)


@pytest.mark.parametrize("weight", [None, 30])
def test_unknown_health_listens_but_never_becomes_master(weight: int | None) -> None:
    r = rig(tracked=True, preempt=True, advskew=0, track_weight=weight)
    assert r.m.health is None
    acts = r.m.start(0.0)
    assert changes(acts) == [StateChanged(State.INIT, State.BACKUP, Reason.STARTUP)]
    assert r.m.next_wakeup() is None  # no master-down timer at all
    assert r.m.handle_timer(1000.0) == []
    t = 1000.0
    for a in LISTENING:
        t += 1
        assert r.m.advert_received(t, a) == [], a
        assert r.m.next_wakeup() is None
    assert state_of(r.m) is State.BACKUP
    assert r.m.handle_timer(t + 1000) == []


def test_the_first_healthy_verdict_arms_the_master_down_timer_from_then() -> None:
    r = rig(tracked=True, advskew=20)
    r.m.start(0.0)
    r.m.script_finished("down", True)
    acts = r.m.set_health(7.0, True)
    assert changes(acts) == [] and scripts(acts) == [] and adverts(acts) == []
    due = 7.0 + md(20)
    assert r.m.next_wakeup() == due
    assert r.m.handle_timer(due - EPS) == []
    assert changes(r.m.handle_timer(due)) == [
        StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)
    ]


def test_a_lone_tracked_node_becomes_master_only_after_its_first_healthy_verdict() -> None:
    r = rig(tracked=True)
    r.m.start(0.0)
    for t in (3.0, 10.0, 100.0):
        assert r.m.handle_timer(t) == [] and state_of(r.m) is State.BACKUP
    r.m.set_health(100.0, True)
    r.m.handle_timer(103.0)
    assert state_of(r.m) is State.MASTER


def test_a_first_unhealthy_verdict_is_fault_without_downscript_or_advert() -> None:
    r = rig(tracked=True)
    r.m.start(0.0)
    r.m.script_finished("down", True)
    acts = r.m.set_health(0.5, False)
    assert changes(acts) == [StateChanged(State.BACKUP, State.FAULT, Reason.UNHEALTHY)]
    assert scripts(acts) == [] and adverts(acts) == []
    assert state_of(r.m) is State.FAULT and r.m.next_wakeup() is None
    assert r.m.handle_timer(1000.0) == [] and state_of(r.m) is State.FAULT


@pytest.mark.parametrize("when", ["unknown", "fault"])
def test_preemption_is_blocked_while_unknown_or_fault_and_works_once_healthy(when: str) -> None:
    r = rig(tracked=True, preempt=True, advskew=0)
    r.m.start(0.0)
    if when == "fault":
        r.m.set_health(0.1, False)
    assert r.m.advert_received(1.0, adv(1, 100)) == []
    assert state_of(r.m) is not State.MASTER
    r.m.set_health(2.0, True)
    assert state_of(r.m) is State.BACKUP
    acts = r.m.advert_received(2.5, adv(1, 100))
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.PREEMPTION)]


# ---------------------------------------------------------------- FAULT (no weight)


def test_master_unhealthy_goes_fault_runs_the_downscript_then_sends_one_leave() -> None:
    r, t0 = healthy_master(advskew=10)
    t = t0 + 0.4
    acts = r.m.set_health(t, False)
    assert changes(acts) == [StateChanged(State.MASTER, State.FAULT, Reason.UNHEALTHY)]
    assert scripts(acts) == ["down"]
    assert acts.index(StateChanged(State.MASTER, State.FAULT, Reason.UNHEALTHY)) < acts.index(DOWN)
    # the address is still here: nobody may be told to take it yet, nor be ARPed at
    assert adverts(acts) == [] and of(acts, SendGratuitousArp) == []
    assert state_of(r.m) is State.FAULT and r.m.since == t
    assert r.m.next_wakeup() is None
    n = len(r.draws)
    acts = r.m.script_finished("down", True)
    assert acts == [SendAdvert(255, 255, r.draws[n])]  # exactly one leave advert
    assert r.m.script_finished("down", True) == []
    assert r.m.handle_timer(t + 100) == []
    assert state_of(r.m) is State.FAULT


def test_a_failed_downscript_still_releases_the_leave_from_fault() -> None:
    r, t0 = healthy_master()
    r.m.set_health(t0 + 0.4, False)
    assert is_one_leave(r.m.script_finished("down", False))


def test_the_leave_waits_for_every_outstanding_downscript() -> None:
    """The start's downscript is still running when the node becomes MASTER and turns
    unhealthy: the leave follows the second downscript, not the first."""
    r = rig(tracked=True)
    assert DOWN in r.m.start(0.0)
    r.m.set_health(0.0, True)
    assert UP in r.m.handle_timer(3.0)
    assert DOWN in r.m.set_health(3.5, False)
    assert r.m.script_finished("down", True) == []
    assert r.m.script_finished("up", True) == []  # no ARP: not MASTER any more
    assert is_one_leave(r.m.script_finished("down", True))


def test_fault_is_silent_and_never_takes_over() -> None:
    r, t0 = healthy_master(preempt=True, advskew=50)
    r.m.set_health(t0 + 0.5, False)
    assert is_one_leave(r.m.script_finished("down", True))
    t = t0 + 1
    for a in LISTENING:
        t += 0.5
        assert r.m.advert_received(t, a) == [], a
        assert state_of(r.m) is State.FAULT and r.m.next_wakeup() is None
    # send results reported late change nothing on the wire
    for _ in range(4):
        assert adverts(r.m.advert_sent(False)) == []
    for dt in (1.0, 3.0, 1000.0):
        assert r.m.handle_timer(t + dt) == []
    assert state_of(r.m) is State.FAULT


def test_fault_to_backup_when_healthy_without_downscript_master_down_from_then() -> None:
    r, t0 = healthy_master(advskew=10)
    r.m.set_health(t0 + 0.5, False)
    r.m.script_finished("down", True)
    r.m.advert_received(t0 + 1.0, adv(1, 20))  # heard while FAULT: not a re-arm
    t = t0 + 10.0
    acts = r.m.set_health(t, True)
    assert changes(acts) == [StateChanged(State.FAULT, State.BACKUP, Reason.HEALTHY)]
    assert scripts(acts) == [] and adverts(acts) == []
    assert state_of(r.m) is State.BACKUP and r.m.since == t
    assert r.m.next_wakeup() == t + md(10)
    assert r.m.handle_timer(t + md(10) - EPS) == []
    acts = r.m.handle_timer(t + md(10))
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)]
    assert UP in acts


def test_fault_to_backup_then_the_usual_rules_apply() -> None:
    r, t0 = healthy_master(advskew=10)
    r.m.set_health(t0 + 0.5, False)
    r.m.script_finished("down", True)
    r.m.set_health(t0 + 5.0, True)
    # a live master re-arms the timer as usual
    assert r.m.advert_received(t0 + 5.5, adv(1, 0)) == []
    assert r.m.next_wakeup() == t0 + 5.5 + md(10)
    # and its leave hands the address over after an eighth of our skew
    assert r.m.advert_received(t0 + 6.0, adv(255, 255)) == []
    assert r.m.next_wakeup() == t0 + 6.0 + leave_takeover_delay(10)
    acts = r.m.handle_timer(t0 + 6.0 + leave_takeover_delay(10))
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_LEFT)]


def test_recovery_with_preempt_takes_the_address_back_at_the_next_advert() -> None:
    r, t0 = healthy_master(preempt=True, advskew=0)
    r.m.set_health(t0 + 0.5, False)
    r.m.script_finished("down", True)
    assert r.m.advert_received(t0 + 0.6, adv(1, 10)) == []  # the backup took over
    r.m.set_health(t0 + 5.0, True)
    acts = r.m.advert_received(t0 + 5.2, adv(1, 10))
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.PREEMPTION)]
    assert UP in acts and ARP in acts


def test_backup_unhealthy_goes_fault_without_downscript_or_leave() -> None:
    r = rig(tracked=True, advskew=10)
    r.m.start(0.0)
    r.m.script_finished("down", True)
    r.m.set_health(0.0, True)
    r.m.advert_received(1.0, adv(1, 0))
    acts = r.m.set_health(1.5, False)
    assert changes(acts) == [StateChanged(State.BACKUP, State.FAULT, Reason.UNHEALTHY)]
    assert scripts(acts) == [] and adverts(acts) == []
    assert r.m.next_wakeup() is None
    assert r.m.handle_timer(1.0 + md(10)) == []
    assert state_of(r.m) is State.FAULT


def test_healthy_again_before_the_downscript_ends_still_sends_the_leave_once() -> None:
    """The address is gone once the downscript ends, whatever the state then (BACKUP)."""
    r, t0 = healthy_master()
    r.m.set_health(t0 + 0.2, False)
    acts = r.m.set_health(t0 + 0.3, True)
    assert changes(acts) == [StateChanged(State.FAULT, State.BACKUP, Reason.HEALTHY)]
    assert scripts(acts) == [] and adverts(acts) == []
    assert is_one_leave(r.m.script_finished("down", True))
    assert r.m.script_finished("down", True) == []
    assert r.m.next_wakeup() == t0 + 0.3 + md(0)


def test_a_new_master_heard_in_fault_before_the_downscript_ends_cancels_the_leave() -> None:
    """As for demotion: someone already took over, a late leave would only disturb."""
    r, t0 = healthy_master()
    r.m.set_health(t0 + 0.2, False)
    assert r.m.advert_received(t0 + 3.3, adv(1, 10, src=OTHER)) == []
    assert r.m.script_finished("down", True) == []


def test_repeated_verdicts_change_nothing() -> None:
    r, t0 = healthy_master()
    assert r.m.set_health(t0 + 0.1, True) == []
    first = r.m.set_health(t0 + 0.2, False)
    assert changes(first)
    assert r.m.set_health(t0 + 0.3, False) == []
    assert r.m.script_finished("down", True) != []
    assert r.m.set_health(t0 + 0.4, False) == []


# ---------------------------------------------------------------- other inputs while FAULT


def fault_from_master(leave_sent: bool, **kw: Any) -> tuple[Rig, float]:
    """MASTER turned FAULT; ``leave_sent``: its downscript has ended and the leave is out."""
    r, t0 = healthy_master(**kw)
    assert scripts(r.m.set_health(t0 + 0.5, False)) == ["down"]
    if leave_sent:
        assert is_one_leave(r.m.script_finished("down", True))
    return r, t0 + 0.5


@pytest.mark.parametrize("leave_sent", [True, False])
def test_demotion_while_fault_keeps_fault(leave_sent: bool) -> None:
    r, t = fault_from_master(leave_sent)
    assert r.m.demote(t + 1) == []
    assert state_of(r.m) is State.FAULT and r.m.next_wakeup() is None
    if not leave_sent:
        assert is_one_leave(r.m.script_finished("down", True))
    # healthy again: BACKUP, listening at once (no demotion quiet was started)
    r.m.set_health(t + 2, True)
    assert state_of(r.m) is State.BACKUP and r.m.next_wakeup() == t + 2 + md(0)


@pytest.mark.parametrize("leave_sent", [True, False])
def test_maintenance_while_fault_keeps_fault_and_no_timer_until_released(
    leave_sent: bool,
) -> None:
    r, t = fault_from_master(leave_sent)
    acts = r.m.set_maintenance(t + 1, True)
    assert changes(acts) == [] and scripts(acts) == [] and adverts(acts) == []
    assert state_of(r.m) is State.FAULT
    if not leave_sent:
        assert is_one_leave(r.m.script_finished("down", True))
    acts = r.m.set_health(t + 2, True)
    assert changes(acts) == [StateChanged(State.FAULT, State.BACKUP, Reason.HEALTHY)]
    assert scripts(acts) == []
    assert r.m.next_wakeup() is None  # maintenance still holds it back
    r.m.set_maintenance(t + 3, False)
    assert r.m.next_wakeup() == t + 3 + md(0)


@pytest.mark.parametrize("leave_sent", [True, False])
def test_maintenance_released_while_fault_keeps_fault(leave_sent: bool) -> None:
    r, t = fault_from_master(leave_sent)
    r.m.set_maintenance(t + 1, True)
    acts = r.m.set_maintenance(t + 2, False)
    assert changes(acts) == [] and scripts(acts) == [] and adverts(acts) == []
    assert state_of(r.m) is State.FAULT and r.m.next_wakeup() is None


@pytest.mark.parametrize("leave_sent", [True, False])
def test_carrier_loss_while_fault_keeps_fault(leave_sent: bool) -> None:
    r, t = fault_from_master(leave_sent)
    acts = r.m.set_link(t + 1, False)
    assert changes(acts) == [] and scripts(acts) == [] and adverts(acts) == []
    assert state_of(r.m) is State.FAULT
    # without carrier, the downscript's end sends nothing (as for demotion)
    assert r.m.script_finished("down", True) == []
    acts = r.m.set_link(t + 2, True)
    assert changes(acts) == [] and adverts(acts) == []
    assert state_of(r.m) is State.FAULT and r.m.next_wakeup() is None
    r.m.set_health(t + 3, True)
    assert state_of(r.m) is State.BACKUP and r.m.next_wakeup() == t + 3 + md(0)


def test_healthy_without_carrier_is_backup_without_timer_until_carrier() -> None:
    r, t = fault_from_master(True)
    r.m.set_link(t + 1, False)
    r.m.set_health(t + 2, True)
    assert state_of(r.m) is State.BACKUP and r.m.next_wakeup() is None
    r.m.set_link(t + 3, True)
    assert r.m.next_wakeup() == t + 3 + md(0)


@pytest.mark.parametrize("leave_sent", [True, False])
def test_shutdown_while_fault_runs_no_downscript(leave_sent: bool) -> None:
    r, t = fault_from_master(leave_sent)
    acts = r.m.shutdown(t + 1)
    assert scripts(acts) == [] and adverts(acts) == []
    assert r.m.next_wakeup() is None
    # the pending leave still goes out once the shell has drained the downscript
    assert is_one_leave(r.m.script_finished("down", True)) is not leave_sent
    assert r.m.script_finished("down", True) == []


def test_unhealthy_during_the_demotion_quiet_time() -> None:
    """Demoted (BACKUP, quiet 3 s, downscript asked for), then unhealthy: FAULT, no second
    downscript; healthy again inside the quiet time: BACKUP, listening once it is over."""
    r, t0 = healthy_master()
    assert DOWN in r.m.demote(t0)
    acts = r.m.set_health(t0 + 0.5, False)
    assert changes(acts) == [StateChanged(State.BACKUP, State.FAULT, Reason.UNHEALTHY)]
    assert scripts(acts) == []
    assert is_one_leave(r.m.script_finished("down", True))
    r.m.set_health(t0 + 1.0, True)
    assert state_of(r.m) is State.BACKUP
    assert r.m.handle_timer(t0 + 3) == []  # the quiet time ends; now it listens
    assert r.m.next_wakeup() == t0 + 3 + md(0)


def test_quiet_time_ending_in_fault_arms_nothing() -> None:
    r, t0 = healthy_master()
    r.m.demote(t0)
    r.m.set_health(t0 + 0.5, False)
    r.m.script_finished("down", True)
    assert r.m.handle_timer(t0 + 3) == []
    assert r.m.next_wakeup() is None and state_of(r.m) is State.FAULT


def test_one_downscript_per_loss_of_the_address_through_every_input() -> None:
    """MASTER -> FAULT, then every other way of leaving MASTER: the address went once, so
    the downscript runs once and the leave goes out once."""
    r, t = fault_from_master(False, preempt=True)
    seen: list[Action] = []
    seen += r.m.demote(t + 0.1)
    seen += r.m.set_maintenance(t + 0.2, True)
    seen += r.m.set_link(t + 0.3, False)
    seen += r.m.set_link(t + 0.4, True)
    seen += r.m.set_maintenance(t + 0.5, False)
    seen += r.m.script_finished("down", True)
    seen += r.m.shutdown(t + 0.6)
    seen += r.m.script_finished("down", True)
    assert scripts(seen) == []
    assert [a.is_leave for a in adverts(seen)] == [True]
    assert changes(seen) == []


# ---------------------------------------------------------------- the reasons notify sees


def test_health_reasons_are_distinct_and_worded() -> None:
    assert Reason.UNHEALTHY.value == "service unhealthy"
    assert Reason.HEALTHY.value == "service healthy again"
    values = [reason.value for reason in Reason]
    assert len(values) == len(set(values))


def test_each_health_transition_carries_its_reason() -> None:
    r, t0 = healthy_master()
    seen: list[StateChanged] = []
    seen += changes(r.m.set_health(t0 + 1, False))  # MASTER -> FAULT
    r.m.script_finished("down", True)
    seen += changes(r.m.set_health(t0 + 2, True))  # FAULT -> BACKUP
    seen += changes(r.m.set_health(t0 + 3, False))  # BACKUP -> FAULT
    assert seen == [
        StateChanged(State.MASTER, State.FAULT, Reason.UNHEALTHY),
        StateChanged(State.FAULT, State.BACKUP, Reason.HEALTHY),
        StateChanged(State.BACKUP, State.FAULT, Reason.UNHEALTHY),
    ]
    assert r.m.transitions == 5  # start, master-down, and these three


def test_health_changes_are_logged() -> None:
    r, t0 = healthy_master()
    logs = of(r.m.set_health(t0 + 1, False), Log)
    assert Log(Severity.WARNING, "Switching to state: FAULT") in logs
    assert any("unhealthy" in log.message.lower() for log in logs)


# ---------------------------------------------------------------- with a weight


SKEW_CASES = [(0, 50), (10, 100), (100, 200), (239, 5), (240, 10), (250, 10), (255, 1), (0, 240)]


@pytest.mark.parametrize(("advskew", "weight"), SKEW_CASES)
def test_weighted_master_unhealthy_advertises_the_weighted_skew_at_once(
    advskew: int, weight: int
) -> None:
    r, t0 = healthy_master(advskew=advskew, track_weight=weight)
    expect = weighted(advskew, weight)
    assert expect == (advskew if advskew >= 240 else min(advskew + weight, WEIGHTED_ADVSKEW_CAP))
    assert expect >= advskew  # never lowers a skew
    t = t0 + 0.3
    acts = r.m.set_health(t, False)
    sent = adverts(acts)
    assert [(s.advbase, s.advskew) for s in sent] == [(1, expect)]  # one, at once
    assert changes(acts) == [] and scripts(acts) == []
    assert state_of(r.m) is State.MASTER and r.m.advskew == expect
    # the timer's adverts carry it too, and the interval follows the advertised skew
    due = r.m.next_wakeup()
    assert due == t0 + 1 + advskew / 256  # scheduled before the change
    assert [s.advskew for s in adverts(r.m.handle_timer(due))] == [expect]
    assert r.m.next_wakeup() == due + 1 + expect / 256
    # healthy again: the configured skew, at once
    acts = r.m.set_health(due + 0.1, True)
    assert [(s.advbase, s.advskew) for s in adverts(acts)] == [(1, advskew)]
    assert changes(acts) == [] and scripts(acts) == []
    assert r.m.advskew == advskew


@pytest.mark.parametrize(("advskew", "weight"), SKEW_CASES)
def test_weighted_backup_master_down_time_grows_by_the_weight(advskew: int, weight: int) -> None:
    r = rig(tracked=True, advskew=advskew, track_weight=weight)
    r.m.start(0.0)
    r.m.set_health(0.0, False)
    assert state_of(r.m) is State.BACKUP  # in the running, not FAULT
    r.m.advert_received(1.0, adv(1, 0))
    assert r.m.next_wakeup() == 1.0 + md(weighted(advskew, weight))
    r.m.set_health(2.0, True)
    r.m.advert_received(2.5, adv(1, 0))
    assert r.m.next_wakeup() == 2.5 + md(advskew)


def test_weighted_first_unhealthy_verdict_keeps_the_node_in_the_running() -> None:
    """A weight is a softer demotion: a lone node that starts unhealthy still takes the
    address (someone must), after its weighted master-down time; never before a verdict."""
    r = rig(tracked=True, advskew=10, track_weight=100)
    r.m.start(0.0)
    assert r.m.handle_timer(50.0) == [] and state_of(r.m) is State.BACKUP
    acts = r.m.set_health(50.0, False)
    assert changes(acts) == []
    due = 50.0 + md(110)
    assert r.m.next_wakeup() == due
    acts = r.m.handle_timer(due)
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)]
    assert [s.advskew for s in adverts(acts)] == [110]


def machine(srcip: IPv4Address, seed: int, **kw: Any) -> CarpMachine:
    rng = random.Random(seed)
    kw.setdefault("byteorder", "little")
    return CarpMachine(Params(srcip=srcip, **kw), lambda: rng.getrandbits(64))


def test_weighted_master_loses_to_a_preempting_backup_with_a_skew_between() -> None:
    """a (skew 0, weight 100) is MASTER; b (50, -P) takes over when a advertises 100; c
    (50, no -P) and d (150, -P) do not; a steps down on b's first advert."""
    a_r, t0 = healthy_master(advskew=0, track_weight=100, srcip=ME)
    a = a_r.m
    peers = {
        "b": machine(PEER, 1, advskew=50, preempt=True),
        "c": machine(OTHER, 2, advskew=50),
        "d": machine(IPv4Address("10.0.0.5"), 3, advskew=150, preempt=True),
    }
    for p in peers.values():
        p.start(0.0)
        p.script_finished("down", True)
        p.advert_received(t0, adv(1, 0, src=ME))
    (weighted_ad,) = adverts(a.set_health(t0 + 0.5, False))
    assert (weighted_ad.advbase, weighted_ad.advskew) == (1, 100)
    got = {name: p.advert_received(t0 + 0.5, sent_as(weighted_ad, ME))
           for name, p in peers.items()}
    assert changes(got["b"]) == [StateChanged(State.BACKUP, State.MASTER, Reason.PREEMPTION)]
    assert got["c"] == [] and got["d"] == []
    assert peers["c"].state is State.BACKUP and peers["d"].state is State.BACKUP
    (b_ad,) = adverts(got["b"])
    acts = a.advert_received(t0 + 0.501, sent_as(b_ad, PEER))
    assert changes(acts) == [StateChanged(State.MASTER, State.BACKUP, Reason.PREFERRED_MASTER)]
    assert DOWN in acts
    # and a, healthy again with -P, takes it back on b's next advert
    a_p = healthy_master(advskew=0, track_weight=100, srcip=ME, preempt=True)[0].m
    a_p.set_health(t0 + 0.5, False)
    a_p.advert_received(t0 + 0.501, sent_as(b_ad, PEER))
    assert a_p.state is State.BACKUP
    a_p.set_health(t0 + 2.0, True)
    acts = a_p.advert_received(t0 + 0.5 + 1 + 50 / 256, adv(1, 50, src=PEER, counter=9))
    assert changes(acts) == [StateChanged(State.BACKUP, State.MASTER, Reason.PREEMPTION)]


def test_weighted_master_keeps_the_address_against_non_preempting_backups() -> None:
    r, t0 = healthy_master(advskew=0, track_weight=100)
    r.m.set_health(t0 + 0.5, False)
    for k in range(1, 10):
        acts = r.m.handle_timer(t0 + 0.5 + k * 2)
        assert state_of(r.m) is State.MASTER and changes(acts) == []


def test_weighted_health_changes_never_run_scripts_or_change_state() -> None:
    r, t0 = healthy_master(advskew=5, track_weight=20)
    seen: list[Action] = []
    for k in range(10):
        seen += r.m.set_health(t0 + 0.1 * (k + 1), k % 2 == 1)
    assert changes(seen) == [] and scripts(seen) == []
    assert [s.advskew for s in adverts(seen)] == [25, 5] * 5


@pytest.mark.parametrize("flip_every", [0.5, 1.0, 2.0])
def test_weighted_backup_takes_over_from_a_dead_master_however_its_health_flaps(
    flip_every: float,
) -> None:
    """The master-down timer is re-armed by accepted adverts; a health change only changes
    the skew part. So a backup whose master died takes over within the master-down time
    of its highest (weighted) skew after the last advert, whatever its health does."""
    advskew, weight = 10, 50
    r = rig(tracked=True, advskew=advskew, track_weight=weight)
    r.m.start(0.0)
    r.m.script_finished("down", True)
    r.m.set_health(0.0, True)
    last = 1.0
    r.m.advert_received(last, adv(1, 0))  # the master's last advert: it dies now
    bound = last + md(weighted(advskew, weight))
    t, healthy = last, True
    while t < bound + 30 and state_of(r.m) is State.BACKUP:
        nxt = t + flip_every
        due = r.m.next_wakeup()
        if due is not None and due <= nxt:
            r.m.handle_timer(due)
            if state_of(r.m) is State.MASTER:
                break
        t, healthy = nxt, not healthy
        r.m.set_health(t, healthy)
    assert state_of(r.m) is State.MASTER, f"still {r.m.state} at {t}"
    assert r.m.since <= bound + EPS


def test_weighted_backup_health_change_does_not_delay_a_leave_hand_off() -> None:
    """After a leave advert a backup takes over an eighth of its skew part later (at most
    125 ms); its health changing meanwhile changes that skew, not the whole wait."""
    advskew, weight = 64, 50
    r = rig(tracked=True, advskew=advskew, track_weight=weight)
    r.m.start(0.0)
    r.m.script_finished("down", True)
    r.m.set_health(0.0, True)
    r.m.advert_received(1.0, adv(1, 0))
    r.m.advert_received(2.0, adv(255, 255))
    r.m.set_health(2.001, False)
    bound = 2.0 + leave_takeover_delay(weighted(advskew, weight))
    assert bound <= 2.0 + 0.125
    due = r.m.next_wakeup()
    assert due is not None and due <= bound + EPS, f"takes over at {due}, not by {bound}"
    r.m.handle_timer(due)
    assert state_of(r.m) is State.MASTER


def test_master_down_interval_agrees_with_the_written_out_formula() -> None:
    for skew in (0, 10, 110, 240, 255):
        assert master_down_interval(1, skew, 3) == md(skew)


# ---------------------------------------------------------------- through CarpInstance


VIP = IPv4Address("192.0.2.100")
GROUP = IPv4Address("224.0.0.18")


def tracked_instance(*, fall: int, rise: int, interfaces: tuple[str, ...] = (),
                     checks: int = 1, weight: int | None = None) -> CarpInstance:
    rng = random.Random(5)
    return CarpInstance(
        vhid=3, password=b"secret", vip=VIP, group=GROUP, nomcast=False,
        params=Params(srcip=IPv4Address("192.0.2.1"), tracked=True, track_weight=weight),
        mac=bytes.fromhex("020000000001"), random_bits=rng.getrandbits,
        health=HealthJudge(checks, interfaces, fall=fall, rise=rise),
    )


def drain(inst: CarpInstance) -> tuple[list[tuple[int, int]], list[Event]]:
    """The (advbase, advskew) of the adverts sent and the events, scripts left running."""
    ads: list[tuple[int, int]] = []
    for frame in inst.frames_to_send():
        if frame.advert:
            fields = parse_frame(frame.data)
            assert not isinstance(fields, Dropped)
            ads.append((fields.advbase, fields.advskew))
            inst.advert_sent(True)
    return ads, inst.events()


def test_instance_feeds_check_results_and_carrier_to_the_machine() -> None:
    inst = tracked_instance(fall=2, rise=2, interfaces=("eth1",))
    inst.start(0.0)
    drain(inst)
    inst.script_finished("down", True)
    inst.check_result(0, True, 0.5)  # the check is good, the interface still unknown
    assert inst.machine.health is None and inst.get_timer() is None
    inst.tracked_interface("eth1", True, 0.6)
    assert inst.machine.health is True and inst.get_timer() == 0.6 + md(0)
    inst.handle_timer(0.6 + md(0))
    drain(inst)
    inst.script_finished("up", True)
    drain(inst)
    assert state_of(inst) is State.MASTER
    inst.check_result(0, False, 4.0)  # one failure of two
    assert state_of(inst) is State.MASTER and drain(inst) == ([], [])
    inst.check_result(0, False, 4.5)
    ads, events = drain(inst)
    assert ads == [] and state_of(inst) is State.FAULT
    assert RunScript("down") in events
    assert StateChanged(State.MASTER, State.FAULT, Reason.UNHEALTHY) in events
    inst.script_finished("down", True)
    ads, _ = drain(inst)
    assert ads == [(255, 255)]
    # one success of two: still FAULT; the interface going down and up does not rise it
    inst.check_result(0, True, 5.0)
    inst.tracked_interface("eth1", False, 5.1)
    inst.tracked_interface("eth1", True, 5.2)
    assert state_of(inst) is State.FAULT
    inst.check_result(0, True, 5.5)
    _, events = drain(inst)
    assert StateChanged(State.FAULT, State.BACKUP, Reason.HEALTHY) in events
    assert RunScript("down") not in events
    # carrier loss on a tracked interface: FAULT at once
    inst.tracked_interface("eth1", False, 6.0)
    assert state_of(inst) is State.FAULT
    inst.tracked_interface("nosuch0", True, 6.1)
    assert state_of(inst) is State.FAULT


def test_instance_with_a_weight_advertises_the_weighted_skew() -> None:
    inst = tracked_instance(fall=1, rise=1, weight=30)
    inst.start(0.0)
    inst.check_result(0, True, 0.0)
    inst.handle_timer(md(0))
    drain(inst)
    inst.check_result(0, False, 4.0)
    assert drain(inst)[0] == [(1, 30)] and state_of(inst) is State.MASTER
    inst.check_result(0, True, 4.5)
    assert drain(inst)[0] == [(1, 0)]


def test_an_untracked_instance_ignores_health_reports() -> None:
    rng = random.Random(1)
    inst = CarpInstance(
        vhid=3, password=b"secret", vip=VIP, group=GROUP, nomcast=False,
        params=Params(srcip=IPv4Address("192.0.2.1")), mac=bytes(6),
        random_bits=rng.getrandbits,
    )
    inst.start(0.0)
    inst.events()
    inst.check_result(0, False, 1.0)
    inst.tracked_interface("eth1", False, 1.0)
    assert inst.events() == [] and inst.machine.health is True
    assert inst.get_timer() == md(0)
