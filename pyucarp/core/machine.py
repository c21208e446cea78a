"""The CARP master/backup state machine: ucarp's decisions, pyucarp's timing. No I/O.

Every input carries ``now`` (seconds on a monotonic clock); every input returns the
actions the shell must carry out, in order; ``next_wakeup()`` says when ``handle_timer``
must be called next. Randomness (the advert counter) is injected.

Rules (docs/compat.md §3; ucarp's ``carp.c`` is cited by function name):

* States are INIT, BACKUP and MASTER. ``start`` goes INIT -> BACKUP at once and runs the
  downscript unless neutral (``carp_set_state``); there is no INIT -> MASTER.
* interval = advbase + advskew/256. A MASTER advertises every interval. A BACKUP's
  master-down timer is advbase*deadratio + advskew/256 (the skew is not multiplied,
  ``carp_setrun``); every accepted advert re-arms it; on expiry the BACKUP becomes MASTER.
  At advbase 0 (sub-second adverts) pyucarp follows OpenBSD's ``carp_setrun`` instead:
  the dead ratio multiplies the whole interval, deadratio*advskew/256 (ucarp's rule would
  declare a master dead after one interval, at the first lost or late advert).
* Priorities compare as (advbase, advskew) pairs: the smaller pair is preferred.
  On an equal pair the tie is broken by the source addresses read as native-endian
  32-bit integers of their network-order bytes; the smaller value is preferred.
* An accepted advert while MASTER: from a preferred master -> send one more advert, go
  BACKUP ("Preferred master advertised"), with or without preempt; from a less preferred
  one -> gratuitous ARP now and again two adverts later ("Non-preferred master").
* An accepted advert while BACKUP: with preempt, from a strictly less preferred master
  -> MASTER ("preemption"); from a master whose interval exceeds our
  advbase*deadratio (+ our skew) -> MASTER at once ("going to time out"), a rule that
  never fires at our advbase 0 (OpenBSD's ``carp_input`` guards it with ``sc_advbase``:
  every backup with a lower skew would otherwise take over at once); otherwise re-arm
  the master-down timer.
* Becoming MASTER: a second gratuitous ARP follows the third advert (``sc_delayed_arp``).
* Three consecutive send errors make adverts carry advskew 240 (when ours is lower)
  until three consecutive successes (``carp_suppress_preempt``).
* Counter: random on every advert until a valid peer advert is accepted, then the
  peer's counter + 1, incrementing, wrapping at 2**64 (``carp_prepare_ad``).
* Demotion (SIGUSR2): a non-BACKUP node goes BACKUP and stays quiet for 3 s, then
  listens as usual.

Where pyucarp deliberately does better (each keeps a mixed cluster correct):

* A new MASTER advertises at once, before its upscript has run (ucarp waits for it).
* Leaving MASTER on demotion, maintenance or graceful shutdown sends a leave advert
  (advbase 255, advskew 255) once the downscript has run — the VIP is gone from this
  host before anyone is told to take it, so two hosts never hold it together: ucarp
  backups treat it as a master about to time out and take over at once; pyucarp
  backups take over after advskew/2048 s (an eighth of the skew part of the
  master-down time): at most 125 ms, and still in order of preference when several
  backups are listening.
* Persistent maintenance: a node in maintenance stays BACKUP until released.
* Carrier loss: a node without carrier goes BACKUP and is silent until carrier returns.

Service health (pyucarp only; the shell runs the checks and reports ``set_health``):

* An instance with checks starts with its health unknown: it listens as BACKUP but never
  becomes MASTER (timer, preemption, leave advert) before its first healthy decision.
* Unhealthy, without a weight: FAULT. A MASTER runs its downscript and then sends the
  leave advert, so every backup (ucarp's too) takes over at once; a BACKUP just moves to
  FAULT. In FAULT the instance sends nothing and never takes over (keepalived's FAULT).
  Healthy again: FAULT -> BACKUP (no downscript: the address is already gone), then the
  usual rules (the master-down timer, or preemption with -P).
* Unhealthy, with a weight N: the advertised skew (and the master-down time) grows by N,
  capped at 240 — a softer demotion: preempting backups take over, others do not. A
  MASTER advertises the new skew at once.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from pyucarp.core.codec import COUNTER_MODULO, LEAVE_ADVBASE, LEAVE_ADVSKEW, Advert, is_leave
from pyucarp.records import TYPE_CHECKING, NamedTuple  # lean: no dataclasses/typing, ~3 MiB

if TYPE_CHECKING:
    from typing import Literal

SENDAD_MAX_ERRORS = 3  # ucarp's CARP_SENDAD_MAX_ERRORS
SENDAD_MIN_SUCCESS = 3  # ucarp's CARP_SENDAD_MIN_SUCCESS
SUPPRESSED_ADVSKEW = 240  # ucarp's CARP_BULK_UPDATE_MIN_DELAY
DEMOTION_QUIET = 3.0  # ucarp sleeps 3 s after SIGUSR2
DELAYED_ARP_ADVERTS = 2  # the second ARP goes out two adverts after the first one
LEAVE_SKEW_DIVISOR = 8  # after a leave advert, wait advskew/256/8 s before taking over
WEIGHTED_ADVSKEW_CAP = 240  # a weight never pushes the advertised skew past this


class State(enum.Enum):
    """CARP states, as ucarp names them."""

    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"  # pyucarp: unhealthy, silent, never MASTER


class Reason(enum.Enum):
    """Why a state changed: shown in status and in the state file."""

    STARTUP = "startup"
    MASTER_DOWN = "master down timer expired"
    PREEMPTION = "preemption"
    SLOW_MASTER = "master advertises too slowly"
    MASTER_LEFT = "master left"
    PREFERRED_MASTER = "preferred master advertised"
    DEMOTION = "demotion"
    MAINTENANCE = "maintenance"
    LINK_DOWN = "carrier lost"
    SHUTDOWN = "shutdown"
    UNHEALTHY = "service unhealthy"
    HEALTHY = "service healthy again"


class Severity(enum.Enum):
    """Log levels the core asks for; the shell maps them to ucarp's prefixes."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    NOTICE = "NOTICE"
    WARNING = "WARNING"
    ERROR = "ERROR"


