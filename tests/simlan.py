"""A simulated Ethernet segment for pyucarp's functional core, on a virtual clock.

Each node is a real :class:`~pyucarp.core.instance.CarpInstance` — the pipeline the daemon
drives: codec, replay guard and state machine. Every advertisement is encoded to its 70 wire
bytes and judged by every other node, so the wire format, the receive checks and the replay
guard are in the loop. A discrete-event scheduler (a heap of ``(time, seq, event)``) plays
the shell's part: it calls ``handle_timer`` at ``get_timer()``, delivers frames after a
seeded per-link delay with optional jitter, loss and duplication, and reports send results
back to the instance.

Scripts run as the daemon runs them: one at a time, in the order asked for, each taking the
node's ``script_time``; each end is reported to the machine (which may release a leave
advert). The address is taken to be on a node from the start of an upscript to the end of
the next downscript (the widest window either script could touch it in), so that tests can
check that two nodes never hold it at once.

Nodes can be started late, killed (they vanish silently), revived (a fresh process),
partitioned, demoted (SIGUSR2), put in maintenance, unplugged, made to fail their sends, and
shut down gracefully (-z: as the daemon's exit path, the node stops listening, drains its
scripts, feeding their ends to the machine so that the leave advert goes out, then ends).
A node with tracked checks (``NodeSpec(tracked=True)``) is told each check's results at
virtual times (``check``, ``check_series``) and its tracked interfaces' carrier
(``tracked_interface``), as the daemon's check runner and link monitor report them.
The simulation records every state change, so that tests can measure how long the segment
had two masters ("dual master time") or none ("no-master time").
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from ipaddress import IPv4Address
from typing import Literal

from pyucarp.core.codec import Advert, Dropped, DropReason, parse_frame
from pyucarp.core.health import HealthJudge
from pyucarp.core.instance import CarpInstance
from pyucarp.core.machine import (
    CarpMachine,
    Log,
    Params,
    RunScript,
    SendAdvert,
    State,
    StateChanged,
)

DEFAULT_GROUP = IPv4Address("224.0.0.18")


@dataclass(frozen=True)
class LinkModel:
    """How the segment carries frames.

    Each ordered pair of nodes gets a fixed one-way delay drawn once from
    ``[delay, delay + spread]``; each frame then adds ``[0, jitter]``. ``loss`` and
    ``duplicate`` are per-frame, per-receiver probabilities.
    """

    delay: float = 0.0005
    spread: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0

    @property
    def max_delay(self) -> float:
        """The longest one-way delay a frame can have (a duplicate included)."""
        return self.delay + self.spread + self.jitter


@dataclass(frozen=True)
class NodeSpec:
    """One node's configuration (its command line, in effect)."""

    name: str
    srcip: IPv4Address
    advbase: int = 1
    advskew: int = 0
    deadratio: int = 3
    preempt: bool = False
    neutral: bool = False
    password: bytes | None = None  # None: the segment's password
    byteorder: Literal["little", "big"] = "little"
    script_time: float = 0.05  # how long its up/down scripts take
    scripts_ok: bool = True  # whether they exit with status 0
    # Service health: ``checks`` tracked checks and these tracked interfaces, judged with
    # fall/rise; unhealthy means FAULT, or with ``track_weight`` a higher advertised skew.
    tracked: bool = False
    checks: int = 1
    track_interfaces: tuple[str, ...] = ()
    fall: int = 1
    rise: int = 1
    track_weight: int | None = None

    def params(self) -> Params:
        """The machine parameters for this node: each field of the spec that is one of
        :class:`Params` (the others keep the machine's defaults)."""
        own = {f.name for f in dataclass_fields(self)}
        return Params(**{name: getattr(self, name) for name in Params._fields if name in own})

    def health(self) -> HealthJudge | None:
        """A fresh judge of its checks and tracked interfaces (None when untracked)."""
        if not self.tracked:
            return None
        return HealthJudge(self.checks, self.track_interfaces, fall=self.fall, rise=self.rise)


@dataclass(frozen=True)
class Transition:
    """A node's state change (``None`` = not running) at a virtual time."""

    time: float
    node: str
    old: State | None
    new: State | None
    why: str


