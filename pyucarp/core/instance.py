"""One CARP virtual host, end to end and without I/O: frames and ``now`` in, frames and
events out.

The pipeline every received frame takes is decode (:class:`~pyucarp.core.codec.AdvertCodec`:
ucarp's checks and the HMAC) -> replay guard (:class:`~pyucarp.core.replay.ReplayGuard`) ->
state machine (:class:`~pyucarp.core.machine.CarpMachine`); the machine's actions come back
out as finished Ethernet frames (adverts, gratuitous ARPs) and as events for the shell
(scripts to run, state changes, log lines, dropped frames). The daemon, the simulated LAN
of the tests and the benchmark all drive this one class.

The shell's side of the contract, after any input:

1. take :meth:`CarpInstance.frames_to_send` and transmit them in order, reporting each
   advert's outcome with :meth:`CarpInstance.advert_sent`;
2. take :meth:`CarpInstance.events` and carry them out (a :class:`RunScript` with no
   script configured is reported back at once with :meth:`CarpInstance.script_finished`);
3. repeat while either produced anything, then sleep until :meth:`CarpInstance.get_timer`
   and call :meth:`CarpInstance.handle_timer`.

Randomness (the advert counter, the IP id) comes from an injected ``random_bits(n)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from pyucarp.core.codec import (
    Advert,
    AdvertCodec,
    Dropped,
    DropReason,
    gratuitous_arp,
)
from pyucarp.core.codec6 import Advert6, AdvertCodec6, neighbour_advertisement
from pyucarp.core.health import HealthJudge
from pyucarp.core.machine import (
    Action,
    CarpMachine,
    Log,
    Params,
    RunScript,
    SendAdvert,
    SendGratuitousArp,
    State,
    StateChanged,
)
from pyucarp.core.replay import ReplayGuard
from pyucarp.records import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from typing import Literal

__all__ = ["CarpInstance", "Counters", "Event", "Frame"]


class Frame(NamedTuple):
    """One frame to transmit; ``advert`` frames have their outcome reported back.

    ``peer`` None: ``data`` is a whole Ethernet frame, sent as it is. Otherwise ``data`` is
    the advert's IP packet (IPv4 or IPv6, the peer's family) for that unicast peer, which
    the kernel routes (its MAC is the neighbour table's business); of an advert's packets,
    the first carries ``advert``.
    """

    data: bytes
    advert: bool
    peer: IPv4Address | IPv6Address | None = None


Event = RunScript | StateChanged | Log | Dropped
"""What the shell carries out besides transmitting: scripts, state news, log lines, drops."""


class Counters:
    """What an instance counts, for SIGUSR1, the state file and metrics."""

    __slots__ = ("adverts_received", "adverts_sent", "send_errors", "dropped")

    def __init__(self) -> None:
        self.adverts_received = 0
        self.adverts_sent = 0
        self.send_errors = 0
        self.dropped: Counter[str] = Counter()  # by DropReason name, lower case


class CarpInstance:
    """One virtual host: codec, replay guard and state machine behind one interface."""

    def __init__(
        self,
        *,
        vhid: int,
        password: bytes,
        vip: IPv4Address | IPv6Address,
        group: IPv4Address | IPv6Address,
        nomcast: bool,
        params: Params,
        mac: bytes,
        random_bits: Callable[[int], int],
        health: HealthJudge | None = None,
        extra_vips: tuple[IPv4Address | IPv6Address, ...] = (),
        peers: tuple[IPv4Address | IPv6Address, ...] = (),
        source_mac: bytes | None = None,
    ) -> None:
        """``health``: the judge of the tracked checks and interfaces, when there are any
        (``params.tracked`` must then be true: health starts unknown); ``peers``: unicast
        adverts to each of them instead of the group, of the instance's family."""
        self.vip = vip
        # Every address of the virtual host: the first is the one in the HMAC (ucarp's);
        # the others move with it and are announced with it.
        self.vips = (vip, *extra_vips)
        self.peers = peers
        self._real_mac = source_mac is not None
        self.health = health
        self.mac = mac  # the interface's own MAC: gratuitous ARPs carry it
        self._random_bits = random_bits
        self.codec: AdvertCodec | AdvertCodec6
        if isinstance(vip, IPv6Address):
            assert isinstance(params.srcip, IPv6Address), "one family per instance"
            v6 = tuple(v for v in self.vips if isinstance(v, IPv6Address))
            peers6 = tuple(p for p in peers if isinstance(p, IPv6Address))
            assert len(peers6) == len(peers), "one family per instance"
            self.codec = AdvertCodec6(
                vhid=vhid, password=password, vips=v6, srcip=params.srcip,
                # The BSDs' source over IPv6: 00:00:5e:00:01:<vhid> (VRRP's range).
                eth_src=b"\x00\x00\x5e\x00\x01" + bytes([vhid]) if source_mac is None
                else source_mac, peers=peers6,
            )
        else:
            assert isinstance(params.srcip, IPv4Address) and isinstance(group, IPv4Address)
            peers4 = tuple(p for p in peers if isinstance(p, IPv4Address))
            assert len(peers4) == len(peers), "one family per instance"
            self.codec = AdvertCodec(
                vhid=vhid, password=password, vip=vip, srcip=params.srcip, group=group,
                nomcast=nomcast, peers=peers4, source_mac=source_mac,
            )
        self.machine = CarpMachine(params, random64=lambda: random_bits(64))
        self.replay = ReplayGuard()
        self.counters = Counters()
        self._frames: list[Frame] = []
        self._events: list[Event] = []

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> State:
        """The machine's state."""
        return self.machine.state

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (monotonic seconds), or None."""
        return self.machine.next_wakeup()

    def frames_to_send(self) -> list[Frame]:
        """The frames produced since the last call, in the order they must leave."""
        frames, self._frames = self._frames, []
        return frames

    def events(self) -> list[Event]:
        """The events produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ inputs

    def start(self, now: float, *, link_up: bool = True) -> None:
        """INIT -> BACKUP; ``link_up`` False starts silent until carrier comes."""
        if not link_up:
            self.machine.link_up = False
        self._apply(self.machine.start(now))

    def receive_frame(self, frame: bytes, now: float) -> None:
        """A frame from the wire: judged, checked for replay, then fed to the machine."""
        result = self.codec.decode(frame)
        if isinstance(result, Dropped):
            self._dropped(result)
            return
        if isinstance(result, Advert6):  # the machine takes one shape for both families
            result = Advert(result.src, result.advbase, result.advskew, result.counter)
        if self.replay.seen(result.src, result.counter):
            self._dropped(
                Dropped(
                    DropReason.REPLAY,
                    f"Replayed advertisement from [{result.src}] ignored"
                    f" (counter {result.counter:016x} seen before)",
                )
            )
            return
        self.counters.adverts_received += 1
        self._apply(self.machine.advert_received(now, result))

    def receive_advert(self, advert: Advert, now: float) -> None:
        """An advert already authenticated elsewhere (no replay check): for simulations."""
        self.counters.adverts_received += 1
        self._apply(self.machine.advert_received(now, advert))

    def handle_timer(self, now: float) -> None:
        """Fire whatever is due at ``now``."""
        self._apply(self.machine.handle_timer(now))

    def advert_sent(self, ok: bool) -> None:
        """The outcome of transmitting one advert frame."""
        if ok:
            self.counters.adverts_sent += 1
        else:
            self.counters.send_errors += 1
        self._apply(self.machine.advert_sent(ok))

    def script_finished(self, kind: Literal["up", "down"], ok: bool) -> None:
        """A script ended, or there was none to run."""
        self._apply(self.machine.script_finished(kind, ok))

    def set_link(self, now: float, up: bool) -> None:
        """Carrier lost or back."""
        self._apply(self.machine.set_link(now, up))

    def check_result(self, index: int, ok: bool, now: float) -> None:
        """One run of tracked check ``index`` ended; the machine hears of verdict changes."""
        if self.health is not None:
            self._judge(self.health.check_result(index, ok), now)

    def tracked_interface(self, name: str, up: bool, now: float) -> None:
        """A tracked interface gained or lost carrier (or vanished: ``up`` False)."""
        if self.health is not None:
            self._judge(self.health.interface(name, up), now)

    def _judge(self, verdict: bool | None, now: float) -> None:
        if verdict is not None:
            self._apply(self.machine.set_health(now, verdict))

    def set_mac(self, mac: bytes) -> None:
        """The interface was re-created with another MAC."""
        self.mac = mac
        if self._real_mac:
            self.codec.set_source_mac(mac)

    def demote(self, now: float) -> None:
        """SIGUSR2: hand over and stay quiet for a while."""
        self._apply(self.machine.demote(now))

    def set_maintenance(self, now: float, on: bool) -> None:
        """Persistent demotion on or off."""
        self._apply(self.machine.set_maintenance(now, on))

    def shutdown(self, now: float) -> None:
        """Graceful exit: downscript, then the leave advert once it has run."""
        self._apply(self.machine.shutdown(now))

    # ------------------------------------------------------------------ internals

    def _advert_frames(self, action: SendAdvert) -> None:
        codec = self.codec
        if isinstance(codec, AdvertCodec6):
            values6 = {"advbase": action.advbase, "advskew": action.advskew,
                       "counter": action.counter}
            if not self.peers:
                self._frames.append(Frame(codec.encode(**values6), True))
            for i, peer in enumerate(codec.peers):
                self._frames.append(Frame(codec.encode_ip(dst=peer, **values6), i == 0, peer))
            return
        values = {"advbase": action.advbase, "advskew": action.advskew,
                  "counter": action.counter, "ip_id": self._random_bits(16)}
        if not self.peers:
            self._frames.append(Frame(codec.encode(**values), True))
        for i, peer4 in enumerate(codec.peers):
            self._frames.append(Frame(codec.encode_ip(dst=peer4, **values), i == 0, peer4))

    def _announcement(self, vip: IPv4Address | IPv6Address) -> bytes:
        """Gratuitous ARP (IPv4, ucarp's) or unsolicited neighbour advertisement (IPv6)."""
        if isinstance(vip, IPv4Address):
            return gratuitous_arp(self.mac, vip)
        src = self.machine.params.srcip
        assert isinstance(src, IPv6Address)
        return neighbour_advertisement(self.mac, vip, src)

    def _dropped(self, dropped: Dropped) -> None:
        if dropped.reason is DropReason.OWN:
            return  # our own adverts, looped back by some drivers: not news
        self.counters.dropped[dropped.reason.name.lower()] += 1
        self._events.append(dropped)

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendAdvert):
                self._advert_frames(action)
            elif isinstance(action, SendGratuitousArp):
                self._frames.extend(Frame(self._announcement(vip), False) for vip in self.vips)
            else:
                self._events.append(action)
