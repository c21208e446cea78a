"""``pyucarp watch``: every CARP advertisement seen on a segment, one line each.

Captured with scapy (BPF filter ``ip proto 112``); scapy is imported only when the
command runs, never by the daemon. Each line tells the time, the sender's IP and MAC
address, vhid, advbase/advskew (255/255 marked ``LEAVE``: a pyucarp node handing over),
the counter, the TTL, whether the CARP checksum holds and, given the password (``-p`` or
``-o``) and the virtual address (``-a``), whether the HMAC does.

The HMAC is ucarp's: HMAC-SHA1 keyed with the password over ``02 01 vhid VIP counter``
(8 bytes, as sent). scapy's own CARP helper leaves the counter out, so it is computed
here. Only one VIP is covered and it is not on the wire: without ``-a`` the verdict is
``HMAC ? (give -a)``.

Exit status: 0 adverts seen and all good, 1 at least one failed a check (TTL, checksum,
HMAC, malformed), 2 usage or capture error, 3 nothing seen.
"""

from __future__ import annotations

import argparse
import hmac
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Any, TextIO

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

BPF_FILTER = f"ip proto {IPPROTO_CARP}"


# The daemon's own definitions: the watch judges adverts exactly as pyucarp does.
carp_hmac = carp_digest


@dataclass(frozen=True)
class AdvertView:
    """What one captured protocol-112 packet says, checks included."""

    time: float  # wall clock
    src_mac: str
    src: str
    dst: str
    ttl: int
    ip_checksum_ok: bool
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

    @property
    def leave(self) -> bool:
        """advbase 255 / advskew 255: the sender is leaving (pyucarp's graceful hand-off)."""
        return is_leave(self.advbase, self.advskew)

    @property
    def bad(self) -> bool:
        """Whether a ucarp receiver would refuse it (or it is not CARP at all)."""
        return (not self.carp or self.ttl != CARP_TTL or not self.checksum_ok
                or not self.ip_checksum_ok or self.hmac_ok is False)


def dissect(frame: bytes, t: float, password: bytes | None = None,
            vip: IPv4Address | None = None) -> AdvertView | None:
    """Dissect one Ethernet frame with scapy; None when it is not IPv4 protocol 112."""
    from scapy.layers.inet import IP  # type: ignore[import-untyped,unused-ignore]
    from scapy.layers.l2 import Ether  # type: ignore[import-untyped,unused-ignore]

    pkt = Ether(frame)
    if IP not in pkt or pkt[IP].proto != IPPROTO_CARP:
        return None
    ip = pkt[IP]
    header = bytes(ip)[: ip.ihl * 4]
    payload = bytes(ip.payload)[: max(0, ip.len - ip.ihl * 4)] if ip.len else bytes(ip.payload)
    common = AdvertView(
        time=t,
        src_mac=str(pkt[Ether].src),
        src=str(ip.src),
        dst=str(ip.dst),
        ttl=int(ip.ttl),
        ip_checksum_ok=internet_checksum(header) == 0,
        carp=False,
    )
    if len(payload) < CARP_HEADER_LEN:
        return common
    # The daemon's reading of the 36 bytes, their checksum alone (the IP header's is
    # shown apart).
    view = replace(common, carp=True, **carp_fields(payload))
    if view.version != CARP_VERSION or view.authlen != CARP_AUTHLEN:
        return common
    if password is not None and vip is not None:
        expected = carp_hmac(password, view.vhid, vip, view.counter)
        view = replace(view, hmac_ok=hmac.compare_digest(view.digest, expected))
    return view