@dataclass
class SimNode:
    """A node of the simulated segment and everything it did."""

    spec: NodeSpec
    instance: CarpInstance | None = None
    incarnation: int = 0
    segment: int = 0
    link_up: bool = True
    send_ok: bool = True
    timer_gen: int = 0
    timer_at: float | None = None
    exiting: bool = False  # -z: the loop has ended, the scripts are being drained
    scripts: list[tuple[float, str]] = field(default_factory=list)  # (asked at, kind)
    script_queue: deque[Literal["up", "down"]] = field(default_factory=deque)
    script_running: tuple[float, Literal["up", "down"]] | None = None  # (started, kind)
    script_runs: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, kind)
    arps: list[float] = field(default_factory=list)
    sent: list[tuple[float, SendAdvert]] = field(default_factory=list)
    accepted: list[tuple[float, Advert]] = field(default_factory=list)
    drops: Counter[DropReason] = field(default_factory=Counter)
    logs: list[tuple[float, Log]] = field(default_factory=list)
    check_results: list[tuple[float, int, bool]] = field(default_factory=list)  # (t, check, ok)
    health_changes: list[tuple[float, bool | None]] = field(default_factory=list)  # verdicts

    @property
    def name(self) -> str:
        """The node's name."""
        return self.spec.name

    @property
    def machine(self) -> CarpMachine | None:
        """The running instance's state machine."""
        return None if self.instance is None else self.instance.machine

    @property
    def alive(self) -> bool:
        """True while its process runs."""
        return self.instance is not None

    @property
    def state(self) -> State | None:
        """The machine's state, or None when the node is not running."""
        return None if self.machine is None else self.machine.state

    def last_accepted_before(self, t: float) -> float | None:
        """When it last accepted an advert at or before ``t``."""
        times = [when for when, _ in self.accepted if when <= t]
        return max(times) if times else None


Event = Callable[[], None]


