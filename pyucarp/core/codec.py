"""CARP advertisement and gratuitous ARP frames, byte for byte as ucarp 1.5.2 sends them.

Pure functions and one small class, no I/O. Layout of an advertisement (70 bytes):

=======  ======  ==============================================================
offset   length  field
=======  ======  ==============================================================
0        6       Ethernet destination: 01:00:5e + low 23 bits of the group,
                 or ff:ff:ff:ff:ff:ff with -M (nomcast)
6        6       Ethernet source: 00:00:5e:00:00:<vhid> (ucarp's choice)
12       2       0x0800
14       20      IPv4: 0x45, TOS 0x10, length 56, random id, DF, TTL 255,
                 protocol 112, checksum, source = srcip, destination = group
34       36      CARP: 0x21, vhid, advskew, authlen 7, pad 0, advbase,
                 checksum, 64-bit counter, HMAC-SHA1 (20 bytes)
=======  ======  ==============================================================

The HMAC key is the password; the message is ``02 01 vhid VIP counter`` — only the
counter travels in clear among the authenticated fields; advbase and advskew are not
covered (ucarp's ``carp_hmac_prepare``/``carp_hmac_generate``).
"""

from __future__ import annotations

import enum
import importlib
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from pyucarp.records import TYPE_CHECKING, NamedTuple  # lean: no dataclasses/typing, ~3 MiB

if TYPE_CHECKING:
    from typing import Any

# The builtin SHA-1 and constant-time comparison keep OpenSSL (hashlib, hmac) out of the
# daemon: loading libcrypto costs ~4 MiB of resident memory per instance.
try:
    _sha1_new: Any = importlib.import_module("_sha1").sha1
except ImportError:  # pragma: no cover - CPython builds without the builtin module
    _sha1_new = importlib.import_module("hashlib").sha1
compare_digest: Callable[[bytes, bytes], bool] = importlib.import_module(
    "_operator"
)._compare_digest

ETH_HEADER_LEN = 14
IP_HEADER_LEN = 20
CARP_HEADER_LEN = 36
ADVERT_LEN = ETH_HEADER_LEN + IP_HEADER_LEN + CARP_HEADER_LEN  # 70
ARP_LEN = 42

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
IPPROTO_CARP = 112
CARP_TTL = 255
CARP_VERSION = 2
CARP_ADVERTISEMENT = 1
CARP_AUTHLEN = 7  # in 32-bit words: counter + digest
IPTOS_LOWDELAY = 0x10
IP_DF = 0x4000
COUNTER_MODULO = 1 << 64

BROADCAST_MAC = b"\xff" * 6
LEAVE_ADVBASE = 255  # advbase 255 / advskew 255 means "I am leaving" (pyucarp);
LEAVE_ADVSKEW = 255  # ucarp backups treat such a master as dead at once.

_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
CARP_HEADER = struct.Struct("!BBBBBBHQ20s")  # the 36 CARP bytes, in network order


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement checksum of ``data`` (odd length padded with zero)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def multicast_mac(group: IPv4Address) -> bytes:
    """The Ethernet address of an IPv4 multicast group: 01:00:5e + its low 23 bits."""
    low = int(group) & 0x7FFFFF
    return b"\x01\x00\x5e" + low.to_bytes(3, "big")


def virtual_mac(vhid: int) -> bytes:
    """ucarp's advertisement source MAC, ``00:00:5e:00:00:<vhid>`` (not VRRP's ``00:01``)."""
    return b"\x00\x00\x5e\x00\x00" + bytes([vhid & 0xFF])


def carp_digest(password: bytes, vhid: int, vip: IPv4Address, counter: int) -> bytes:
    """HMAC-SHA1 over ``02 01 vhid VIP counter`` keyed with the password (ucarp's digest)."""
    return _digest_base(password, vhid, vip).digest_for(counter)


_SHA1_BLOCK = 64


