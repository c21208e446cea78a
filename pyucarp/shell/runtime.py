"""The shell around one CARP instance: its scripts, state file, log lines and counters.

An :class:`InstanceRuntime` owns one :class:`~pyucarp.core.instance.CarpInstance` and
carries out what it asks for; it never waits. The event loop (:mod:`pyucarp.shell.loop`)
owns the sockets, the clock and the signals, feeds the runtime, transmits its frames
and asks :meth:`InstanceRuntime.next_deadline` when to call it again. Everything here
concerns this instance only, so one instance's trouble stays its own.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Mapping

from pyucarp.config.settings import Config
from pyucarp.core.codec import Dropped, DropReason
from pyucarp.core.health import HealthJudge
from pyucarp.core.instance import CarpInstance, Frame
from pyucarp.core.machine import Log, Params, RunScript, Severity, State, StateChanged
from pyucarp.records import TYPE_CHECKING
from pyucarp.shell.addresses import AddressManager
from pyucarp.shell.checks import CheckResult, CheckRunner
from pyucarp.shell.iface import AddressEvent
from pyucarp.shell.logs import InstanceLog, Level
from pyucarp.shell.scripts import ScriptResult, ScriptRunner
from pyucarp.shell.statefile import (
    HEALTH_UNTRACKED,
    STATE_REFRESH_SECONDS,
    CheckRecord,
    InstanceStatus,
    MasterRecord,
    StateFile,
    instance_name,
)

if TYPE_CHECKING:
    from typing import Any, Literal

VIP_RESTORE_HOLDOFF = 5.0  # at most one upscript rerun per this many seconds
PUMP_LIMIT = 64  # rounds of frames and events one input may cause (a handful in practice)

_SEVERITY_LEVEL = {
    Severity.DEBUG: Level.DEBUG,
    Severity.INFO: Level.INFO,
    Severity.NOTICE: Level.NOTICE,
    Severity.WARNING: Level.WARNING,
    Severity.ERROR: Level.ERROR,
}

# ucarp's levels for refused frames: these are warnings (rate-limited here), the rest
# are debug chatter (ucarp logs them only in debug builds).
_WARNED_DROPS = {
    DropReason.BAD_TTL,
    DropReason.BAD_VERSION,
    DropReason.BAD_CHECKSUM,
    DropReason.BAD_DIGEST,
    DropReason.REPLAY,
}

Transmit = Callable[[Frame, float], bool]
"""How a runtime sends a frame: the loop's sockets for its interface; False on failure."""


