"""Service health from check results and interface states: the verdict, with hysteresis.

No I/O: the shell runs the checks (``--track-script``) and watches the interfaces
(``--track-interface``); this module only turns what it reports into one verdict, which
the state machine acts on (``CarpMachine.set_health``).

Rules (as keepalived's ``fall``/``rise`` for ``vrrp_script``):

* each check starts undecided; its first result decides it at once (so a node boots into
  the right state after one run, not after ``rise`` of them);
* then ``fall`` failures in a row make a check failed, ``rise`` successes in a row make it
  good again — a result that repeats the check's state resets the other count;
* a tracked interface counts as soon as it is reported: without carrier (or gone) it
  fails the instance at once, with carrier it passes; no hysteresis — the kernel's
  carrier flag does not flap the way a service check can;
* the verdict: False if any check failed or any interface is down, else None while any
  check or interface is undecided, else True.
"""

from __future__ import annotations

from collections.abc import Iterable


class HealthJudge:
    """The verdict for one instance's tracked checks and interfaces."""

    __slots__ = ("fall", "rise", "_checks", "_streaks", "_interfaces")

    def __init__(self, checks: int, interfaces: Iterable[str], *, fall: int, rise: int) -> None:
        if checks < 0 or fall < 1 or rise < 1:
            raise ValueError("checks >= 0, fall >= 1 and rise >= 1")
        self.fall = fall
        self.rise = rise
        self._checks: list[bool | None] = [None] * checks
        self._streaks: list[int] = [0] * checks  # results in a row against the check's state
        self._interfaces: dict[str, bool | None] = dict.fromkeys(interfaces)

    @property
    def verdict(self) -> bool | None:
        """False: unhealthy; True: healthy; None: not decided yet."""
        states = [*self._checks, *self._interfaces.values()]
        if False in states:
            return False
        if None in states:
            return None
        return True

    @property
    def checks(self) -> tuple[bool | None, ...]:
        """Each check's state, in the order the checks were given."""
        return tuple(self._checks)

    @property
    def interfaces(self) -> dict[str, bool | None]:
        """Each tracked interface: True with carrier, False without, None not yet seen."""
        return dict(self._interfaces)

    def check_result(self, index: int, ok: bool) -> bool | None:
        """One run of check ``index`` ended (``ok``: exit status 0); the new verdict."""
        state = self._checks[index]
        if state is None:
            self._checks[index] = ok
        elif ok == state:
            self._streaks[index] = 0
        else:
            self._streaks[index] += 1
            if self._streaks[index] >= (self.rise if ok else self.fall):
                self._checks[index] = ok
                self._streaks[index] = 0
        return self.verdict

    def interface(self, name: str, up: bool) -> bool | None:
        """A tracked interface has (``up``) or lacks carrier; the new verdict."""
        if name in self._interfaces:
            self._interfaces[name] = up
        return self.verdict
