"""The imperative shell: one event loop for any number of CARP instances.

Everything that waits is a file descriptor in one selector (one CARP socket per
interface and group, the netlink link monitor, the signal wake-up pipe) or a deadline in
one heap on the monotonic clock (each instance's timers, script timeouts and state-file
heartbeat, the log limiter's summaries). Finished scripts are noticed through SIGCHLD.

Isolation: every call into an instance is guarded, so an exception in one is logged and
the others go on; an instance's scripts run in its own queue, so a hung script delays
nobody else's adverts; an interface that vanishes silences only the instances on it.

The ``ucarp`` command is this loop with one instance (its exit signals keep ucarp's
meaning); ``pyucarp run`` adds instances from the interface files and re-reads them on
SIGHUP (:meth:`EventLoop.reload`).
"""

from __future__ import annotations

import errno
import heapq
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv6Address

from pyucarp.config.settings import Config
from pyucarp.core.instance import Frame
from pyucarp.errors import ConfigError, UcarpError
from pyucarp.records import TYPE_CHECKING
from pyucarp.shell.iface import (
    AddressEvent,
    InterfaceFacts,
    LinkEvent,
    LinkMonitor,
    interface_facts,
)
from pyucarp.shell.logs import InstanceLog, Level, UcarpLog
from pyucarp.shell.netio import CarpSocket, open_unicast_socket
from pyucarp.shell.realtime import quiet_gc
from pyucarp.shell.runtime import InstanceRuntime
from pyucarp.shell.statefile import CONTROL_SIGNAL

if TYPE_CHECKING:
    import random

EXIT_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)
SCRIPT_DRAIN_SECONDS = 30.0  # how long a graceful exit waits for the downscripts
_ETH_IP = b"\x08\x00"
_ETH_IPV6 = b"\x86\xdd"


