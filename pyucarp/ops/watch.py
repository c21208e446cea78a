"""``pyucarp watch``: every CARP advertisement seen on a segment, one line each.

Captured with scapy (BPF filter: protocol 112 over IPv4 and IPv6, and ICMPv6 Neighbour
Advertisements); scapy is imported only when the command runs, never by the daemon. Each
line tells the time, the sender's IP and MAC address, the destination when it is not the
CARP group (a unicast peer), vhid, advbase/advskew (255/255 marked ``LEAVE``: a pyucarp
node handing over), the demote byte when it is not 0, the counter, the TTL (IPv4) or hop
limit (IPv6), whether the CARP checksum holds and, given the password (``-p`` or ``-o``)
and the virtual addresses (``-a``), whether the HMAC does.

The HMAC over IPv4 is ucarp's: HMAC-SHA1 keyed with the password over
``02 01 vhid VIP counter`` (8 bytes, as sent), the first IPv4 ``-a`` only. Over IPv6 it is
the BSDs' (docs/compat.md §10): ``02 01 vhid``, every IPv6 ``-a`` address once in
ascending byte order with link-local ones left out, then the counter; the form with the
link-local ones hashed (bytes 2-3 cleared) is accepted too, as pyucarp accepts it. Both
are computed here, not by the daemon's IPv6 codec: the watch is an independent check of
what pyucarp sends. scapy's own CARP helper leaves the counter out. The addresses are not
on the wire: without ``-a`` of the advert's family the verdict is ``HMAC ? (give -a)``.

Unsolicited Neighbour Advertisements for an IPv6 ``-a`` address (a new master announcing
its MAC) get a line of their own.

Exit status: 0 adverts seen and all good, 1 at least one failed a check (TTL or hop
limit, checksum, HMAC, malformed), 2 usage or capture error, 3 nothing seen.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, NoReturn, TextIO

from pyucarp.config.options import read_passfile
from pyucarp.config.settings import MAX_PASSWORD_BYTES
from pyucarp.core.codec import (
    CARP_AUTHLEN,
    CARP_HEADER_LEN,
    CARP_TTL,
    CARP_VERSION,
    ETH_HEADER_LEN,
    ETHERTYPE_IP,
    IP_HEADER_LEN,
    IPPROTO_CARP,
    carp_digest,
    carp_fields,
    internet_checksum,
    is_leave,
)
from pyucarp.errors import ConfigError

# Written here from RFC 8200/4861 and docs/compat.md §10, not taken from codec6.
ETHERTYPE_IPV6 = 0x86DD
IPV6_HEADER_LEN = 40
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136
HOP_LIMIT = 255
CARP_GROUP = IPv4Address("224.0.0.18")
CARP6_GROUP = IPv6Address("ff02::12")
ALL_NODES = IPv6Address("ff02::1")

BPF_FILTER = (f"ip proto {IPPROTO_CARP} or ip6 proto {IPPROTO_CARP}"
              f" or (icmp6 and ip6[{IPV6_HEADER_LEN}] == {ND_NEIGHBOR_ADVERT})")

# The IPv4 HMAC is the daemon's definition: the watch judges IPv4 adverts as pyucarp does.
carp_hmac = carp_digest

Addresses = IPv4Address | Sequence[IPv4Address | IPv6Address] | None


def _scope_embedded(packed: bytes) -> bool:
    """fe80::/10 and interface- or link-local multicast: the addresses a BSD kernel keeps
    an interface index in (bytes 2-3), which its HMAC leaves out or clears."""
    if packed[0] == 0xFE:
        return packed[1] & 0xC0 == 0x80
    return packed[0] == 0xFF and packed[1] & 0x0F in (1, 2)


def carp6_hmac(password: bytes, vhid: int, vips: Sequence[IPv6Address], counter: int,
               *, link_local: bool = False) -> bytes:
    """HMAC-SHA1 of an IPv6 advert: ``02 01 vhid``, the distinct addresses in ascending
    byte order (never all-zero or all-ones), the counter (8 bytes, big-endian).

    Link-local addresses are left out (what pyucarp and OpenBSD send), or with
    ``link_local`` hashed with bytes 2-3 cleared and sorted in (FreeBSD's form).
    """
    hashed: set[bytes] = set()
    for address in vips:
        packed = address.packed
        if _scope_embedded(packed):
            if not link_local:
                continue
            packed = packed[:2] + bytes(2) + packed[4:]
        hashed.add(packed)
    hashed -= {bytes(16), b"\xff" * 16}
    message = bytes([2, 1, vhid & 0xFF]) + b"".join(sorted(hashed)) + counter.to_bytes(8, "big")
    return hmac.new(password, message, hashlib.sha1).digest()


def _hmac6_ok(password: bytes, vhid: int, vips: Sequence[IPv6Address], counter: int,
              digest: bytes) -> bool:
    """Either form matches (they differ only when a virtual address is link-local)."""
    if hmac.compare_digest(carp6_hmac(password, vhid, vips, counter), digest):
        return True
    return (any(_scope_embedded(a.packed) for a in vips)
            and hmac.compare_digest(carp6_hmac(password, vhid, vips, counter, link_local=True),
                                    digest))


def _split(addresses: Addresses) -> tuple[IPv4Address | None, tuple[IPv6Address, ...]]:
    """The IPv4 address the IPv4 HMAC covers (the first given, as the daemon hashes its
    first ``-a``) and every IPv6 address given."""
    if addresses is None:
        return None, ()
    if isinstance(addresses, IPv4Address):
        return addresses, ()
    v4 = [a for a in addresses if isinstance(a, IPv4Address)]
    return (v4[0] if v4 else None), tuple(a for a in addresses if isinstance(a, IPv6Address))


@dataclass(frozen=True)
class AdvertView:
    """What one captured protocol-112 packet says, checks included."""

    time: float  # wall clock
    src_mac: str
    src: str
    dst: str
    ttl: int  # the hop limit over IPv6
    ip_checksum_ok: bool  # IPv6 has no header checksum: always True there
    carp: bool  # False: too short or not a CARP advert (VRRP also uses protocol 112)
    version: int = 0
    type: int = 0
    vhid: int = 0
    advskew: int = 0
    advbase: int = 0
    authlen: int = 0
    demote: int = 0  # ucarp's pad byte (the BSDs' demotion counter)
    counter: int = 0
    digest: bytes = b""
    checksum_ok: bool = False
    hmac_ok: bool | None = None  # None: not checked (no password or no VIP)
    family: int = 4

    @property
    def leave(self) -> bool:
        """advbase 255 / advskew 255: the sender is leaving (pyucarp's graceful hand-off)."""
        return is_leave(self.advbase, self.advskew)

    @property
    def unicast(self) -> bool:
        """Sent to an address other than the family's CARP group (a ``--peer``)."""
        return self.dst != str(CARP6_GROUP if self.family == 6 else CARP_GROUP)

    @property
    def bad(self) -> bool:
        """Whether a pyucarp receiver would refuse it (or it is not CARP at all)."""
        return (not self.carp or self.ttl != CARP_TTL or not self.checksum_ok
                or not self.ip_checksum_ok or self.hmac_ok is False)


@dataclass(frozen=True)
class NeighbourView:
    """An unsolicited Neighbour Advertisement (ICMPv6 type 136) for a watched address."""

    time: float
    src_mac: str
    src: str
    dst: str
    hop_limit: int
    target: str
    router: bool
    override: bool
    lladdr: str | None  # the target link-layer address option, if any
    checksum_ok: bool

    @property
    def bad(self) -> bool:
        """Whether a neighbour would drop it (RFC 4861 §7.1.2: hop limit, checksum)."""
        return self.hop_limit != HOP_LIMIT or not self.checksum_ok


def _outer_ip(pkt: Any) -> Any:
    """The first IPv4 or IPv6 layer of a scapy packet (past VLAN tags), or None."""
    from scapy.layers.inet import IP  # type: ignore[import-untyped,unused-ignore]
    from scapy.layers.inet6 import IPv6  # type: ignore[import-untyped,unused-ignore]

    for layer in pkt.iterpayloads():
        if isinstance(layer, (IP, IPv6)):
            return layer
    return None


def dissect(frame: bytes, t: float, password: bytes | None = None,
            vip: Addresses = None) -> AdvertView | NeighbourView | None:
    """Dissect one Ethernet frame with scapy: an advert of either family, a Neighbour
    Advertisement for one of the IPv6 addresses of ``vip``, or None for anything else.

    ``vip``: one IPv4 address, or a list of the virtual addresses of either family.
    """
    from scapy.layers.inet6 import IPv6  # type: ignore[import-untyped,unused-ignore]
    from scapy.layers.l2 import Ether  # type: ignore[import-untyped,unused-ignore]

    pkt = Ether(frame)
    ip = _outer_ip(pkt)
    if ip is None:
        return None
    v4, v6 = _split(vip)
    src_mac = str(pkt[Ether].src)
    if isinstance(ip, IPv6):
        return _dissect6(ip, t, src_mac, password, v6)
    if ip.proto != IPPROTO_CARP:
        return None
    header = bytes(ip)[: ip.ihl * 4]
    payload = bytes(ip.payload)[: max(0, ip.len - ip.ihl * 4)] if ip.len else bytes(ip.payload)
    common = AdvertView(
        time=t,
        src_mac=src_mac,
        src=str(ip.src),
        dst=str(ip.dst),
        ttl=int(ip.ttl),
        ip_checksum_ok=internet_checksum(header) == 0,
        carp=False,
    )
    view = _carp(common, payload)
    if view.carp and password is not None and v4 is not None:
        expected = carp_hmac(password, view.vhid, v4, view.counter)
        view = replace(view, hmac_ok=hmac.compare_digest(view.digest, expected))
    return view


def _carp(common: AdvertView, payload: bytes) -> AdvertView:
    """The CARP fields of ``payload`` (their checksum alone: the IP header's is shown
    apart), or ``common`` as it is when they are no CARP advert."""
    if len(payload) < CARP_HEADER_LEN:
        return common
    view = replace(common, carp=True, **carp_fields(payload))
    if view.version != CARP_VERSION or view.authlen != CARP_AUTHLEN:
        return common
    return view


def _dissect6(ip: Any, t: float, src_mac: str, password: bytes | None,
              vips: Sequence[IPv6Address]) -> AdvertView | NeighbourView | None:
    """An IPv6 packet: a CARP advert, or a Neighbour Advertisement for one of ``vips``."""
    raw = bytes(ip)
    # The payload length bounds the payload (bytes past it are link padding).
    payload = raw[IPV6_HEADER_LEN:IPV6_HEADER_LEN + int(ip.plen)]
    if ip.nh == IPPROTO_ICMPV6:
        return _neighbour(ip, raw, payload, t, src_mac, vips)
    if ip.nh != IPPROTO_CARP:
        return None
    common = AdvertView(time=t, src_mac=src_mac, src=str(ip.src), dst=str(ip.dst),
                        ttl=int(ip.hlim), ip_checksum_ok=True, carp=False, family=6)
    view = _carp(common, payload)
    if view.carp and password is not None and vips:
        ok = _hmac6_ok(password, view.vhid, vips, view.counter, view.digest)
        view = replace(view, hmac_ok=ok)
    return view


def _neighbour(ip: Any, raw: bytes, icmp: bytes, t: float, src_mac: str,
               vips: Sequence[IPv6Address]) -> NeighbourView | None:
    """An unsolicited Neighbour Advertisement whose target is one of ``vips``, or None."""
    # type, code, checksum, flags (R S O), 3 reserved bytes, target (RFC 4861 §4.4)
    if len(icmp) < 24 or icmp[0] != ND_NEIGHBOR_ADVERT:
        return None
    flags = icmp[4]
    target = IPv6Address(icmp[8:24])
    if flags & 0x40 or target not in vips:  # solicited: an answer, not an announcement
        return None
    lladdr = None
    at = 24
    while at + 2 <= len(icmp) and icmp[at + 1]:  # options: type, length in 8-byte units
        end = at + icmp[at + 1] * 8
        if icmp[at] == 2 and end <= len(icmp) and end - at >= 8:  # target link-layer address
            lladdr = ":".join(f"{b:02x}" for b in icmp[at + 2:at + 8])
        at = end
    pseudo = raw[8:40] + struct.pack("!I3xB", len(icmp), IPPROTO_ICMPV6)
    return NeighbourView(
        time=t, src_mac=src_mac, src=str(ip.src), dst=str(ip.dst), hop_limit=int(ip.hlim),
        target=str(target), router=bool(flags & 0x80), override=bool(flags & 0x20),
        lladdr=lladdr, checksum_ok=internet_checksum(pseudo + icmp) == 0,
    )


def _stamp(t: float) -> str:
    micros = int(t % 1 * 1e6)
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{micros:06d}"


def format_view(view: AdvertView | NeighbourView, password_given: bool) -> str:
    """One output line for a captured packet."""
    if isinstance(view, NeighbourView):
        return format_neighbour(view)
    head = f"{_stamp(view.time)} {view.src:<15} {view.src_mac}"
    if view.unicast:
        head += f" to {view.dst}"
    hops = f"{'hlim' if view.family == 6 else 'ttl'} {view.ttl}"
    if not view.carp:
        return f"{head} not a CARP advertisement (VRRP?) {hops}"
    parts = [
        head,
        f"vhid {view.vhid:<3}",
        f"advbase/skew {view.advbase}/{view.advskew}" + (" LEAVE" if view.leave else ""),
    ]
    if view.demote:
        parts.append(f"demote {view.demote}")
    parts += [
        f"counter {view.counter:016x}",
        hops + ("" if view.ttl == CARP_TTL else " BAD"),
        "cksum ok" if view.checksum_ok else "cksum BAD",
    ]
    if not view.ip_checksum_ok:
        parts.append("IP cksum BAD")
    if view.version != 2 or view.type != 1:
        parts.append(f"version {view.version} type {view.type}")
    if password_given:
        if view.hmac_ok is None:
            parts.append("HMAC ? (give -a)")
        elif view.hmac_ok:
            parts.append("HMAC ok")
        else:
            parts.append("HMAC BAD (wrong password or VIP?)")
    return " ".join(parts)


def format_neighbour(view: NeighbourView) -> str:
    """One output line for an unsolicited Neighbour Advertisement."""
    head = f"{_stamp(view.time)} {view.src:<15} {view.src_mac}"
    if view.dst != str(ALL_NODES):
        head += f" to {view.dst}"
    flags = [name for name, on in (("override", view.override), ("router", view.router)) if on]
    return " ".join([
        head,
        f"NA {view.target} is-at {view.lladdr or '(none)'}",
        *flags,
        f"hlim {view.hop_limit}" + ("" if view.hop_limit == HOP_LIMIT else " BAD"),
        "cksum ok" if view.checksum_ok else "cksum BAD",
    ])


class Watcher:
    """Turns captured frames into printed lines and keeps the tally for the exit status."""

    def __init__(self, out: TextIO, password: bytes | None, vip: Addresses,
                 vhid: int | None) -> None:
        self.out = out
        self.password = password
        self.vip = vip
        self.vhid = vhid
        self.seen = 0  # advertisements shown
        self.bad = 0
        self.neighbours = 0  # Neighbour Advertisements shown
        self.neighbours_bad = 0

    def wanted(self, frame: bytes) -> bool:
        """The vhid filter, applied before dissecting (Neighbour Advertisements carry no
        vhid: they pass, and are kept when their target is watched)."""
        if self.vhid is None:
            return True
        if len(frame) < ETH_HEADER_LEN + 1:
            return False
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype == ETHERTYPE_IPV6:
            if len(frame) < ETH_HEADER_LEN + IPV6_HEADER_LEN:
                return False
            if frame[ETH_HEADER_LEN + 6] == IPPROTO_ICMPV6:
                return True
            at = ETH_HEADER_LEN + IPV6_HEADER_LEN + 1  # CARP byte 1 = vhid
        else:
            at = ETH_HEADER_LEN + (frame[14] & 0x0F) * 4 + 1  # IHL words
        return len(frame) > at and frame[at] == self.vhid

    def handle(self, frame: bytes, t: float) -> None:
        """Dissect, print one line, count."""
        view = dissect(frame, t, self.password, self.vip)
        if view is None:
            return
        if isinstance(view, NeighbourView):
            self.neighbours += 1
            self.neighbours_bad += view.bad
        else:
            self.seen += 1
            self.bad += view.bad
        self.out.write(format_view(view, self.password is not None) + "\n")
        self.out.flush()

    def summary(self) -> str:
        """The last line, on stderr."""
        text = f"{self.seen} advertisement(s), {self.bad} bad"
        if self.neighbours:
            text += (f", {self.neighbours} neighbour advertisement(s),"
                     f" {self.neighbours_bad} bad")
        return text

    def exit_status(self) -> int:
        """0 all good, 1 something bad was seen, 3 no advertisement was seen."""
        if self.seen == 0:
            return 3
        return 1 if self.bad or self.neighbours_bad else 0


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (exit status 2, as argparse's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _address(text: str) -> IPv4Address | IPv6Address:
    """An ``-a`` argument: an IPv4 or IPv6 address, without a scope (as the daemon's)."""
    try:
        address = ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text}") from None
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        raise argparse.ArgumentTypeError(f"give {text} without a scope (%...)")
    return address


def watch_main(argv: list[str]) -> int:
    """``pyucarp watch -i IFACE [-p PASS | -o FILE] [-a VIP]... [-v VHID] [--count N]
    [--timeout S]``."""
    parser = _Parser(
        prog="pyucarp watch",
        description="Show every CARP advertisement (IPv4 and IPv6) seen on an interface, "
        "one line each.",
        epilog="Exit status: 0 adverts seen and all good, 1 one failed a check "
        "(TTL or hop limit, checksum, HMAC), 2 usage or capture error, 3 nothing seen.",
    )
    parser.add_argument("-i", "--interface", required=True, help="interface to listen on")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("-p", "--pass", dest="password", help="password: check each HMAC")
    secret.add_argument("-o", "--passfile", help="read the password from the file's first line")
    parser.add_argument("-a", "--addr", action="append", type=_address, default=[],
                        metavar="VIP",
                        help="a virtual address the HMAC covers, repeatable: IPv4 adverts "
                        "are checked with the first IPv4 one, IPv6 adverts with every "
                        "IPv6 one (whose Neighbour Advertisements are shown too)")
    parser.add_argument("-v", "--vhid", type=int, help="show this vhid only")
    parser.add_argument("--count", type=int, help="stop after N advertisements")
    parser.add_argument("--timeout", type=float, help="stop after S seconds")
    args = parser.parse_args(argv)
    password: bytes | None = None
    if args.password is not None:
        password = args.password.encode()
    elif args.passfile is not None:
        try:
            password = read_passfile(args.passfile)  # as the daemon reads -o
        except ConfigError as exc:
            parser.error(str(exc))
    if password is not None and len(password) > MAX_PASSWORD_BYTES:
        # ucarp refuses such a password, so no cluster can use it.
        parser.error(f"password longer than {MAX_PASSWORD_BYTES} bytes")
    if args.vhid is not None and not 1 <= args.vhid <= 255:
        parser.error("vhid must be between 1 and 255")
    if args.count is not None and args.count <= 0:
        parser.error("--count must be positive")
    if args.timeout is not None and not args.timeout > 0:
        parser.error("--timeout must be positive")
    watcher = Watcher(sys.stdout, password, list(args.addr), args.vhid)
    try:
        capture(args.interface, watcher, count=args.count, timeout=args.timeout)
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError, ValueError) as exc:  # no such interface, no permission
        print(f"pyucarp watch: {args.interface}: {exc}", file=sys.stderr)
        return 2
    print(watcher.summary(), file=sys.stderr)
    return watcher.exit_status()


def capture(iface: str, watcher: Watcher, *, count: int | None, timeout: float | None,
            started: Callable[[], None] | None = None) -> None:
    """Sniff ``iface`` with scapy until ``count`` adverts or ``timeout`` seconds."""
    # Loading the Ethernet layer registers it for the capture socket's link type:
    # without it scapy warns "Unable to guess type" and hands over raw payloads.
    import scapy.layers.inet  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    import scapy.layers.inet6  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    import scapy.layers.l2  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    from scapy.config import conf  # type: ignore[import-untyped,unused-ignore]
    from scapy.error import Scapy_Exception  # type: ignore[import-untyped,unused-ignore]
    from scapy.sendrecv import sniff  # type: ignore[import-untyped,unused-ignore]

    conf.verb = 0

    def on_start() -> None:
        # Tells a waiting caller (or a test) that the capture socket is open.
        print(f"watching {iface} for CARP advertisements", file=sys.stderr, flush=True)
        if started is not None:
            started()

    def on_packet(pkt: Any) -> None:
        watcher.handle(bytes(pkt), float(pkt.time))

    def keep(pkt: Any) -> bool:
        return watcher.wanted(bytes(pkt))

    def enough(pkt: Any) -> bool:
        # --count counts advertisements, not the Neighbour Advertisements shown beside.
        return count is not None and watcher.seen >= count

    kwargs: dict[str, Any] = dict(
        iface=iface, prn=on_packet, lfilter=keep, store=False, stop_filter=enough,
        timeout=timeout, started_callback=on_start,
    )
    try:
        sniff(filter=BPF_FILTER, **kwargs)
    except Scapy_Exception as exc:
        if "filter" not in str(exc).lower():
            raise RuntimeError(str(exc)) from None
        # No way to compile BPF here (no tcpdump/libpcap): filter in Python instead.
        print(f"pyucarp watch: BPF filter unavailable ({exc}); filtering in Python",
              file=sys.stderr)
        kwargs["lfilter"] = lambda pkt: _is_carp(bytes(pkt)) and keep(pkt)
        sniff(**kwargs)


def _is_carp(frame: bytes) -> bool:
    """What :data:`BPF_FILTER` lets through: protocol 112 over IPv4 or IPv6 (no extension
    header), or an ICMPv6 Neighbour Advertisement."""
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ETHERTYPE_IP and len(frame) >= ETH_HEADER_LEN + IP_HEADER_LEN:
        return frame[ETH_HEADER_LEN + 9] == IPPROTO_CARP  # IPv4 header byte 9
    if ethertype == ETHERTYPE_IPV6 and len(frame) > ETH_HEADER_LEN + IPV6_HEADER_LEN:
        next_header = frame[ETH_HEADER_LEN + 6]
        return next_header == IPPROTO_CARP or (
            next_header == IPPROTO_ICMPV6
            and frame[ETH_HEADER_LEN + IPV6_HEADER_LEN] == ND_NEIGHBOR_ADVERT)
    return False