class InstanceRuntime:
    """One virtual host's shell: what the core asks for, carried out without waiting."""

    def __init__(
        self,
        config: Config,
        log: InstanceLog,
        *,
        mac: bytes,
        transmit: Transmit,
        random_bits: Callable[[int], int],
        statefile: StateFile | None = None,
        script_env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.name = instance_name(config)
        self.log = log
        self.transmit = transmit
        self.core = CarpInstance(
            vhid=config.vhid,
            password=config.password,
            vip=config.addr,
            group=config.mcast,
            nomcast=config.nomcast,
            params=Params(
                advbase=config.advbase,
                advskew=config.advskew,
                deadratio=config.deadratio,
                preempt=config.preempt,
                neutral=config.neutral,
                srcip=config.srcip,
                tracked=config.tracked,
                track_weight=config.track_weight,
            ),
            mac=mac,
            random_bits=random_bits,
            health=HealthJudge(len(config.track_scripts), config.track_interfaces,
                               fall=config.track_fall, rise=config.track_rise)
            if config.tracked else None,
            extra_vips=config.extra_addrs,
            peers=config.peers,
            source_mac=mac if config.real_mac else None,
        )
        # --manage-vip: pyucarp itself puts the addresses on and takes them off.
        self.addresses = None if config.manage_vip is None else AddressManager(
            config.device, config.interface if ":" in config.interface else None,
            config.manage_vip)
        # One RunScript of the core is one run per address, in order: (kind, left, all ok).
        self._script_groups: collections.deque[list[Any]] = collections.deque()
        self.runner = ScriptRunner(log, timeout=config.script_timeout, env=script_env)
        # Notifications queue apart from the up/down scripts: one never waits for the other.
        self.notifier = ScriptRunner(log, timeout=config.script_timeout, env=script_env)
        self.checks = CheckRunner(config.track_scripts, interval=config.track_interval,
                                  timeout=config.check_timeout, env=script_env) \
            if config.track_scripts else None
        self.last_check: CheckResult | None = None
        self.statefile = statefile or StateFile.for_config(config)
        self.last_script: ScriptResult | None = None
        self._state_refresh_at = 0.0
        self._vip_restore_after = 0.0
        self._retired = False
        self._since_cache: tuple[float, float] | None = None  # (monotonic, wall) of the state

    # ------------------------------------------------------------------ the loop asks

    def next_deadline(self) -> float:
        """When the loop must call :meth:`service` even if nothing arrives."""
        due = self._state_refresh_at
        for when in (self.core.get_timer(), self.children_deadline()):
            if when is not None and when < due:
                due = when
        return due

    def children_deadline(self) -> float | None:
        """The earliest deadline of the scripts, notifications and checks."""
        times = [t for t in (self.runner.next_deadline(), self.notifier.next_deadline(),
                             self.checks.next_deadline() if self.checks else None)
                 if t is not None]
        return min(times) if times else None

    def scripts_busy(self) -> bool:
        """True while an up/down script or a notification runs or waits to run."""
        return any(r.running() or r.pending() > 0 for r in (self.runner, self.notifier))

    def has_children(self) -> bool:
        """True while any child process of this instance runs (a check included)."""
        return self.scripts_busy() or (self.checks is not None and self.checks.running())

    # ------------------------------------------------------------------ inputs

    def start(self, now: float, *, link_up: bool) -> None:
        """INIT -> BACKUP, read the maintenance flag, write the first state file."""
        if self.addresses is not None:
            # A daemon killed while MASTER left its addresses behind: a BACKUP has none.
            for error in self.addresses.remove(self.core.vips):
                self.log.error(error)
        self.core.start(now, link_up=link_up or self.config.ignoreifstate)
        self._pump(now)
        self.read_maintenance(now)

    def service(self, now: float) -> None:
        """Timers, finished scripts, the state file heartbeat: whatever is due."""
        self.reap_scripts(now)
        self.core.handle_timer(now)
        self._pump(now)
        if now >= self._state_refresh_at:
            self.write_state(now)

    def receive(self, frame: bytes, now: float) -> None:
        """A frame for this instance's vhid (or one nobody's filter could place)."""
        state, master = self.core.state, self.core.machine.master
        self.core.receive_frame(frame, now)
        self._pump(now)
        if self.core.machine.master != master and self.core.state is state:
            self.write_state(now)  # a new master is news for status

    def reap_scripts(self, now: float) -> None:
        """Collect finished scripts and checks, start due ones (the loop calls this on
        SIGCHLD too)."""
        self.notifier.handle(now)
        if self.checks is not None:
            for check in self.checks.handle(now):
                self._check_done(check, now)
        for result in self.runner.handle(now):
            self._script_result(result, now)
            self.write_state(now)

    def _script_result(self, result: ScriptResult, now: float) -> None:
        """One script run ended; the core hears of it when its whole group has."""
        self.last_script = result
        if not self._script_groups:
            return
        group = self._script_groups[0]
        group[1] -= 1
        group[2] = group[2] and result.returncode == 0
        if group[1] == 0:
            self._script_groups.popleft()
            self.core.script_finished(group[0], group[2])
            self._pump(now)

    def set_link(self, now: float, up: bool) -> None:
        """Carrier news for this instance's interface (ignored with -S)."""
        if self.config.ignoreifstate:
            return
        self.core.set_link(now, up)
        self._pump(now)

    def tracked_interface(self, name: str, up: bool, now: float) -> None:
        """Carrier news (or the end) of a tracked interface."""
        before = self.core.machine.health
        self.core.tracked_interface(name, up, now)
        self._pump(now)
        if self.core.machine.health is not before:
            what = "has carrier" if up else "has no carrier or is gone"
            self.log.warning(f"Tracked interface [{name}] {what}")
            self.write_state(now)

    def _check_done(self, check: CheckResult, now: float) -> None:
        self.last_check = check
        if not check.ok:
            why = check.error or ("timed out" if check.timed_out else f"exit {check.returncode}")
            self.log.limited(f"check-{check.check}", Level.WARNING,
                             f"Check [{check.command}] failed ({why})"
                             + (f": {check.output}" if check.output else ""), now)
        self.core.check_result(check.check, check.ok, now)
        self._pump(now)

    def set_mac(self, mac: bytes) -> None:
        """The interface came back with (maybe) another MAC."""
        self.core.set_mac(mac)

    def address_event(self, now: float, event: AddressEvent) -> None:
        """One of our addresses removed from the interface while MASTER (IPv4 or IPv6):
        run the upscript again (``--manage-vip``: put the addresses back first)."""
        if event.address.ip not in self.core.vips:
            return
        text = next((t for a, t in self.config.addresses if a == event.address.ip),
                    self.config.addr_text)
        if not event.deleted:
            if event.dadfailed and self.core.state is State.MASTER:
                # Added with duplicate address detection (a script without "nodad") while
                # another host still has it: the kernel keeps it unusable, for good.
                self.log.limited(
                    f"vip-dadfailed-{text}", Level.WARNING,
                    f"Virtual address [{text}] on [{self.config.device}] failed duplicate "
                    "address detection: another host has it", now)
            return
        if self.core.state is not State.MASTER or self.scripts_busy():
            return  # a script is at work on the address (an upscript may del and re-add it)
        if now < self._vip_restore_after:
            self.log.limited(
                "vip-removed",
                Level.WARNING,
                f"Virtual address [{text}] removed again from "
                f"[{self.config.device}]: not rerunning the upscript so soon",
                now,
            )
            return
        self._vip_restore_after = now + VIP_RESTORE_HOLDOFF
        self.log.warning(
            f"Virtual address [{text}] was removed from "
            f"[{self.config.device}] while MASTER: running the upscript again"
        )
        self._run_script(now, "up")

    def report(self) -> None:
        """SIGUSR1: ucarp's one-line state report."""
        state = self.core.state
        # ucarp's two words (its INIT reads as MASTER); FAULT is pyucarp's own, said as is.
        word = state.value if state in (State.BACKUP, State.FAULT) else "MASTER"
        self.log.info(f"{word} on {self.config.interface} id {self.config.vhid}")

    def demote(self, now: float) -> None:
        """SIGUSR2: hand over and stay quiet for a while."""
        self.core.demote(now)
        self._pump(now)

    def read_maintenance(self, now: float) -> None:
        """Apply the persistent maintenance flag as it is on disk now."""
        self.core.set_maintenance(now, self.statefile.maintenance_requested())
        self._pump(now)
        self.write_state(now)

    def shutdown(self, now: float) -> None:
        """Leave gracefully: downscript, then the leave advert once it has run; no more
        checks; the notify script hears STOP."""
        self.stop_checks()
        self.core.shutdown(now)
        self._pump(now)
        self._notify("STOP", now)

    def finish_scripts(self, results: list[ScriptResult], now: float) -> None:
        """Results of a forced drain at exit, handed in by the loop."""
        for result in results:
            self._script_result(result, now)

    def stop_checks(self) -> None:
        """No more checks; a running one is killed (none may outlive the daemon)."""
        if self.checks is not None:
            self.checks.stop()

    def release_addresses(self) -> None:
        """At exit, whatever the signal: managed addresses never outlive the daemon."""
        if self.addresses is not None:
            for error in self.addresses.remove(self.core.vips):
                self.log.error(error)

    # ------------------------------------------------------------------ carrying out

    def _pump(self, now: float) -> None:
        """Transmit what the core produced and carry out its events, until it is quiet."""
        core = self.core
        for _ in range(PUMP_LIMIT):
            frames = core.frames_to_send()
            events = core.events()
            if not frames and not events:
                return
            for frame in frames:
                self._transmit(frame, now)
            for event in events:
                if isinstance(event, Dropped):
                    self._dropped(now, event)
                elif isinstance(event, RunScript):
                    self._run_script(now, event.kind)
                elif isinstance(event, StateChanged):
                    self._notify(event.new.value, now)
                    self.write_state(now)
                elif isinstance(event, Log):
                    self.log.log(_SEVERITY_LEVEL[event.severity], event.message)
        self.log.limited("pump", Level.ERROR, "Internal error: the state machine does not settle",
                         now)

    def _notify(self, state: str, now: float) -> None:
        if self.config.notify:
            c = self.config
            self.notifier.submit("notify", [c.notify, state, c.interface, c.addr_text,
                                            str(c.vhid)], now)

    def _transmit(self, frame: Frame, now: float) -> None:
        ok = self.transmit(frame, now)
        if frame.advert:
            self.core.advert_sent(ok)

    def _dropped(self, now: float, dropped: Dropped) -> None:
        level = Level.WARNING if dropped.reason in _WARNED_DROPS else Level.DEBUG
        self.log.limited(dropped.reason.name, level, dropped.message, now)

    def _run_script(self, now: float, kind: Literal["up", "down"]) -> None:
        ok = True
        if self.addresses is not None:
            # Managed: the addresses go on before the upscript and off before the
            # downscript ends, so the leave advert (after it) never finds them still here.
            change = self.addresses.add if kind == "up" else self.addresses.remove
            errors = change(self.core.vips)
            for error in errors:
                self.log.error(error)
            ok = not errors
        script = self.config.upscript if kind == "up" else self.config.downscript
        if not script:
            # Nothing to run is a script that finished at once (a leave advert may wait).
            self.core.script_finished(kind, ok)
            return
        runs = self.config.addresses
        self._script_groups.append([kind, len(runs), ok])
        for _address, text in runs:  # once per address, in the order given
            argv = [script, self.config.interface, text]
            if self.config.xparam is not None:
                argv.append(self.config.xparam)
            self.runner.submit(kind, argv, now)

    # ------------------------------------------------------------------ state file

    def retire(self) -> None:
        """Removed by a reload: still finishing its scripts, no longer in the state files."""
        self._retired = True

    def write_state(self, now: float) -> None:
        """Write the state file (and re-arm its refresh: "updated" is the heartbeat)."""
        self._state_refresh_at = now + STATE_REFRESH_SECONDS
        if self._retired:
            return
        try:
            self.statefile.write(self.snapshot(now))
        except OSError as exc:
            self.log.limited("statefile", Level.ERROR, f"State file: {exc}", now)

    def _since_wall(self, since: float, now: float, wall: float) -> float:
        """The wall-clock time of the state change at monotonic ``since``, worked out once
        per change: recomputed on every rewrite it moved by however late the loop's ``now``
        was against ``time.time()`` at that moment."""
        if self._since_cache is None or self._since_cache[0] != since:
            self._since_cache = (since, round(wall - (now - since), 3))
        return self._since_cache[1]

    def snapshot(self, now: float) -> InstanceStatus:
        """Everything an admin wants to know about this instance."""
        core = self.core
        m = core.machine
        counters = core.counters
        master = m.master
        last = self.last_script
        check = self.last_check
        wall = time.time()
        return InstanceStatus(
            pid=os.getpid(),
            name=self.name,
            interface=self.config.interface,
            vhid=self.config.vhid,
            vip=self.config.addr_text,
            srcip=str(self.config.srcip),
            advbase=self.config.advbase,
            advskew=m.advskew,
            state=m.state.value,
            since=self._since_wall(m.since, now, wall),
            updated=round(wall, 3),
            transitions=m.transitions,
            master=None if master is None else MasterRecord(
                str(master.address), master.advbase, master.advskew
            ),
            maintenance=m.maintenance,
            link_up=m.link_up,
            adverts_sent=counters.adverts_sent,
            adverts_received=counters.adverts_received,
            send_errors=counters.send_errors,
            dropped=dict(counters.dropped),
            replay_window=len(core.replay),
            last_script=None if last is None else last._replace(duration=round(last.duration, 3)),
            health=self.health_word(),
            last_check=None if check is None else CheckRecord(
                check.command, check.ok, check.returncode, round(check.duration, 3),
                check.timed_out, check.output, check.error,
            ),
            tracked_interfaces={} if core.health is None else core.health.interfaces,
            vips=tuple(text for _address, text in self.config.addresses),
        )

    def health_word(self) -> str:
        """healthy, unhealthy, unknown (not decided yet) or untracked."""
        if self.core.health is None:
            return HEALTH_UNTRACKED
        return {True: "healthy", False: "unhealthy", None: "unknown"}[self.core.machine.health]
