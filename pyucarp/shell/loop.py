"""The imperative shell: one event loop that feeds the CARP machine and carries out its actions.

Everything that waits is a file descriptor in one selector (the CARP socket, the netlink
link monitor, the running script's pidfd, the signal wake-up pipe) or a deadline on the
monotonic clock (the machine's timers, a script's timeout, the log limiter's summary).
Nothing here blocks except the bounded wait for the downscript at a graceful exit.
"""

from __future__ import annotations

import errno
import os
import random
import selectors
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Literal

from pyucarp.core.codec import AdvertCodec, Advert, Dropped, DropReason, gratuitous_arp
from pyucarp.config.settings import Config
from pyucarp.errors import UcarpError
from pyucarp.shell.iface import AddressEvent, InterfaceFacts, LinkEvent, LinkMonitor, interface_facts
from pyucarp.shell.logs import Level, UcarpLog
from pyucarp.core.machine import (
    Action,
    CarpMachine,
    Log,
    Params,
    RunScript,
    SendAdvert,
    SendGratuitousArp,
    Severity,
    State,
    StateChanged,
)
from pyucarp.shell.netio import CarpSocket
from pyucarp.core.replay import ReplayGuard
from pyucarp.shell.scripts import ScriptResult, ScriptRunner
from pyucarp.shell.statefile import CONTROL_SIGNAL, STATE_REFRESH_SECONDS, StateFile

EXIT_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)
VIP_RESTORE_HOLDOFF = 5.0  # at most one upscript rerun per this many seconds
SCRIPT_DRAIN_SECONDS = 30.0  # how long a graceful exit waits for the downscript

_SEVERITY_LEVEL = {
    Severity.DEBUG: Level.DEBUG,
    Severity.INFO: Level.INFO,
    Severity.NOTICE: Level.NOTICE,
    Severity.WARNING: Level.WARNING,
    Severity.ERROR: Level.ERROR,
}

# ucarp's levels for refused frames: these four are warnings (rate-limited here), the
# rest are debug chatter (ucarp logs them only in debug builds).
_WARNED_DROPS = {
    DropReason.BAD_TTL,
    DropReason.BAD_VERSION,
    DropReason.BAD_CHECKSUM,
    DropReason.BAD_DIGEST,
    DropReason.REPLAY,
}


@dataclass
class Statistics:
    """What the daemon counts, for SIGUSR1, the state file and metrics."""

    adverts_received: int = 0
    adverts_sent: int = 0
    send_errors: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    last_script: ScriptResult | None = None


def open_carp_socket(config: Config) -> CarpSocket:
    """The instance's raw CARP socket: its interface, group, -M, and a filter on its vhid."""
    return CarpSocket(
        config.device,
        srcip=config.srcip,
        group=config.mcast,
        nomcast=config.nomcast,
        vhid=config.vhid,
    )