class _DigestBase:
    """HMAC-SHA1 (RFC 2104) with the inner hash primed with the fixed prefix, as ucarp's
    ``carp_hmac_prepare`` precomputes it; each counter costs two hash copies."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes, prefix: bytes) -> None:
        if len(key) > _SHA1_BLOCK:
            key = _sha1_new(key).digest()
        key = key.ljust(_SHA1_BLOCK, b"\x00")
        self._inner: Any = _sha1_new(bytes(b ^ 0x36 for b in key))
        self._inner.update(prefix)
        self._outer: Any = _sha1_new(bytes(b ^ 0x5C for b in key))

    def digest_for(self, counter: int) -> bytes:
        inner = self._inner.copy()
        inner.update(counter.to_bytes(8, "big"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest


def _digest_base(password: bytes, vhid: int, vip: IPv4Address) -> _DigestBase:
    prefix = bytes([CARP_VERSION, CARP_ADVERTISEMENT, vhid & 0xFF]) + vip.packed
    return _DigestBase(password, prefix)


def carp_header(vhid: int, advbase: int, advskew: int, counter: int, digest: bytes) -> bytes:
    """The 36 CARP bytes of an advertisement, checksum included (the same over IPv6)."""
    carp = bytearray(CARP_HEADER.pack(
        (CARP_VERSION << 4) | CARP_ADVERTISEMENT, vhid, advskew, CARP_AUTHLEN, 0, advbase,
        0, counter, digest,
    ))
    struct.pack_into("!H", carp, 6, internet_checksum(bytes(carp)))
    return bytes(carp)


def gratuitous_arp(mac: bytes, vip: IPv4Address) -> bytes:
    """ucarp's gratuitous ARP: a broadcast *request*, sender = target = (real MAC, VIP)."""
    eth = BROADCAST_MAC + mac + struct.pack("!H", ETHERTYPE_ARP)
    arp = struct.pack("!HHBBH", 1, ETHERTYPE_IP, 6, 4, 1)
    return eth + arp + mac + vip.packed + mac + vip.packed


class DropReason(enum.Enum):
    """Why a received frame is not an advertisement for us, in ucarp's order of checks."""

    TOO_SHORT = "too short"
    NOT_IPV4 = "not IPv4"
    OWN = "own advertisement"
    NOT_CARP = "not CARP"
    BOGUS_SIZE = "bogus size"
    BAD_TTL = "bad TTL"
    BAD_VERSION = "bad version"
    OTHER_VHID = "other vhid"
    OTHER_GROUP = "other group"
    BAD_CHECKSUM = "bad checksum"
    BAD_DIGEST = "bad digest"
    REPLAY = "replayed advertisement"  # pyucarp only: see replay.py


class Dropped(NamedTuple):
    """A frame that was refused, with what ucarp would say about it."""

    reason: DropReason
    message: str


def carp_fields(data: bytes, at: int = 0, summed_from: int | None = None) -> dict[str, Any]:
    """The fields of the CARP header at offset ``at`` of ``data`` (its 36 bytes must be
    there), by the names :class:`CarpFrame` and ``codec6.CarpFrame6`` give them.

    ``checksum_ok`` tells whether the bytes from ``summed_from`` (by default ``at``) to
    the header's end sum to zero: ucarp checks the IPv4 header and the CARP header with
    one sum, the BSDs over IPv6 the CARP bytes alone.
    """
    vt, vhid, advskew, authlen, demote, advbase, _ck, counter, digest = (
        CARP_HEADER.unpack_from(data, at)
    )
    summed = data[at if summed_from is None else summed_from : at + CARP_HEADER_LEN]
    return {
        "version": vt >> 4, "type": vt & 0x0F, "vhid": vhid, "advskew": advskew,
        "authlen": authlen, "demote": demote, "advbase": advbase, "counter": counter,
        "digest": digest, "checksum_ok": internet_checksum(summed) == 0,
    }