class SendAdvert(NamedTuple):
    """Send one advertisement with these values (a leave advert is 255/255)."""

    advbase: int
    advskew: int
    counter: int

    @property
    def is_leave(self) -> bool:
        """True for the leave advert."""
        return is_leave(self.advbase, self.advskew)


class SendGratuitousArp(NamedTuple):
    """Announce the VIP at our real MAC address."""


class RunScript(NamedTuple):
    """Queue the up or the down script."""

    kind: Literal["up", "down"]


class StateChanged(NamedTuple):
    """The state changed; ``reason`` says why."""

    old: State
    new: State
    reason: Reason


class Log(NamedTuple):
    """A log line, worded as ucarp words it."""

    severity: Severity
    message: str


Action = SendAdvert | SendGratuitousArp | RunScript | StateChanged | Log


class Params(NamedTuple):
    """The configuration the machine decides with."""

    advbase: int = 1
    advskew: int = 0
    deadratio: int = 3
    preempt: bool = False
    neutral: bool = False
    srcip: IPv4Address | IPv6Address = IPv4Address("0.0.0.0")
    # ucarp compares s_addr values as native integers: a cluster must agree on this.
    byteorder: Literal["little", "big"] = "little" if sys.byteorder == "little" else "big"
    demotion_quiet: float = DEMOTION_QUIET
    tracked: bool = False  # health checks configured: health is unknown until reported
    track_weight: int | None = None  # unhealthy: add this to advskew instead of FAULT


class MasterInfo(NamedTuple):
    """The last master heard from (or ourselves), for status."""

    address: IPv4Address | IPv6Address
    advbase: int
    advskew: int


def interval(advbase: int, advskew: int) -> float:
    """Seconds between adverts for a (advbase, advskew) pair."""
    return advbase + advskew / 256


def master_down_interval(advbase: int, advskew: int, deadratio: int) -> float:
    """How long a BACKUP waits for an advert before it takes over.

    ucarp's ``advbase*deadratio + advskew/256`` at advbase >= 1; at advbase 0 the dead
    ratio applies to the whole interval, as OpenBSD's ``carp_setrun`` does.
    """
    if advbase == 0:
        return deadratio * advskew / 256
    return advbase * deadratio + advskew / 256