class Daemon:
    """One pyucarp instance: one virtual host on one interface."""

    def __init__(
        self,
        config: Config,
        log: UcarpLog,
        *,
        sock: CarpSocket,
        monitor: LinkMonitor | None,
        facts: InterfaceFacts,
        runner: ScriptRunner,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.sock = sock
        self.monitor = monitor
        self.facts = facts
        self.runner = runner
        self.clock = clock
        self._rng = rng or random.SystemRandom()
        self.codec = AdvertCodec(
            vhid=config.vhid,
            password=config.password,
            vip=config.addr,
            srcip=config.srcip,
            group=config.mcast,
            nomcast=config.nomcast,
        )
        self.machine = CarpMachine(
            Params(
                advbase=config.advbase,
                advskew=config.advskew,
                deadratio=config.deadratio,
                preempt=config.preempt,
                neutral=config.neutral,
                srcip=config.srcip,
            ),
            random64=lambda: self._rng.getrandbits(64),
        )
        self.stats = Statistics()
        self.replay = ReplayGuard()
        self.statefile = StateFile.for_config(config)
        self._signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        self._exit_code: int | None = None
        self._state_refresh_at = 0.0
        self._vip_restore_after = 0.0
        self._exit_signal: int | None = None

    # ------------------------------------------------------------------ running

    def run(self) -> int:
        """Run until a signal ends the daemon; returns the exit status."""
        self._install_signals()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "signal")
        self._selector.register(self.sock.fileno(), selectors.EVENT_READ, "carp")
        if self.monitor is not None:
            self._selector.register(self.monitor.fileno(), selectors.EVENT_READ, "link")
        now = self.clock()
        if not self.config.ignoreifstate and not self.facts.running:
            self.machine.link_up = False
        self._apply(now, self.machine.start(now))
        self._read_maintenance(now)
        self._write_state(now)
        try:
            while self._exit_code is None:
                self._step()
        finally:
            self._finish()
        return self._exit_code

    @property
    def exit_signal(self) -> int | None:
        """The signal that ended a daemon without -z: the caller re-raises it after cleanup."""
        return self._exit_signal

    def _step(self) -> None:
        timeout = self._timeout(self.clock())
        script_fd = self.runner.fileno()
        if script_fd is not None:
            self._selector.register(script_fd, selectors.EVENT_READ, "script")
        try:
            events = self._selector.select(timeout)
        finally:
            if script_fd is not None:
                self._selector.unregister(script_fd)
        now = self.clock()
        for key, _mask in events:
            if key.data == "carp":
                self._read_frames(now)
            elif key.data == "link":
                self._read_link(now)
            elif key.data == "signal":
                self._drain_wakeups()
        self._handle_signals(now)
        if self._exit_code is not None:
            return
        self._reap_scripts(now)
        self._apply(now, self.machine.handle_timer(now))
        self.log.flush(now)
        if now >= self._state_refresh_at:
            self._write_state(now)

    def _timeout(self, now: float) -> float | None:
        deadlines = [
            d
            for d in (
                self.machine.next_wakeup(),
                self.runner.next_deadline(),
                self.log.next_deadline(),
                self._state_refresh_at,
            )
            if d is not None
        ]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    # ------------------------------------------------------------------ inputs

    def _read_frames(self, now: float) -> None:
        try:
            frames = self.sock.recv_frames()
        except OSError as exc:
            self.log.limited("recv", Level.ERROR, f"Receive error: {exc.strerror}", now)
            return
        for frame in frames:
            result = self.codec.decode(frame)
            if isinstance(result, Advert):
                if self.replay.seen(result.src, result.counter):
                    self._dropped(
                        now,
                        Dropped(
                            DropReason.REPLAY,
                            f"Replayed advertisement from [{result.src}] ignored"
                            f" (counter {result.counter:016x} seen before)",
                        ),
                    )
                    continue
                self.stats.adverts_received += 1
                master = self.machine.master
                self._apply(now, self.machine.advert_received(now, result))
                if self.machine.master != master:  # a new master is news for status
                    self._write_state(now)
            else:
                self._dropped(now, result)

    def _dropped(self, now: float, dropped: Dropped) -> None:
        if dropped.reason is DropReason.OWN:
            return
        self.stats.dropped[dropped.reason.name.lower()] += 1
        level = Level.WARNING if dropped.reason in _WARNED_DROPS else Level.DEBUG
        self.log.limited(dropped.reason.name, level, dropped.message, now)

    def _read_link(self, now: float) -> None:
        assert self.monitor is not None
        device = self.config.device
        for event in self.monitor.read_events():
            if isinstance(event, LinkEvent):
                if event.name != device and event.index != self.facts.index:
                    continue
                if event.deleted:
                    self.log.error(f"Interface [{device}] has disappeared")
                    self._set_link(now, False)
                    continue
                if event.index != self.facts.index:
                    self._interface_recreated(now)
                    continue
                self._set_link(now, event.running)
            elif isinstance(event, AddressEvent):
                self._address_event(now, event)
            else:  # netlink overrun: re-read the facts
                self._refresh_facts(now)

    def _address_event(self, now: float, event: AddressEvent) -> None:
        if event.index != self.facts.index or event.address.ip != self.config.addr:
            return
        if not event.deleted or self.machine.state is not State.MASTER:
            return
        if self.runner.running() or self.runner.pending():
            return  # a script is at work on the address (an upscript may del and re-add it)
        if now < self._vip_restore_after:
            self.log.limited(
                "vip-removed",
                Level.WARNING,
                f"Virtual address [{self.config.addr_text}] removed again from "
                f"[{self.config.device}]: not rerunning the upscript so soon",
                now,
            )
            return
        self._vip_restore_after = now + VIP_RESTORE_HOLDOFF
        self.log.warning(
            f"Virtual address [{self.config.addr_text}] was removed from "
            f"[{self.config.device}] while MASTER: running the upscript again"
        )
        self._apply(now, [RunScript("up")])

    def _set_link(self, now: float, up: bool) -> None:
        if self.config.ignoreifstate:
            return
        self._apply(now, self.machine.set_link(now, up))

    def _interface_recreated(self, now: float) -> None:
        self.log.warning(f"Interface [{self.config.device}] is back: reopening it")
        try:
            facts = interface_facts(self.config.device)
            sock = open_carp_socket(self.config)
        except UcarpError as exc:  # gone again already: wait for the next event
            self.log.error(str(exc))
            self._set_link(now, False)
            return
        self._selector.unregister(self.sock.fileno())
        self.sock.close()
        self.facts, self.sock = facts, sock
        self._selector.register(self.sock.fileno(), selectors.EVENT_READ, "carp")
        self._set_link(now, self.facts.running)

    def _refresh_facts(self, now: float) -> None:
        try:
            facts = interface_facts(self.config.device)
        except UcarpError as exc:  # the interface is gone: same as a deletion
            self.log.error(f"Interface [{self.config.device}]: {exc}")
            self._set_link(now, False)
            return
        if facts.index != self.facts.index:
            self._interface_recreated(now)
        else:
            self.facts = facts
            self._set_link(now, facts.running)

    def _reap_scripts(self, now: float) -> None:
        self._script_results(now, self.runner.handle(now))

    def _script_results(self, now: float, results: list[ScriptResult]) -> None:
        for result in results:
            self.stats.last_script = result
            kind: Literal["up", "down"] = "up" if result.kind == "up" else "down"
            self._apply(now, self.machine.script_finished(kind, result.returncode == 0))
            self._write_state(now)

    # ------------------------------------------------------------------ signals

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        handled = [signal.SIGUSR1, signal.SIGUSR2, CONTROL_SIGNAL, *EXIT_SIGNALS]
        for signum in handled:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Runs between bytecodes: only record; the loop acts on it.
        self._signals.append(signum)

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self, now: float) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGUSR1:
                self.log.info(
                    f"{'BACKUP' if self.machine.state is State.BACKUP else 'MASTER'}"
                    f" on {self.config.interface} id {self.config.vhid}"
                )
            elif signum == signal.SIGUSR2:
                self._apply(now, self.machine.demote(now))
            elif signum == CONTROL_SIGNAL:
                self._read_maintenance(now)
            elif signum in EXIT_SIGNALS:
                if self.config.shutdown:
                    self._apply(now, self.machine.shutdown(now))
                    self._exit_code = 0
                else:
                    self._exit_code = 128 + signum
                    self._exit_signal = signum
                return

    # ------------------------------------------------------------------ actions

    def _apply(self, now: float, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendAdvert):
                self._send_advert(now, action)
            elif isinstance(action, SendGratuitousArp):
                self._send(gratuitous_arp(self.facts.mac, self.config.addr), now)
            elif isinstance(action, RunScript):
                self._run_script(now, action)
            elif isinstance(action, StateChanged):
                self._write_state(now)
            elif isinstance(action, Log):
                self.log.log(_SEVERITY_LEVEL[action.severity], action.message)

    def _send_advert(self, now: float, action: SendAdvert) -> None:
        frame = self.codec.encode(
            advbase=action.advbase,
            advskew=action.advskew,
            counter=action.counter,
            ip_id=self._rng.getrandbits(16),
        )
        ok = self._send(frame, now)
        if ok:
            self.stats.adverts_sent += 1
        else:
            self.stats.send_errors += 1
        self._apply(now, self.machine.advert_sent(ok))

    def _send(self, frame: bytes, now: float) -> bool:
        try:
            self.sock.send(frame)
        except OSError as exc:
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
            self.log.limited("send", Level.WARNING, f"write() has failed: {reason}", now)
            return False
        return True

    def _run_script(self, now: float, action: RunScript) -> None:
        script = self.config.upscript if action.kind == "up" else self.config.downscript
        if not script:
            # Nothing to run is a script that finished at once (a leave advert may wait).
            self._apply(now, self.machine.script_finished(action.kind, True))
            return
        argv = [script, self.config.interface, self.config.addr_text]
        if self.config.xparam is not None:
            argv.append(self.config.xparam)
        self.runner.submit(action.kind, argv, now)

    def _read_maintenance(self, now: float) -> None:
        wanted = self.statefile.maintenance_requested()
        self._apply(now, self.machine.set_maintenance(now, wanted))
        self._write_state(now)

    def _write_state(self, now: float) -> None:
        """Write the state file if anything in it changed (and re-arm the refresh)."""
        # Rewritten at least every refresh period: "updated" is the daemon's heartbeat.
        self._state_refresh_at = now + STATE_REFRESH_SECONDS
        try:
            self.statefile.write(self.snapshot(now))
        except OSError as exc:
            self.log.limited("statefile", Level.ERROR, f"State file: {exc}", now)

    def snapshot(self, now: float) -> dict[str, object]:
        """Everything an admin wants to know about this instance, JSON-ready."""
        m = self.machine
        master = m.master
        last = self.stats.last_script
        return {
            "pid": os.getpid(),
            "interface": self.config.interface,
            "vhid": self.config.vhid,
            "vip": self.config.addr_text,
            "srcip": str(self.config.srcip),
            "advbase": self.config.advbase,
            "advskew": m.advskew,
            "state": m.state.value,
            "since": round(time.time() - (now - m.since), 3),
            "updated": round(time.time(), 3),
            "transitions": m.transitions,
            "master": None
            if master is None
            else {
                "address": str(master.address),
                "advbase": master.advbase,
                "advskew": master.advskew,
            },
            "maintenance": m.maintenance,
            "link_up": m.link_up,
            "adverts_sent": self.stats.adverts_sent,
            "adverts_received": self.stats.adverts_received,
            "send_errors": self.stats.send_errors,
            "dropped": dict(self.stats.dropped),
            "replay_window": len(self.replay),
            "last_script": None
            if last is None
            else {
                "kind": last.kind,
                "argv": list(last.argv),
                "returncode": last.returncode,
                "signal": last.signal,
                "duration": round(last.duration, 3),
                "timed_out": last.timed_out,
                "error": last.error,
            },
        }

    # ------------------------------------------------------------------ exit

    def _finish(self) -> None:
        if self._exit_code == 0 and self.config.shutdown:
            # -z: the downscript must have run before we go (ucarp runs it inline); its
            # end releases the leave advert, so the socket is still open here.
            results = self.runner.drain(time.monotonic() + SCRIPT_DRAIN_SECONDS)
            self._script_results(self.clock(), results)
        self.log.flush(self.clock())
        signal.set_wakeup_fd(-1)
        # Each release is independent: one failing must not leave the state file behind.
        releases: list[Callable[[], None]] = [self.sock.close, self.statefile.remove]
        if self.monitor is not None:
            releases.append(self.monitor.close)
        releases += [lambda: os.close(self._wake_r), lambda: os.close(self._wake_w)]
        for release in releases:
            try:
                release()
            except OSError as exc:
                self.log.error(f"While exiting: {exc}")
