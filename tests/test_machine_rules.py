"""The CARP state machine, rule by rule: explicit ``now``, no sleeps, seeded randomness.

One test (at least) per rule of ``pyucarp.core.machine``'s docstring. The stateful model is
in test_machine_model.py, the replays of the C ucarp's captures in test_machine_capture.py.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Literal

import pytest

from machine_helpers import (
    ARP,
    DOWN,
    EPS,
    ME,
    NON_PREFERRED,
    OTHER,
    PEER,
    PREEMPTION,
    PREFERRED,
    SWITCH_BACKUP,
    SWITCH_MASTER,
    TIMING_OUT,
    UP,
    adv,
    changes,
    master_rig,
    of,
    rig,
)
from pyucarp.core.machine import (
    DEMOTION_QUIET,
    SUPPRESSED_ADVSKEW,
    Action,
    Log,
    MasterInfo,
    Reason,
    SendAdvert,
    SendGratuitousArp,
    Severity,
    State,
    StateChanged,
    interval,
    leave_takeover_delay,
    tie_value,
)


def stood_down(reason: Reason, *warnings: str) -> list[Action]:
    """What a MASTER made to stand down for ``reason`` does: log ``warnings``, switch to
    BACKUP and run the downscript, with no advert (the VIP is still here)."""
    return [*(Log(Severity.WARNING, text) for text in warnings), SWITCH_BACKUP,
            StateChanged(State.MASTER, State.BACKUP, reason), DOWN]


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


@pytest.mark.parametrize(
    ("advbase", "advskew", "deadratio"),
    [(1, 0, 3), (1, 64, 3), (2, 10, 5), (3, 255, 1), (1, 128, 2)],
)
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
    assert changes(r.m.handle_timer(5.75)) == [
        StateChanged(State.BACKUP, State.MASTER, Reason.MASTER_DOWN)
    ]


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
def test_priorities_compare_lexicographically(
    ours: tuple[int, int], theirs: tuple[int, int], steps_down: bool
) -> None:
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
    assert acts == stood_down(Reason.DEMOTION)
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
    assert acts == stood_down(Reason.MAINTENANCE, "Entering maintenance: staying BACKUP")
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
    assert r.m.set_maintenance(1.0, True) == [
        Log(Severity.WARNING, "Entering maintenance: staying BACKUP")
    ]
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
    assert acts == stood_down(Reason.LINK_DOWN, "Interface lost its carrier")
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
    # at once, like carp_send_ad_all
    assert of(acts, SendAdvert) == [SendAdvert(1, 240, r.draws[-1])]
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
    got = [
        of(r.m.handle_timer(t0 + k * interval(1, 50)), SendAdvert)[0].counter
        for k in range(1, 5)
    ]
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


# ------------------------------------------------------- the leave waits for the downscripts


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