def _system_random_bits(bits: int) -> int:
    """``bits`` random bits from the kernel, as random.SystemRandom().getrandbits gives
    them: the random module would cost every daemon ~0.2 MiB for this."""
    return int.from_bytes(os.urandom((bits + 7) // 8), "big") >> (-bits % 8)


def check_instance(config: Config, log: InstanceLog) -> InterfaceFacts:
    """The start-up checks of one instance, in ucarp's order; its interface facts.

    Raises ConfigError (source address not on the interface, a script that cannot run)
    or RuntimeFailure (no such interface); warns of a missing script as ucarp does.
    """
    facts = interface_facts(config.device)
    # By bytes: a link-local source may be written with its scope ("fe80::1%eth0"), which
    # must then name this very interface.
    scope = getattr(config.srcip, "scope_id", None)
    if scope and scope != config.device:
        raise ConfigError(f"Source address [{config.srcip}] is scoped to [{scope}], "
                          f"not to [{config.device}]")
    if not any(addr.ip.packed == config.srcip.packed for addr in facts.addresses):
        raise ConfigError(
            f"Source address [{config.srcip}] is not configured on interface [{config.device}]"
        )
    for script, word in ((config.upscript, "up"), (config.downscript, "down")):
        if not script:
            log.warning(f"Warning: no script called when going {word}")
        elif not os.path.isfile(script) or not os.access(script, os.X_OK):
            raise ConfigError(f"Script [{script}] is not an executable file")
    if config.notify and (not os.path.isfile(config.notify)
                          or not os.access(config.notify, os.X_OK)):
        raise ConfigError(f"Script [{config.notify}] is not an executable file")
    return facts


def _port_key(config: Config) -> tuple[str, IPv4Address | IPv6Address, bool]:
    """Instances share a socket when these agree; unicast ones join no group."""
    return (config.device, config.mcast, config.nomcast or bool(config.peers))


def _has_carrier(device: str) -> bool:
    """Whether ``device`` exists and has carrier now (a tracked interface's first state)."""
    try:
        return interface_facts(device).running
    except UcarpError:
        return False


def _vhid_of(frame: bytes) -> int | None:
    """The CARP vhid byte of a frame (just after the IPv4 or IPv6 header), if it has one."""
    if len(frame) < 36:
        return None
    if frame[12:14] == _ETH_IP:
        at = 14 + (frame[14] & 0x0F) * 4 + 1
    elif frame[12:14] == _ETH_IPV6:
        at = 14 + 40 + 1  # the BSDs send no extension header (the kernel filter agrees)
    else:
        return None
    return frame[at] if at < len(frame) else None


class Port:
    """One CARP socket (interface, group, multicast or broadcast) and its instances."""

    def __init__(self, device: str, group: IPv4Address | IPv6Address, nomcast: bool,
                 srcip: IPv4Address | IPv6Address,
                 facts: InterfaceFacts) -> None:
        self.device = device
        self.group = group
        self.nomcast = nomcast
        self.srcip = srcip
        self.facts = facts
        self.by_vhid: dict[int, InstanceRuntime] = {}
        self.sock: CarpSocket | None = None
        self._unicast: socket.socket | None = None  # see unicast()

    def unicast(self) -> socket.socket:
        """The raw socket of the port's family for adverts to unicast peers
        (``netio.open_unicast_socket``), opened on first use (raises RuntimeFailure)."""
        if self._unicast is None:
            self._unicast = open_unicast_socket(self.device, self.group.version)
        return self._unicast

    def send_unicast(self, frame: Frame) -> None:
        """One advert packet to its peer; an IPv6 peer is reached on this interface (the
        scope a link-local peer needs). Raises OSError or RuntimeFailure."""
        peer = frame.peer
        assert peer is not None
        if peer.version == 6:
            self.unicast().sendto(frame.data, (str(peer), 0, 0, self.facts.index))
        else:
            self.unicast().sendto(frame.data, (str(peer), 0))

    def drop_unicast(self) -> None:
        """Close the unicast socket: it is bound to an interface that is gone, and is
        opened again on the next advert."""
        if self._unicast is not None:
            self._unicast.close()
            self._unicast = None

    def filenos(self) -> list[int]:
        """The port's open descriptors: its packet socket's and its unicast socket's."""
        fds = [] if self.sock is None else self.sock.filenos()
        if self._unicast is not None:
            fds.append(self._unicast.fileno())
        return fds

    def close(self) -> None:
        """Release the sockets."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.drop_unicast()

    @property
    def key(self) -> tuple[str, IPv4Address | IPv6Address, bool]:
        """What instances must share to share this socket."""
        return (self.device, self.group, self.nomcast)

    def open(self) -> CarpSocket:
        """A socket filtered on this port's vhids (raises RuntimeFailure)."""
        return CarpSocket(self.device, srcip=self.srcip, group=self.group,
                          nomcast=self.nomcast, vhid=sorted(self.by_vhid) or None)

    def refilter(self) -> None:
        """The set of vhids changed: let the kernel filter on the new set."""
        if self.sock is not None and self.by_vhid:
            self.sock.set_vhids(sorted(self.by_vhid))

    def runtimes(self) -> list[InstanceRuntime]:
        """The instances on this port."""
        return list(self.by_vhid.values())


class EventLoop:
    """Runs CARP instances until a signal ends the process."""

    def __init__(
        self,
        log: UcarpLog,
        *,
        graceful_exit: bool,
        hup_reloads: bool = False,
        prefix_logs: bool = False,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """``graceful_exit``: exit signals make every instance leave (-z); otherwise the
        process dies of the signal after cleaning up, as ucarp. ``hup_reloads``: SIGHUP
        calls :meth:`reload` instead of ending the process."""
        self.log = log
        self.clock = clock
        self.graceful_exit = graceful_exit
        self.hup_reloads = hup_reloads
        self.prefix_logs = prefix_logs
        self._random_bits = _system_random_bits if rng is None else rng.getrandbits
        self.monitor = LinkMonitor()
        self.ports: dict[tuple[str, IPv4Address | IPv6Address, bool], Port] = {}
        self.instances: dict[str, InstanceRuntime] = {}
        self._retiring: list[InstanceRuntime] = []
        self._heap: list[tuple[float, int, InstanceRuntime]] = []
        self._scheduled: dict[InstanceRuntime, float] = {}
        self._seq = 0
        self._signals: list[int] = []
        # Both made in run(): -B closes every descriptor not in filenos() before that.
        self._selector: selectors.BaseSelector | None = None
        self._wake: tuple[int, int] | None = None
        self._exit_code: int | None = None
        self._exit_signal: int | None = None
        self._reloader: Callable[[EventLoop], None] | None = None

    # ------------------------------------------------------------------ instances

    def filenos(self) -> list[int]:
        """Every descriptor that must survive daemonizing."""
        fds = [self.monitor.fileno()]
        for port in self.ports.values():
            fds += port.filenos()
        return fds

    def instance_log(self, config: Config) -> InstanceLog:
        """The log an instance writes to: its lines named when there are several."""
        prefix = f"[{config.interface}-{config.vhid}] " if self.prefix_logs else ""
        return InstanceLog(self.log, prefix)

    def add(self, config: Config, facts: InterfaceFacts, *, start: bool = False,
            script_env: Mapping[str, str] | None = None) -> InstanceRuntime:
        """Open (or share) the instance's socket and make it part of the loop.

        Raises UcarpError when its socket cannot be opened or its interface and vhid are
        taken; nothing is left half-added then.
        """
        key = _port_key(config)
        port = self.ports.get(key)
        if port is not None and config.vhid in port.by_vhid:
            raise ConfigError(
                f"vhid {config.vhid} on [{config.device}] is already run by "
                f"{port.by_vhid[config.vhid].name}"
            )
        new_port = port is None
        if port is None:
            port = Port(*key, config.srcip, facts)
        runtime = InstanceRuntime(
            config,
            self.instance_log(config),
            mac=port.facts.mac,
            transmit=self._transmitter(port, config),
            random_bits=self._random_bits,
            script_env=script_env,
        )
        port.by_vhid[config.vhid] = runtime
        try:
            if new_port:
                port.sock = port.open()
            else:
                port.refilter()
            if config.peers:
                port.unicast()
        except (UcarpError, OSError):
            del port.by_vhid[config.vhid]
            raise
        if new_port:
            self.ports[key] = port
            self._register_port(port)
        self.instances[runtime.name] = runtime
        if start:
            self._start(runtime, self.clock())
        return runtime

    def remove(self, runtime: InstanceRuntime) -> None:
        """The instance leaves (downscript, leave advert) and is closed once its scripts ran."""
        now = self.clock()
        self._guarded(runtime, runtime.shutdown, now)
        self.instances.pop(runtime.name, None)
        # Its state file is gone at once; a successor with the same name writes its own.
        runtime.retire()
        if runtime.statefile.path not in {rt.statefile.path for rt in self.instances.values()}:
            self._guarded(runtime, runtime.statefile.remove)
        for port in list(self.ports.values()):
            if port.by_vhid.get(runtime.config.vhid) is runtime:
                # It keeps its transmit path until it is closed: the leave advert may
                # still have to wait for the downscript.
                del port.by_vhid[runtime.config.vhid]
                if port.by_vhid:
                    port.refilter()
        self._retiring.append(runtime)
        self._schedule(runtime)

    def set_reloader(self, reloader: Callable[[EventLoop], None]) -> None:
        """What SIGHUP runs (``pyucarp run``)."""
        self._reloader = reloader

    def _transmitter(self, port: Port, config: Config) -> Callable[[Frame, float], bool]:
        log_key = f"send-{config.interface}-{config.vhid}"

        def transmit(frame: Frame, now: float) -> bool:
            sock = port.sock
            if sock is None:
                return False
            try:
                if frame.peer is None:
                    sock.send(frame.data)
                else:
                    port.send_unicast(frame)
            except OSError as exc:
                reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
                self.log.limited(log_key, Level.WARNING, f"write() has failed: {reason}", now)
                return False
            except UcarpError as exc:  # the unicast socket could not be opened again
                self.log.limited(log_key, Level.WARNING, f"write() has failed: {exc}", now)
                return False
            return True

        return transmit

    # ------------------------------------------------------------------ running

    @property
    def exit_signal(self) -> int | None:
        """The signal that ended a loop without graceful exit: re-raised after cleanup."""
        return self._exit_signal

    def run(self) -> int:
        """Run until a signal ends the process; returns the exit status."""
        self._selector = selectors.DefaultSelector()
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._install_signals()
        self._selector.register(self._wake[0], selectors.EVENT_READ, None)
        self._selector.register(self.monitor.fileno(), selectors.EVENT_READ, self.monitor)
        for port in self.ports.values():
            self._register_port(port)
        now = self.clock()
        for runtime in list(self.instances.values()):
            self._start(runtime, now)
        quiet_gc()
        try:
            while self._exit_code is None:
                self._step()
        finally:
            self._finish()
        return self._exit_code

    def _start(self, runtime: InstanceRuntime, now: float) -> None:
        port = self._port_of(runtime)
        link_up = port.facts.running if port is not None else False
        self._guarded(runtime, runtime.start, now, link_up=link_up)
        for name in runtime.config.track_interfaces:
            self._guarded(runtime, runtime.tracked_interface, name, _has_carrier(name), now)
        self._schedule(runtime)

    def _register_port(self, port: Port) -> None:
        if port.sock is not None and self._selector is not None:
            self._selector.register(port.sock.fileno(), selectors.EVENT_READ, port)

    def _step(self) -> None:
        now = self.clock()
        assert self._selector is not None
        events = self._selector.select(self._timeout(now))
        now = self.clock()
        for key, _mask in events:
            data = key.data
            if isinstance(data, Port):
                self._read_port(data, now)
            elif data is self.monitor:
                self._read_link(now)
            else:
                self._drain_wakeups()
        self._handle_signals(now)
        if self._exit_code is not None:
            return
        self._run_due(now)
        self.log.flush(now)

    def _timeout(self, now: float) -> float | None:
        heap = self._heap
        while heap and self._scheduled.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # superseded by a later schedule
        due = heap[0][0] if heap else None
        flush = self.log.next_deadline()
        if flush is not None and (due is None or flush < due):
            due = flush
        return None if due is None else max(0.0, due - now)

    def _schedule(self, runtime: InstanceRuntime) -> None:
        try:
            due = runtime.next_deadline()
        except Exception as exc:  # noqa: BLE001 - one instance must never stop the loop
            self._failed(runtime, exc)
            return
        if self._scheduled.get(runtime) == due:
            return
        self._scheduled[runtime] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, runtime))

    def _run_due(self, now: float) -> None:
        heap = self._heap
        due: list[InstanceRuntime] = []
        while heap and heap[0][0] <= now:
            when, _seq, runtime = heapq.heappop(heap)
            if self._scheduled.get(runtime) == when:
                del self._scheduled[runtime]
                due.append(runtime)
        for runtime in due:
            self._guarded(runtime, runtime.service, now)
            self._settle(runtime)

    def _settle(self, runtime: InstanceRuntime) -> None:
        """Re-arm an instance after it ran; close a retiring one whose scripts are done."""
        if runtime in self._retiring and not runtime.has_children() and \
                runtime.children_deadline() is None:
            self._close_retired(runtime)
            return
        self._schedule(runtime)

    def _close_retired(self, runtime: InstanceRuntime) -> None:
        self._retiring.remove(runtime)
        self._scheduled.pop(runtime, None)
        for key, port in list(self.ports.items()):
            if not port.by_vhid and not any(
                self._port_of(rt) is port for rt in self._retiring
            ):
                self._close_port(key, port)

    def _close_port(self, key: tuple[str, IPv4Address | IPv6Address, bool], port: Port) -> None:
        del self.ports[key]
        if port.sock is not None:
            self._unregister(port.sock)
        port.close()

    def _unregister(self, sock: CarpSocket) -> None:
        if self._selector is not None:
            try:
                self._selector.unregister(sock.fileno())
            except (KeyError, ValueError):
                pass

    def _port_of(self, runtime: InstanceRuntime) -> Port | None:
        return self.ports.get(_port_key(runtime.config))

    def _guarded(self, runtime: InstanceRuntime, fn: Callable[..., None], *args: object,
                 **kwargs: object) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one instance must never stop the others
            self._failed(runtime, exc)

    def _failed(self, runtime: InstanceRuntime, exc: Exception) -> None:
        self.log.limited(
            f"internal-{runtime.name}",
            Level.ERROR,
            f"[{runtime.name}] internal error: {type(exc).__name__}: {exc}",
            self.clock(),
        )

    def _all(self) -> list[InstanceRuntime]:
        return [*self.instances.values(), *self._retiring]

    # ------------------------------------------------------------------ inputs

    def _read_port(self, port: Port, now: float) -> None:
        sock = port.sock
        if sock is None:
            return
        try:
            frames = sock.recv_frames()
        except OSError as exc:
            self.log.limited(f"recv-{port.device}", Level.ERROR,
                             f"Receive error: {exc.strerror}", now)
            return
        by_vhid = port.by_vhid
        if not by_vhid:
            return
        fallback = next(iter(by_vhid.values()))
        for frame in frames:
            vhid = _vhid_of(frame)
            # A frame no instance claims goes to one of them, whose checks say what it is.
            runtime = by_vhid.get(vhid, fallback) if vhid is not None else fallback
            self._guarded(runtime, runtime.receive, frame, now)
            self._schedule(runtime)

    def _read_link(self, now: float) -> None:
        for event in self.monitor.read_events():
            if isinstance(event, LinkEvent):
                for port in list(self.ports.values()):
                    if event.name == port.device or event.index == port.facts.index:
                        self._link_event(port, event, now)
                self._tracked_link(event.name, event.running and not event.deleted, now)
            elif isinstance(event, AddressEvent):
                for port in self.ports.values():
                    if event.index == port.facts.index:
                        for runtime in port.runtimes():
                            self._guarded(runtime, runtime.address_event, now, event)
                            self._schedule(runtime)
            else:  # netlink overrun: re-read the facts
                for port in list(self.ports.values()):
                    self._refresh_facts(port, now)
                tracked = {n for rt in self.instances.values() for n in rt.config.track_interfaces}
                for name in tracked:
                    self._tracked_link(name, _has_carrier(name), now)

    def _tracked_link(self, name: str, up: bool, now: float) -> None:
        for runtime in list(self.instances.values()):
            if name in runtime.config.track_interfaces:
                self._guarded(runtime, runtime.tracked_interface, name, up, now)
                self._schedule(runtime)

    def _link_event(self, port: Port, event: LinkEvent, now: float) -> None:
        if event.deleted:
            self.log.error(f"Interface [{port.device}] has disappeared")
            self._set_link(port, now, False)
        elif event.index != port.facts.index:
            self._interface_recreated(port, now)
        else:
            self._set_link(port, now, event.running)

    def _set_link(self, port: Port, now: float, up: bool) -> None:
        for runtime in port.runtimes():
            self._guarded(runtime, runtime.set_link, now, up)
            self._schedule(runtime)

    def _interface_recreated(self, port: Port, now: float) -> None:
        self.log.warning(f"Interface [{port.device}] is back: reopening it")
        try:
            facts = interface_facts(port.device)
            sock = port.open()
        except UcarpError as exc:  # gone again already: wait for the next event
            self.log.error(str(exc))
            self._set_link(port, now, False)
            return
        if port.sock is not None:
            self._unregister(port.sock)
            port.sock.close()
        port.facts, port.sock = facts, sock
        port.drop_unicast()  # SO_BINDTODEVICE holds the old interface's index
        if any(runtime.config.peers for runtime in port.runtimes()):
            try:  # at once: while it is missing, the kernel answers the peers with ICMP
                port.unicast()
            except UcarpError as exc:  # opened again with the next advert
                self.log.error(str(exc))
        self._register_port(port)
        for runtime in port.runtimes():
            runtime.set_mac(facts.mac)
        self._set_link(port, now, facts.running)

    def _refresh_facts(self, port: Port, now: float) -> None:
        try:
            facts = interface_facts(port.device)
        except UcarpError as exc:  # the interface is gone: same as a deletion
            self.log.error(f"Interface [{port.device}]: {exc}")
            self._set_link(port, now, False)
            return
        if facts.index != port.facts.index:
            self._interface_recreated(port, now)
        else:
            port.facts = facts
            self._set_link(port, now, facts.running)

    # ------------------------------------------------------------------ signals

    def _install_signals(self) -> None:
        assert self._wake is not None
        signal.set_wakeup_fd(self._wake[1], warn_on_full_buffer=False)
        handled = [signal.SIGUSR1, signal.SIGUSR2, CONTROL_SIGNAL, signal.SIGCHLD,
                   *EXIT_SIGNALS]
        for signum in handled:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Runs between bytecodes: only record; the loop acts on it.
        self._signals.append(signum)

    def _drain_wakeups(self) -> None:
        assert self._wake is not None
        try:
            while os.read(self._wake[0], 512):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self, now: float) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGCHLD:
                self._reap_all(now)
            elif signum == signal.SIGUSR1:
                self._each(lambda rt: rt.report())
            elif signum == signal.SIGUSR2:
                self._each(lambda rt: rt.demote(now))
            elif signum == CONTROL_SIGNAL:
                self._each(lambda rt: rt.read_maintenance(now))
            elif signum == signal.SIGHUP and self.hup_reloads:
                self.reload()
            elif signum in EXIT_SIGNALS:
                if self.graceful_exit:
                    self._exit_code = 0
                else:
                    self._exit_code = 128 + signum
                    self._exit_signal = signum
                return

    def _each(self, action: Callable[[InstanceRuntime], None]) -> None:
        for runtime in list(self.instances.values()):
            self._guarded(runtime, action, runtime)
            self._schedule(runtime)

    def _reap_all(self, now: float) -> None:
        for runtime in self._all():
            if runtime.has_children():
                self._guarded(runtime, runtime.reap_scripts, now)
                self._settle(runtime)

    def reload(self) -> None:
        """SIGHUP in ``pyucarp run``: re-read the configuration (see cli)."""
        if self._reloader is None:
            return
        try:
            self._reloader(self)
        except Exception as exc:  # noqa: BLE001 - a reload must never end the daemon
            self.log.error(f"Reload failed, nothing changed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ exit

    def _finish(self) -> None:
        if self._exit_code == 0 and self.graceful_exit:
            self._leave_all()
        self.log.flush(self.clock())
        signal.set_wakeup_fd(-1)
        # Each release is independent: one failing must not leave a state file behind.
        releases: list[Callable[[], None]] = []
        for runtime in self._all():
            releases.append(runtime.statefile.remove)
        for runtime in self._all():
            releases += [runtime.stop_checks, runtime.release_addresses]
        for port in self.ports.values():
            releases.append(port.close)
        releases.append(self.monitor.close)
        if self._selector is not None:
            releases.append(self._selector.close)
        if self._wake is not None:
            releases += [lambda fd=fd: os.close(fd) for fd in self._wake]  # type: ignore[misc]
        for release in releases:
            try:
                release()
            except OSError as exc:
                self.log.error(f"While exiting: {exc}")

    def _leave_all(self) -> None:
        """Every instance leaves as with -z: downscripts run (bounded), leave adverts go."""
        now = self.clock()
        for runtime in list(self.instances.values()):
            self._guarded(runtime, runtime.shutdown, now)
        self._retiring.extend(self.instances.values())
        self.instances.clear()
        deadline = now + SCRIPT_DRAIN_SECONDS
        assert self._selector is not None
        while True:
            now = self.clock()
            busy = [rt for rt in self._retiring
                    if rt.has_children() or rt.children_deadline() is not None]
            if not busy or now >= deadline:
                break
            wake = deadline
            for runtime in busy:
                due = runtime.children_deadline()
                if due is not None and due < wake:
                    wake = due
            self._selector.select(max(0.0, min(wake - now, 0.5)))
            self._drain_wakeups()
            self._signals.clear()  # further exit signals change nothing now
            for runtime in busy:
                self._guarded(runtime, runtime.reap_scripts, self.clock())
        for runtime in self._retiring:
            if runtime.scripts_busy():
                # Past the deadline: the runners kill what still runs.
                results = runtime.runner.drain(time.monotonic())
                runtime.notifier.drain(time.monotonic())
                self._guarded(runtime, runtime.finish_scripts, results, self.clock())

