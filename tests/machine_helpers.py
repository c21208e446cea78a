"""What the CARP machine's tests share: addresses, the log lines and actions they expect,
and machines with a recording, seeded random source, stepped by hand."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from pyucarp.core.codec import Advert
from pyucarp.core.machine import (
    Action,
    CarpMachine,
    Log,
    Params,
    RunScript,
    SendGratuitousArp,
    Severity,
    State,
    StateChanged,
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