class SimLan:
    """N CARP nodes on one simulated segment, driven by a discrete-event scheduler."""

    def __init__(
        self,
        *,
        seed: int = 0,
        link: LinkModel = LinkModel(),
        vhid: int = 1,
        password: bytes = b"secret",
        vip: IPv4Address = IPv4Address("192.0.2.100"),
        group: IPv4Address = DEFAULT_GROUP,
    ) -> None:
        self.seed = seed
        self.link = link
        self.vhid = vhid
        self.password = password
        self.vip = vip
        self.group = group
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {}
        self.transitions: list[Transition] = []
        self.frames_sent = 0
        self.frames_lost = 0
        self._rng = random.Random(f"simlan-{seed}")
        self._pair_delay: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, int, Event]] = []
        self._seq = 0

    # ------------------------------------------------------------ building

    def add(self, spec: NodeSpec, start_at: float | None = 0.0) -> SimNode:
        """Add a node; it starts at ``start_at`` (None: not started)."""
        if spec.name in self.nodes:
            raise ValueError(f"duplicate node {spec.name}")
        node = SimNode(spec=spec)
        for other in self.nodes:
            for pair in ((other, spec.name), (spec.name, other)):
                self._pair_delay[pair] = self.link.delay + self._rng.uniform(0, self.link.spread)
        self.nodes[spec.name] = node
        if start_at is not None:
            self.revive(spec.name, at=start_at)
        return node

    # ------------------------------------------------------------ scheduling

    def at(self, t: float, event: Event) -> None:
        """Run ``event`` at virtual time ``t`` (FIFO among equal times)."""
        if t < self.now:
            raise ValueError(f"cannot schedule in the past: {t} < {self.now}")
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, event))

    def run(self, until: float, max_events: int = 1_000_000) -> None:
        """Process every event up to and including ``until``; the clock ends at ``until``."""
        for _ in range(max_events):
            if not self._heap or self._heap[0][0] > until:
                break
            t, _seq, event = heapq.heappop(self._heap)
            self.now = t
            event()
        else:
            raise RuntimeError("event budget exhausted: runaway simulation")
        self.now = until

    # ------------------------------------------------------------ operations

    def revive(self, name: str, at: float) -> None:
        """Start the node (again) at ``at`` as a fresh process."""

        def go() -> None:
            node = self.nodes[name]
            if node.alive:
                return
            node.incarnation += 1
            node.timer_at = None
            node.exiting = False
            node.script_queue.clear()
            node.script_running = None
            rng = random.Random(f"{self.seed}-{name}-{node.incarnation}")
            spec = node.spec
            node.instance = CarpInstance(
                vhid=self.vhid,
                password=self.password if spec.password is None else spec.password,
                vip=self.vip,
                group=self.group,
                nomcast=False,
                params=spec.params(),
                mac=b"\x02\x00\x00\x00\x00" + bytes([len(self.nodes) & 0xFF]),
                random_bits=rng.getrandbits,
                health=spec.health(),
            )
            self._record(node, None, State.INIT, "process started")
            node.instance.start(self.now)
            self._pump(node)

        self.at(at, go)

    def kill(self, name: str, at: float) -> None:
        """SIGKILL: the node vanishes without a word."""

        def go() -> None:
            node = self.nodes[name]
            if node.instance is not None:
                self._record(node, node.instance.state, None, "killed")
                self._vanish(node)

        self.at(at, go)

    def shutdown(self, name: str, at: float) -> None:
        """Graceful exit (-z), as the daemon's exit path: the machine's last actions are
        carried out, the loop ends (no more frames, timers or signals), the scripts are
        drained with each end fed to the machine (the leave advert goes out after the
        downscript), then the process ends."""

        def go() -> None:
            node = self.nodes[name]
            if node.instance is not None and not node.exiting:
                node.instance.shutdown(self.now)
                self._pump(node)
                node.exiting = True
                self._exit_when_idle(node)

        self.at(at, go)

    def demote(self, name: str, at: float) -> None:
        """SIGUSR2."""
        self._call(name, at, lambda i: i.demote(self.now))

    def set_maintenance(self, name: str, on: bool, at: float) -> None:
        """Persistent maintenance on or off."""
        self._call(name, at, lambda i: i.set_maintenance(self.now, on))

    def set_link(self, name: str, up: bool, at: float) -> None:
        """Unplug or replug the node: no frames in or out while down."""

        def go() -> None:
            node = self.nodes[name]
            node.link_up = up
            if node.instance is not None and not node.exiting:
                node.instance.set_link(self.now, up)
                self._pump(node)

        self.at(at, go)

    def check(self, name: str, ok: bool, at: float, index: int = 0) -> None:
        """A run of the node's tracked check ``index`` ended at ``at`` (``ok``: exit status
        0). Results reach a running node only (its check runner dies with it, and stops at
        -z)."""

        def feed(instance: CarpInstance) -> None:
            node = self.nodes[name]
            node.check_results.append((self.now, index, ok))
            before = instance.machine.health
            instance.check_result(index, ok, self.now)
            if instance.machine.health is not before:
                node.health_changes.append((self.now, instance.machine.health))

        self._call(name, at, feed)

    def check_series(
        self, name: str, ok: Callable[[float], bool], start: float, end: float, every: float,
        index: int = 0,
    ) -> list[tuple[float, bool]]:
        """Runs of check ``index`` at ``start``, ``start + every``, ... up to ``end``, each
        ending ``ok(t)``; returns the (time, result) pairs scheduled."""
        series: list[tuple[float, bool]] = []
        k = 0
        while start + k * every <= end:
            t = start + k * every
            series.append((t, ok(t)))
            self.check(name, ok(t), t, index)
            k += 1
        return series

    def tracked_interface(self, name: str, iface: str, up: bool, at: float) -> None:
        """A tracked interface of the node gained (``up``) or lost its carrier."""

        def feed(instance: CarpInstance) -> None:
            node = self.nodes[name]
            before = instance.machine.health
            instance.tracked_interface(iface, up, self.now)
            if instance.machine.health is not before:
                node.health_changes.append((self.now, instance.machine.health))

        self._call(name, at, feed)

    def set_send_ok(self, name: str, ok: bool, at: float) -> None:
        """Make the node's sends fail (reported to its machine) or work again."""

        def go() -> None:
            self.nodes[name].send_ok = ok

        self.at(at, go)

    def partition(self, groups: Iterable[Iterable[str]], at: float) -> None:
        """Split the segment: frames only travel inside a group; unnamed nodes form their own."""
        groups_l = [list(g) for g in groups]

        def go() -> None:
            for node in self.nodes.values():
                node.segment = -1
            for i, g in enumerate(groups_l):
                for name in g:
                    self.nodes[name].segment = i
            for j, node in enumerate(n for n in self.nodes.values() if n.segment == -1):
                node.segment = len(groups_l) + j

        self.at(at, go)

    def heal(self, at: float) -> None:
        """Join every node back onto one segment."""

        def go() -> None:
            for node in self.nodes.values():
                node.segment = 0

        self.at(at, go)

    # ------------------------------------------------------------ queries

    def masters(self) -> list[str]:
        """Names of the nodes that are MASTER now."""
        return sorted(n.name for n in self.nodes.values() if n.state is State.MASTER)

    def states(self) -> dict[str, State | None]:
        """Every node's state now."""
        return {name: n.state for name, n in self.nodes.items()}

    def master_count_timeline(self) -> list[tuple[float, int]]:
        """(time, number of masters from then on), one entry per change."""
        masters: set[str] = set()
        out: list[tuple[float, int]] = [(0.0, 0)]
        for tr in self.transitions:
            if tr.new is State.MASTER:
                masters.add(tr.node)
            else:
                masters.discard(tr.node)
            if out[-1][0] == tr.time:
                out[-1] = (tr.time, len(masters))
            elif out[-1][1] != len(masters):
                out.append((tr.time, len(masters)))
        return out

    def time_with_masters(self, pred: Callable[[int], bool], start: float, end: float) -> float:
        """Total time within [start, end] during which ``pred(number of masters)`` holds."""
        timeline = self.master_count_timeline()
        total = 0.0
        for i, (t, count) in enumerate(timeline):
            t_next = timeline[i + 1][0] if i + 1 < len(timeline) else max(end, t)
            lo, hi = max(t, start), min(t_next, end)
            if hi > lo and pred(count):
                total += hi - lo
        return total

    def dual_master_time(self, start: float = 0.0, end: float | None = None) -> float:
        """How long two or more nodes were MASTER at once within [start, end]."""
        return self.time_with_masters(lambda c: c >= 2, start, self.now if end is None else end)

    def no_master_time(self, start: float = 0.0, end: float | None = None) -> float:
        """How long no node was MASTER within [start, end]."""
        return self.time_with_masters(lambda c: c == 0, start, self.now if end is None else end)

    def became_master(self, name: str, after: float = 0.0) -> list[float]:
        """Times at which ``name`` became MASTER, after ``after``."""
        return [
            tr.time for tr in self.transitions
            if tr.node == name and tr.new is State.MASTER and tr.time >= after
        ]

    def transitions_between(self, start: float, end: float) -> list[Transition]:
        """Every state change with ``start <= time <= end``."""
        return [tr for tr in self.transitions if start <= tr.time <= end]

    def vip_holds(self, name: str) -> list[tuple[float, float]]:
        """When ``name`` held the address: from the start of an upscript to the end of the
        next downscript (or until now).

        A killed process runs no downscript: its host keeps the address until a later
        incarnation's (start) downscript has run, as a real host would.
        """
        node = self.nodes[name]
        runs = list(node.script_runs)
        if node.script_running is not None:
            runs.append((node.script_running[0], float("inf"), node.script_running[1]))
        holds: list[tuple[float, float]] = []
        since: float | None = None
        for start, end, kind in runs:
            if kind == "up" and since is None:
                since = start
            elif kind == "down" and since is not None:
                holds.append((since, min(end, self.now)))
                since = None
        if since is not None:
            holds.append((since, self.now))
        return holds

    def vip_overlap_time(self, start: float = 0.0, end: float | None = None) -> float:
        """How long two or more nodes held the address at once within [start, end]."""
        end = self.now if end is None else end
        edges: list[tuple[float, int]] = []
        for name in self.nodes:
            for lo, hi in self.vip_holds(name):
                lo, hi = max(lo, start), min(hi, end)
                if hi > lo:
                    edges += [(lo, 1), (hi, -1)]
        total, holders, last = 0.0, 0, start
        for t, step in sorted(edges):  # at equal times a release sorts before a take
            if holders >= 2:
                total += t - last
            holders += step
            last = t
        return total

    # ------------------------------------------------------------ internals

    def _call(self, name: str, at: float, fn: Callable[[CarpInstance], None]) -> None:
        def go() -> None:
            node = self.nodes[name]
            if node.instance is not None and not node.exiting:  # no signals after the loop
                fn(node.instance)
                self._pump(node)

        self.at(at, go)

    def _record(self, node: SimNode, old: State | None, new: State | None, why: str) -> None:
        self.transitions.append(Transition(self.now, node.name, old, new, why))

    def _pump(self, node: SimNode) -> None:
        """Carry out what the instance produced as the daemon's shell does, until it is
        quiet, then re-arm its timer."""
        instance = node.instance
        if instance is None:
            return
        for _ in range(64):
            frames = instance.frames_to_send()
            events = instance.events()
            if not frames and not events:
                break
            for frame in frames:
                if frame.advert:
                    instance.advert_sent(self._transmit(node, frame.data))
                else:
                    node.arps.append(self.now)
            for event in events:
                if isinstance(event, RunScript):
                    node.scripts.append((self.now, event.kind))
                    node.script_queue.append(event.kind)
                    if node.script_running is None:
                        self._start_script(node)
                elif isinstance(event, StateChanged):
                    self._record(node, event.old, event.new, event.reason.value)
                elif isinstance(event, Dropped):
                    node.drops[event.reason] += 1
                else:
                    node.logs.append((self.now, event))
        else:
            raise RuntimeError(f"{node.name}: the instance does not settle")
        self._arm_timer(node)

    def _start_script(self, node: SimNode) -> None:
        """Start the next queued script; its end is reported to the machine."""
        kind = node.script_queue.popleft()
        started = self.now
        node.script_running = (started, kind)
        incarnation = node.incarnation

        def done() -> None:
            if node.instance is None or node.incarnation != incarnation:
                return
            node.script_running = None
            node.script_runs.append((started, self.now, kind))
            # As the daemon's runner: the next script starts before the machine hears of
            # this one's end, so that whatever that end asks for queues behind it.
            if node.script_queue:
                self._start_script(node)
            node.instance.script_finished(kind, node.spec.scripts_ok)
            self._pump(node)
            self._exit_when_idle(node)

        self.at(started + node.spec.script_time, done)

    def _exit_when_idle(self, node: SimNode) -> None:
        """End an exiting node's process once its scripts are drained."""
        if node.exiting and node.instance is not None and node.script_running is None:
            self._record(node, node.instance.state, None, "exited")
            self._vanish(node)

    def _vanish(self, node: SimNode) -> None:
        running = node.script_running
        if running is not None and running[1] == "up":
            # Its end is never reported, but the address may be up: count it as held.
            node.script_runs.append((running[0], self.now, "up"))
        node.instance = None
        node.exiting = False
        node.script_queue.clear()
        node.script_running = None

    def _arm_timer(self, node: SimNode) -> None:
        instance = node.instance
        if instance is None or node.exiting:
            return
        wake = instance.get_timer()
        if wake == node.timer_at:
            return
        node.timer_gen += 1
        node.timer_at = wake
        if wake is None:
            return
        gen, incarnation = node.timer_gen, node.incarnation

        def fire() -> None:
            if node.instance is None or node.incarnation != incarnation or node.timer_gen != gen:
                return
            if node.exiting:
                return
            node.timer_at = None
            node.instance.handle_timer(self.now)
            self._pump(node)

        self.at(max(wake, self.now), fire)

    def _transmit(self, node: SimNode, frame: bytes) -> bool:
        fields = parse_frame(frame)
        assert not isinstance(fields, Dropped)
        node.sent.append((self.now, SendAdvert(fields.advbase, fields.advskew, fields.counter)))
        if not node.send_ok or not node.link_up:
            return False
        self.frames_sent += 1
        for other in self.nodes.values():
            if other is node or other.segment != node.segment:
                continue
            copies = 1 + (self._rng.random() < self.link.duplicate)
            for _ in range(copies):
                if self._rng.random() < self.link.loss:
                    self.frames_lost += 1
                    continue
                delay = self._pair_delay[(node.name, other.name)]
                delay += self._rng.uniform(0, self.link.jitter)
                self.at(self.now + delay, self._deliverer(other, frame))
        return True

    def _deliverer(self, node: SimNode, frame: bytes) -> Event:
        def deliver() -> None:
            instance = node.instance
            if instance is None or not node.link_up or node.exiting:
                return  # an exiting daemon no longer reads its socket
            before = instance.counters.adverts_received
            instance.receive_frame(frame, self.now)
            if instance.counters.adverts_received != before:
                fields = parse_frame(frame)
                assert not isinstance(fields, Dropped)
                node.accepted.append(
                    (self.now, Advert(fields.src, fields.advbase, fields.advskew, fields.counter))
                )
            self._pump(node)

        return deliver
