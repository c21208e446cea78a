"""The CARP state machine under a stateful Hypothesis test: random input sequences against
an independent model of ucarp's decisions (timevals in microseconds, as ``carp.c`` compares
them) and of pyucarp's own rules (leave adverts, maintenance, demotion).
"""

from __future__ import annotations

import copy
from ipaddress import IPv4Address
from typing import Literal

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from machine_helpers import (
    ARP,
    DOWN,
    NON_PREFERRED,
    PREEMPTION,
    PREFERRED,
    SWITCH_BACKUP,
    TIMING_OUT,
    UP,
    Rig,
    changes,
    of,
    rig,
)
from pyucarp.core.codec import Advert
from pyucarp.core.machine import (
    DEMOTION_QUIET,
    SUPPRESSED_ADVSKEW,
    Action,
    CarpMachine,
    Params,
    Reason,
    RunScript,
    SendAdvert,
    SendGratuitousArp,
    State,
    StateChanged,
    interval,
    leave_takeover_delay,
    tie_value,
)

PEERS = [IPv4Address(a) for a in ("10.0.0.1", "10.0.0.3", "10.0.1.1", "9.0.0.2")]
ADVBASES = [0, 1, 2, 3, 5, 255]
ADVSKEWS = [0, 1, 63, 64, 200, 240, 255]


def dead_interval(p: Params) -> float:
    """The master-down time, written out apart from the machine's own function."""
    if p.advbase == 0:  # OpenBSD: the dead ratio multiplies the whole sub-second interval
        return p.deadratio * p.advskew / 256
    return p.advbase * p.deadratio + p.advskew / 256  # ucarp: only the seconds


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
                    # the step-down advert goes out before the switch
                    assert s is State.MASTER, acts
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
                assert c.reason in (
                    Reason.MASTER_DOWN, Reason.PREEMPTION, Reason.SLOW_MASTER, Reason.MASTER_LEFT
                )
                assert UP in acts and ARP in acts
                self.leave_pending = False  # the VIP is ours again: nobody is to take it
            elif c.old is not State.INIT or not self.p.neutral:
                assert DOWN in acts
        assert len(self.r.draws) == self.draw_idx  # type: ignore[union-attr]

    # ------------------------------------------------------------ rules

    @initialize(
        advbase=st.integers(0, 3), advskew=st.sampled_from(ADVSKEWS), deadratio=st.integers(1, 4),
        preempt=st.booleans(), neutral=st.booleans(), byteorder=st.sampled_from(["little", "big"]),
        start=st.floats(0, 1e6), seed=st.integers(0, 2**32),
    )
    def setup(self, advbase: int, advskew: int, deadratio: int, preempt: bool, neutral: bool,
              byteorder: str, start: float, seed: int) -> None:
        assume(advbase or advskew)  # the command line refuses -b 0 -k 0
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

    @rule(src=st.sampled_from(PEERS), advbase=st.sampled_from(ADVBASES),
          advskew=st.sampled_from(ADVSKEWS), counter=st.integers(0, 2**64 - 1))
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
                assert m.state is State.BACKUP
                assert m.next_wakeup() == now + leave_takeover_delay(p.advskew)
        elif quiet or self.maint or leave:
            assert acts == [] and m.state is State.BACKUP
        elif p.preempt and ours < theirs:
            assert m.state is State.MASTER and acts[-1] == PREEMPTION
        elif p.advbase and timeval_us(p.advbase * p.deadratio, eff) < theirs:
            # Never at advbase 0 (OpenBSD's guard): every lower-skew backup would fire.
            assert m.state is State.MASTER and acts[-1] == TIMING_OUT
        else:
            assert acts == [] and m.next_wakeup() == now + dead_interval(p)

    @rule(src=st.sampled_from(PEERS), dbase=st.sampled_from([-1, 0, 0, 1]),
          dskew=st.sampled_from([-1, 0, 0, 1]), counter=st.integers(0, 2**64 - 1))
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
            assert acts == [
                SWITCH_BACKUP, StateChanged(State.MASTER, State.BACKUP, Reason.DEMOTION), DOWN
            ]
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
            assert nw is not None and nw <= now + dead_interval(p)


TestMachineModel = MachineModel.TestCase
TestMachineModel.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