class CarpFrame(NamedTuple):
    """Every field of a structurally valid CARP frame, before authentication."""

    eth_dst: bytes
    eth_src: bytes
    ip_id: int
    ttl: int
    src: IPv4Address
    dst: IPv4Address
    version: int
    type: int
    vhid: int
    advskew: int
    authlen: int
    advbase: int
    counter: int
    digest: bytes
    checksum_ok: bool
    demote: int = 0  # ucarp's pad byte; last, so that records made before it still fit


class Advert(NamedTuple):
    """An authenticated advertisement from a peer: what the state machine consumes
    (from :class:`AdvertCodec`, or converted from ``codec6.Advert6`` over IPv6)."""

    src: IPv4Address | IPv6Address
    advbase: int
    advskew: int
    counter: int

    @property
    def is_leave(self) -> bool:
        """True for pyucarp's leave message (advbase 255, advskew 255)."""
        return is_leave(self.advbase, self.advskew)


def is_leave(advbase: int, advskew: int) -> bool:
    """True for the values of pyucarp's leave advert (advbase 255, advskew 255)."""
    return advbase == LEAVE_ADVBASE and advskew == LEAVE_ADVSKEW


def bad_digest(expected: bytes, digest: bytes, vips: str) -> Dropped:
    """ucarp's complaint about an advert whose HMAC is not ``expected`` (``vips``: what
    the hint calls the virtual addresses)."""
    return Dropped(
        DropReason.BAD_DIGEST,
        f"Bad digest - md2=[{expected[:4].hex()}...] md=[{digest[:4].hex()}...]"
        f" - Check vhid, password and {vips}",
    )


def parse_frame(frame: bytes) -> CarpFrame | Dropped:
    """Split an Ethernet frame into CARP fields, with no key or identity involved.

    Never raises: anything that is not a well-formed IPv4 CARP frame is ``Dropped``.
    TTL, version and checksums are reported, not judged, so diagnostics can show them.
    """
    if len(frame) <= ETH_HEADER_LEN + IP_HEADER_LEN:
        return Dropped(DropReason.TOO_SHORT, f"Frame too short: [{len(frame)}]")
    if frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return Dropped(DropReason.NOT_IPV4, "Not an IPv4 frame")
    ip_len = (frame[14] & 0x0F) * 4
    proto = frame[23]
    if proto != IPPROTO_CARP:
        return Dropped(DropReason.NOT_CARP, f"Not CARP: protocol [{proto}]")
    caplen = len(frame) - ETH_HEADER_LEN
    if ip_len < IP_HEADER_LEN or caplen < ip_len + CARP_HEADER_LEN:
        return Dropped(
            DropReason.BOGUS_SIZE,
            f"Bogus size: caplen=[{caplen}], ip_len=[{ip_len}] ch_len=[{CARP_HEADER_LEN}]",
        )
    _vhl, _tos, _tot, ip_id, _off, ttl, _p, _sum, src, dst = _IP_HEADER.unpack_from(
        frame, ETH_HEADER_LEN
    )
    # ucarp checks one sum over IP header and CARP header together: valid parts sum to 0.
    carp = carp_fields(frame, ETH_HEADER_LEN + ip_len, summed_from=ETH_HEADER_LEN)
    return CarpFrame(
        eth_dst=frame[0:6],
        eth_src=frame[6:12],
        ip_id=ip_id,
        ttl=ttl,
        src=IPv4Address(src),
        dst=IPv4Address(dst),
        **carp,
    )