def leave_takeover_delay(advskew: int) -> float:
    """How long a backup waits after a leave advert before taking over.

    The skew part of the master-down time orders the backups; an eighth of it keeps
    that order (one skew step is 0.5 ms, far more than a LAN's delivery time) while
    bounding the hand-off to 125 ms.
    """
    return advskew / 256 / LEAVE_SKEW_DIVISOR


def tie_value(address: IPv4Address | IPv6Address, byteorder: Literal["little", "big"]) -> int:
    """ucarp's tie-break key: the network-order bytes read as a native integer. Over IPv6
    (no ucarp to agree with) the 16 bytes read big-endian, docs/compat.md §10."""
    if address.version == 6:
        return int(address)
    return int.from_bytes(address.packed, byteorder)


class CarpMachine:
    """One virtual host's CARP state machine."""

    def __init__(self, params: Params, random64: Callable[[], int]) -> None:
        self.params = params
        self._random64 = random64
        self.state = State.INIT
        self.since = 0.0
        self.transitions = 0
        self.master: MasterInfo | None = None
        self.maintenance = False
        self.link_up = True
        self.health: bool | None = None if params.tracked else True
        self._counter: int | None = None  # None: no peer accepted yet, random counters
        self._advert_due: float | None = None
        self._master_down_at: float | None = None
        self._armed_at = 0.0  # when the master-down timer was last armed (an advert came)
        self._quiet_until: float | None = None
        self._delayed_arp = -1
        self._send_errors = 0
        self._send_successes = 0
        self._suppressed = False
        self._master_left_pending = False  # the master-down timer runs for a leave advert
        self._leave_pending = False  # a leave advert waits for the downscripts to finish
        self._downscripts_running = 0  # RunScript("down") asked for and not yet finished

    # ------------------------------------------------------------------ queries

    @property
    def advskew(self) -> int:
        """The skew we advertise now: weighted while unhealthy, 240 while send errors
        suppress us."""
        skew = self.weighted_advskew
        if self._suppressed and skew < SUPPRESSED_ADVSKEW:
            return SUPPRESSED_ADVSKEW
        return skew

    @property
    def weighted_advskew(self) -> int:
        """Our skew with the health weight applied (the configured one while healthy)."""
        skew = self.params.advskew
        weight = self.params.track_weight
        if weight is None or self.health is not False or skew >= WEIGHTED_ADVSKEW_CAP:
            return skew
        return min(skew + weight, WEIGHTED_ADVSKEW_CAP)

    @property
    def suppressed(self) -> bool:
        """True while repeated send errors make us advertise advskew 240."""
        return self._suppressed

    def next_wakeup(self) -> float | None:
        """When ``handle_timer`` must run next, or None if nothing is pending."""
        times = [
            t
            for t in (self._advert_due, self._master_down_at, self._quiet_until)
            if t is not None
        ]
        return min(times) if times else None

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Action]:
        """INIT -> BACKUP at once; the downscript runs unless neutral."""
        actions: list[Action] = []
        self._enter(now, State.BACKUP, Reason.STARTUP, actions)
        if self.health is False and self.params.track_weight is None:
            self._enter(now, State.FAULT, Reason.UNHEALTHY, actions)  # judged before start
        self._arm_master_down(now)
        return actions

    def handle_timer(self, now: float) -> list[Action]:
        """Fire whatever is due at ``now``."""
        actions: list[Action] = []
        if self._quiet_until is not None and now >= self._quiet_until:
            self._quiet_until = None
            self._arm_master_down(now)
        if self._advert_due is not None and now >= self._advert_due:
            step = interval(self.params.advbase, self.advskew)
            due = self._advert_due + step
            self._advert_due = due if due > now else now + step
            self._send_advert(self.params.advbase, self.advskew, actions)
        if self._master_down_at is not None and now >= self._master_down_at:
            self._master_down_at = None
            self._become_master(now, Reason.MASTER_DOWN, actions)
        return actions

    def advert_received(self, now: float, advert: Advert) -> list[Action]:
        """An authenticated advert from a peer (docs/compat.md §3, ucarp's ``packethandler``)."""
        actions: list[Action] = []
        if self.state is State.INIT or not self.link_up:
            return actions
        # ucarp follows the peer's counter as soon as an advert authenticates.
        self._counter = advert.counter
        ours = (self.params.advbase, self.advskew)
        theirs = (advert.advbase, advert.advskew)
        if self.state is State.MASTER:
            if ours > theirs or (ours == theirs and self._tie_lost_to(advert.src)):
                # "To be really sure the new master knows it has to reassert control."
                self._send_advert(self.params.advbase, self.advskew, actions)
                self.master = MasterInfo(advert.src, advert.advbase, advert.advskew)
                self._enter(now, State.BACKUP, Reason.PREFERRED_MASTER, actions)
                self._arm_master_down(now)
                actions.append(
                    Log(Severity.WARNING, "Preferred master advertised: going back to BACKUP state")
                )
            elif ours != theirs or advert.src != self.params.srcip:
                actions.append(SendGratuitousArp())
                self._delayed_arp = DELAYED_ARP_ADVERTS
                actions.append(
                    Log(
                        Severity.WARNING,
                        "Non-preferred master advertising: "
                        "reasserting control of VIP with another gratuitous arp",
                    )
                )
            return actions
        # BACKUP or FAULT
        if advert.is_leave:
            self.master = None
            return self._master_left(now, actions)
        self.master = MasterInfo(advert.src, advert.advbase, advert.advskew)
        # Someone already took over (our downscript was slow): a late leave advert would
        # only make the other backups take over a second time.
        self._leave_pending = False
        if self._quiet_until is not None or self.maintenance or not self._may_take_over:
            # Demoted, in maintenance, in FAULT or of unknown health: listen only.
            return actions
        if self.params.preempt and ours < theirs:
            self._become_master(now, Reason.PREEMPTION, actions)
            actions.append(Log(Severity.WARNING, "Putting MASTER down - preemption"))
            return actions
        dead = (self.params.advbase * self.params.deadratio, self.advskew)
        if self.params.advbase and dead < theirs:
            self._become_master(now, Reason.SLOW_MASTER, actions)
            actions.append(Log(Severity.WARNING, "Putting MASTER DOWN (going to time out)"))
            return actions
        self._arm_master_down(now)
        return actions

    def advert_sent(self, ok: bool) -> list[Action]:
        """The shell's report on the last advert: counts errors like ucarp's carp_send_ad."""
        actions: list[Action] = []
        if not ok:
            self._send_errors += 1
            self._send_successes = 0
            if self._send_errors == SENDAD_MAX_ERRORS and not self._suppressed:
                self._suppressed = True
                actions.append(
                    Log(Severity.WARNING, "Advertisements keep failing: advertising advskew 240")
                )
                if self.state is State.MASTER:
                    self._send_advert(self.params.advbase, self.advskew, actions)
        elif self._suppressed:
            self._send_successes += 1
            if self._send_successes >= SENDAD_MIN_SUCCESS:
                self._suppressed = False
                self._send_errors = 0
                self._send_successes = 0
                actions.append(Log(Severity.NOTICE, "Advertisements work again"))
        else:
            self._send_errors = 0
        return actions

    def demote(self, now: float) -> list[Action]:
        """SIGUSR2: a non-BACKUP node goes BACKUP and stays quiet for 3 s (ucarp); FAULT
        stays FAULT."""
        actions: list[Action] = []
        if self.state in (State.BACKUP, State.FAULT):
            return actions
        self._leave_master(now, Reason.DEMOTION, actions)
        self._master_down_at = None
        self._quiet_until = now + self.params.demotion_quiet
        return actions

    def set_maintenance(self, now: float, on: bool) -> list[Action]:
        """Persistent demotion: stay BACKUP (handing over at once) until released."""
        actions: list[Action] = []
        if on == self.maintenance:
            return actions
        self.maintenance = on
        if on:
            actions.append(Log(Severity.WARNING, "Entering maintenance: staying BACKUP"))
            if self.state in (State.MASTER, State.INIT):
                self._leave_master(now, Reason.MAINTENANCE, actions)
            self._master_down_at = None
        else:
            actions.append(Log(Severity.WARNING, "Leaving maintenance"))
            self._listen_again(now)
        return actions

    def set_link(self, now: float, up: bool) -> list[Action]:
        """Carrier lost or back (not called with -S): ucarp goes BACKUP while down."""
        actions: list[Action] = []
        if up == self.link_up:
            return actions
        self.link_up = up
        if not up:
            actions.append(Log(Severity.WARNING, "Interface lost its carrier"))
            if self.state in (State.MASTER, State.INIT):
                self._enter(now, State.BACKUP, Reason.LINK_DOWN, actions)
            self._advert_due = None
            self._master_down_at = None
            self._delayed_arp = -1
        else:
            actions.append(Log(Severity.WARNING, "Interface carrier is back"))
            self._listen_again(now)
        return actions

    def set_health(self, now: float, healthy: bool) -> list[Action]:
        """The shell's verdict on the tracked checks and interfaces (see the rules above)."""
        actions: list[Action] = []
        if healthy is self.health:
            return actions
        first = self.health is None
        self.health = healthy
        if self.params.track_weight is not None:
            skew = self.weighted_advskew
            actions.append(Log(Severity.WARNING, (
                f"Service unhealthy: advertising advskew {skew}" if not healthy
                else f"Service healthy: advertising advskew {skew}")))
            if self.state is State.MASTER:
                self._send_advert(self.params.advbase, self.advskew, actions)
            elif self.state is State.BACKUP and self._quiet_until is None:
                if first:
                    self._arm_master_down(now)
                elif self._master_down_at is not None:
                    # Same wait, counted from the same advert, with the new skew: a health
                    # change is no advert and must not push a dead master's takeover back.
                    skew = self.weighted_advskew
                    if self._master_left_pending:
                        wait = leave_takeover_delay(skew)
                    else:
                        wait = master_down_interval(self.params.advbase, skew,
                                                    self.params.deadratio)
                    self._master_down_at = self._armed_at + wait
            return actions
        if not healthy:
            actions.append(Log(Severity.WARNING, "Service unhealthy: entering FAULT"))
            if self.state is State.MASTER and self.link_up:
                self._leave_pending = True
            if self.state in (State.MASTER, State.BACKUP):
                self._enter(now, State.FAULT, Reason.UNHEALTHY, actions)
            self._release_leave(actions)
            return actions
        if self.state is State.FAULT:
            actions.append(Log(Severity.WARNING, "Service healthy: leaving FAULT"))
            self._enter(now, State.BACKUP, Reason.HEALTHY, actions)
        elif first:
            actions.append(Log(Severity.NOTICE, "Service healthy"))
        self._listen_again(now)
        return actions

    def shutdown(self, now: float) -> list[Action]:
        """Graceful exit (-z): downscript unless already BACKUP or FAULT, then a leave
        advert if we were MASTER. The shell waits for the downscript before it exits."""
        actions: list[Action] = []
        if self.state in (State.MASTER, State.INIT):  # FAULT has given the address up
            self._leave_pending = self.state is State.MASTER and self.link_up
            actions.append(StateChanged(self.state, State.BACKUP, Reason.SHUTDOWN))
            self.state = State.BACKUP
            self._run_downscript(actions)
        self._release_leave(actions)
        self._advert_due = None
        self._master_down_at = None
        self._quiet_until = None
        return actions

    def script_finished(self, kind: Literal["up", "down"], ok: bool) -> list[Action]:
        """A script ended (or there was none to run: the shell says so at once).

        An upscript that configured the VIP is followed by one more gratuitous ARP; the
        last pending downscript releases a waiting leave advert, whatever its outcome.
        """
        actions: list[Action] = []
        if kind == "up" and ok and self.state is State.MASTER:
            actions.append(SendGratuitousArp())
        elif kind == "down" and self._downscripts_running > 0:
            self._downscripts_running -= 1
            self._release_leave(actions)
        return actions

    # ------------------------------------------------------------------ internals

    @property
    def _may_take_over(self) -> bool:
        """BACKUP with a known, good health (a weight keeps a sick node in the running)."""
        if self.state is not State.BACKUP or self.health is None:
            return False
        return self.health or self.params.track_weight is not None

    def _tie_lost_to(self, src: IPv4Address | IPv6Address) -> bool:
        order = self.params.byteorder
        return tie_value(src, order) < tie_value(self.params.srcip, order)

    def _listen_again(self, now: float) -> None:
        """A BACKUP that is not in its demotion quiet starts timing the master again."""
        if self.state is State.BACKUP and self._quiet_until is None:
            self._arm_master_down(now)

    def _arm_master_down(self, now: float) -> None:
        self._master_left_pending = False
        if self.maintenance or not self.link_up or not self._may_take_over:
            self._master_down_at = None
            return
        p = self.params
        self._armed_at = now
        self._master_down_at = now + master_down_interval(
            p.advbase, self.weighted_advskew, p.deadratio)

    def _master_left(self, now: float, actions: list[Action]) -> list[Action]:
        if self._quiet_until is not None or self.maintenance or not self._may_take_over:
            return actions
        # Keep (a fraction of) the skew part of the master-down time so that, of several
        # backups, the most preferred one takes over first and the others hear it.
        delay = leave_takeover_delay(self.weighted_advskew)
        if delay <= 0:
            self._become_master(now, Reason.MASTER_LEFT, actions)
        else:
            self._master_down_at = now + delay
            self._master_left_pending = True
            self._armed_at = now
        return actions

    def _become_master(self, now: float, reason: Reason, actions: list[Action]) -> None:
        if self.state is not State.BACKUP or not self.link_up:
            return
        if self._master_left_pending:
            self._master_left_pending = False
            reason = Reason.MASTER_LEFT if reason is Reason.MASTER_DOWN else reason
        self._leave_pending = False  # taking the VIP back: nobody is to be told to take it
        self._enter(now, State.MASTER, reason, actions)
        self.master = MasterInfo(self.params.srcip, self.params.advbase, self.advskew)
        self._master_down_at = None
        # pyucarp advertises first; ucarp ran (and waited for) the upscript before this.
        self._send_advert(self.params.advbase, self.advskew, actions)
        actions.append(SendGratuitousArp())
        self._delayed_arp = DELAYED_ARP_ADVERTS
        self._advert_due = now + interval(self.params.advbase, self.advskew)
        actions.append(RunScript("up"))

    def _leave_master(self, now: float, reason: Reason, actions: list[Action]) -> None:
        if self.state is State.MASTER and self.link_up:
            self._leave_pending = True
        self._enter(now, State.BACKUP, reason, actions)
        self._release_leave(actions)

    def _release_leave(self, actions: list[Action]) -> None:
        """Send the waiting leave advert once no downscript is left to finish."""
        if self._leave_pending and self._downscripts_running == 0:
            self._leave_pending = False
            if self.state is not State.MASTER and self.link_up:
                self._send_advert(LEAVE_ADVBASE, LEAVE_ADVSKEW, actions)

    def _run_downscript(self, actions: list[Action]) -> None:
        self._downscripts_running += 1
        actions.append(RunScript("down"))

    def _enter(self, now: float, new: State, reason: Reason, actions: list[Action]) -> None:
        old = self.state
        if old is new:
            return
        actions.append(Log(Severity.WARNING, f"Switching to state: {new.value}"))
        actions.append(StateChanged(old, new, reason))
        self.state = new
        self.since = now
        self.transitions += 1
        if new is State.FAULT:
            self._advert_due = None
            self._delayed_arp = -1
            self._master_down_at = None
            if old is State.MASTER:
                self._run_downscript(actions)
        elif new is State.BACKUP:
            self._advert_due = None
            self._delayed_arp = -1
            # Entering BACKUP runs the downscript (ucarp), except at a neutral start and
            # after FAULT, which already gave the address up.
            if old is State.MASTER or (old is State.INIT and not self.params.neutral):
                self._run_downscript(actions)

    def _next_counter(self) -> int:
        if self._counter is None:
            return self._random64() % COUNTER_MODULO
        self._counter = (self._counter + 1) % COUNTER_MODULO
        return self._counter

    def _send_advert(self, advbase: int, advskew: int, actions: list[Action]) -> None:
        advert = SendAdvert(advbase, advskew, self._next_counter())
        actions.append(advert)
        if advert.is_leave:
            # We are giving the VIP up: an ARP now would race the new master's.
            self._delayed_arp = -1
            return
        if self._delayed_arp > 0:
            self._delayed_arp -= 1
        if self._delayed_arp == 0:
            if self.state is State.MASTER:
                actions.append(SendGratuitousArp())
            self._delayed_arp = -1