def format_view(view: AdvertView, password_given: bool) -> str:
    """One output line for a captured packet."""
    micros = int(view.time % 1 * 1e6)
    stamp = time.strftime("%H:%M:%S", time.localtime(view.time)) + f".{micros:06d}"
    head = f"{stamp} {view.src:<15} {view.src_mac}"
    if not view.carp:
        return f"{head} not a CARP advertisement (VRRP?) ttl {view.ttl}"
    parts = [
        head,
        f"vhid {view.vhid:<3}",
        f"advbase/skew {view.advbase}/{view.advskew}" + (" LEAVE" if view.leave else ""),
        f"counter {view.counter:016x}",
        f"ttl {view.ttl}" + ("" if view.ttl == CARP_TTL else " BAD"),
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


class Watcher:
    """Turns captured frames into printed lines and keeps the tally for the exit status."""

    def __init__(self, out: TextIO, password: bytes | None, vip: IPv4Address | None,
                 vhid: int | None) -> None:
        self.out = out
        self.password = password
        self.vip = vip
        self.vhid = vhid
        self.seen = 0
        self.bad = 0

    def wanted(self, frame: bytes) -> bool:
        """The vhid filter, applied before counting (``--count`` counts shown lines)."""
        if self.vhid is None:
            return True
        # Ethernet 14 + IP header (IHL words) + CARP byte 1 = vhid
        if len(frame) < 15:
            return False
        ihl = (frame[14] & 0x0F) * 4
        return len(frame) > 14 + ihl + 1 and frame[14 + ihl + 1] == self.vhid

    def handle(self, frame: bytes, t: float) -> None:
        """Dissect, print one line, count."""
        view = dissect(frame, t, self.password, self.vip)
        if view is None:
            return
        self.seen += 1
        if view.bad:
            self.bad += 1
        self.out.write(format_view(view, self.password is not None) + "\n")
        self.out.flush()

    def exit_status(self) -> int:
        """0 all good, 1 something bad was seen, 3 nothing was seen."""
        if self.seen == 0:
            return 3
        return 1 if self.bad else 0


def watch_main(argv: list[str]) -> int:
    """``pyucarp watch -i IFACE [-p PASS | -o FILE] [-a VIP] [-v VHID] [--count N]
    [--timeout S]``."""
    parser = argparse.ArgumentParser(
        prog="pyucarp watch",
        description="Show every CARP advertisement seen on an interface, one line each.",
        epilog="Exit status: 0 adverts seen and all good, 1 one failed a check "
        "(TTL, checksum, HMAC), 2 usage or capture error, 3 nothing seen.",
    )
    parser.add_argument("-i", "--interface", required=True, help="interface to listen on")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("-p", "--pass", dest="password", help="password: check each HMAC")
    secret.add_argument("-o", "--passfile", help="read the password from the file's first line")
    parser.add_argument("-a", "--addr", help="the virtual address the HMAC covers")
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
    vip = None
    if args.addr is not None:
        try:
            vip = IPv4Address(args.addr)
        except ValueError:
            parser.error(f"-a: not an IPv4 address: {args.addr}")
    if args.vhid is not None and not 1 <= args.vhid <= 255:
        parser.error("vhid must be between 1 and 255")
    if args.count is not None and args.count <= 0:
        parser.error("--count must be positive")
    watcher = Watcher(sys.stdout, password, vip, args.vhid)
    try:
        capture(args.interface, watcher, count=args.count, timeout=args.timeout)
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError, ValueError) as exc:  # no such interface, no permission
        print(f"pyucarp watch: {args.interface}: {exc}", file=sys.stderr)
        return 2
    print(f"{watcher.seen} advertisement(s), {watcher.bad} bad", file=sys.stderr)
    return watcher.exit_status()


def capture(iface: str, watcher: Watcher, *, count: int | None, timeout: float | None,
            started: Callable[[], None] | None = None) -> None:
    """Sniff ``iface`` with scapy until ``count`` adverts or ``timeout`` seconds."""
    # Loading the Ethernet layer registers it for the capture socket's link type:
    # without it scapy warns "Unable to guess type" and hands over raw payloads.
    import scapy.layers.inet  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
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

    kwargs: dict[str, Any] = dict(
        iface=iface, prn=on_packet, lfilter=keep, store=False, count=count or 0,
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
    if len(frame) < ETH_HEADER_LEN + IP_HEADER_LEN:
        return False
    ethertype = int.from_bytes(frame[12:14], "big")
    protocol = frame[ETH_HEADER_LEN + 9]  # IPv4 header byte 9
    return ethertype == ETHERTYPE_IP and protocol == IPPROTO_CARP