class AdvertCodec:
    """Encodes our advertisements and judges received frames for one virtual host."""

    def __init__(
        self,
        *,
        vhid: int,
        password: bytes,
        vip: IPv4Address,
        srcip: IPv4Address,
        group: IPv4Address,
        nomcast: bool = False,
        peers: tuple[IPv4Address, ...] = (),
        source_mac: bytes | None = None,
    ) -> None:
        """``peers``: unicast mode (adverts to each peer, accepted only from them and only
        when addressed to ``srcip``); ``source_mac``: send from this MAC instead of
        ucarp's ``00:00:5e:00:00:<vhid>`` (hypervisors that drop spoofed sources)."""
        self.vhid = vhid
        self.vip = vip
        self.srcip = srcip
        self.group = group
        self.peers = peers
        self._src_bytes = srcip.packed
        self._digests = _digest_base(password, vhid, vip)
        self._dst_mac = BROADCAST_MAC if nomcast else multicast_mac(group)
        self.set_source_mac(virtual_mac(vhid) if source_mac is None else source_mac)

    def set_source_mac(self, mac: bytes) -> None:
        """The Ethernet source of our adverts from now on."""
        self._eth = self._dst_mac + mac + struct.pack("!H", ETHERTYPE_IP)

    def digest(self, counter: int) -> bytes:
        """Our HMAC for ``counter``."""
        return self._digests.digest_for(counter)

    def encode(self, *, advbase: int, advskew: int, counter: int, ip_id: int) -> bytes:
        """The 70-byte advertisement frame ucarp would send with these values."""
        return self._eth + self.encode_ip(advbase=advbase, advskew=advskew, counter=counter,
                                          ip_id=ip_id, dst=self.group)

    def encode_ip(self, *, advbase: int, advskew: int, counter: int, ip_id: int,
                  dst: IPv4Address) -> bytes:
        """The advert's 56-byte IPv4 packet to ``dst`` (a unicast peer, or the group)."""
        carp = carp_header(self.vhid, advbase, advskew, counter, self.digest(counter))
        ip = bytearray(
            _IP_HEADER.pack(
                0x45,
                IPTOS_LOWDELAY,
                IP_HEADER_LEN + CARP_HEADER_LEN,
                ip_id,
                IP_DF,
                CARP_TTL,
                IPPROTO_CARP,
                0,
                self.srcip.packed,
                dst.packed,
            )
        )
        struct.pack_into("!H", ip, 10, internet_checksum(bytes(ip)))
        return bytes(ip) + carp

    def decode(self, frame: bytes) -> Advert | Dropped:
        """Judge a received frame in ucarp's order of checks (docs/compat.md §2).

        Returns the authenticated ``Advert`` or why it was dropped; never raises.
        """
        # ucarp drops frames from its own source right after the length check.
        if len(frame) > ETH_HEADER_LEN + IP_HEADER_LEN and frame[26:30] == self._src_bytes:
            return Dropped(DropReason.OWN, "Own advertisement")
        parsed = parse_frame(frame)
        if isinstance(parsed, Dropped):
            return parsed
        if parsed.ttl != CARP_TTL:
            return Dropped(DropReason.BAD_TTL, f"Bad TTL: [{parsed.ttl}]")
        if parsed.version != CARP_VERSION:
            return Dropped(DropReason.BAD_VERSION, f"Bad version: [{parsed.version}]")
        if parsed.vhid != self.vhid:
            return Dropped(DropReason.OTHER_VHID, f"Ignoring vhid: [{parsed.vhid}]")
        if self.peers:
            # Unicast (OpenBSD's carppeer): addressed to us, from a configured peer.
            if parsed.dst != self.srcip or parsed.src not in self.peers:
                return Dropped(
                    DropReason.OTHER_GROUP,
                    f"Ignoring advert from [{parsed.src}] to [{parsed.dst}]: not a peer's to us",
                )
        elif parsed.dst != self.group:
            return Dropped(
                DropReason.OTHER_GROUP, f"Ignoring different multicast ip: [{parsed.dst}]"
            )
        if not parsed.checksum_ok:
            return Dropped(DropReason.BAD_CHECKSUM, "Bad IP checksum")
        expected = self.digest(parsed.counter)
        if not compare_digest(expected, parsed.digest):
            return bad_digest(expected, parsed.digest, "virtual IP address")
        return Advert(parsed.src, parsed.advbase, parsed.advskew, parsed.counter)
