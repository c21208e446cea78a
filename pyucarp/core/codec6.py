"""CARP advertisements over IPv6 and unsolicited Neighbour Advertisements, as carp(4) of
OpenBSD and FreeBSD sends them: ucarp has no IPv6, so the BSD kernels are the reference
(docs/compat.md §10 gives the bytes and the evidence, function by function).

Pure functions and one small class, no I/O, the same shape as :mod:`pyucarp.core.codec`.
Layout of an advertisement (90 bytes):

=======  ======  ==============================================================
offset   length  field
=======  ======  ==============================================================
0        6       Ethernet destination: 33:33:00:00:00:12 (ff02::12), or the
                 unicast peer's MAC (with ``peers`` the kernel builds it)
6        6       Ethernet source: the caller's (the BSDs use 00:00:5e:00:01:<vhid>)
12       2       0x86dd
14       40      IPv6: version 6, traffic class (0 as OpenBSD; FreeBSD sends 0xe0),
                 flow label 0, payload length 36, next header 112, hop limit 255,
                 source = our address, destination = ff02::12 or the peer
54       36      CARP, as over IPv4: 0x21, vhid, advskew, authlen 7, demote 0,
                 advbase, checksum (these 36 bytes only: no pseudo-header),
                 64-bit counter, HMAC-SHA1 (20 bytes)
=======  ======  ==============================================================

The HMAC message is ``02 01 vhid [IPv4 VIPs] IPv6 VIPs counter``: each family's addresses
in ascending byte order, each distinct address once, link-local ones left out
(:func:`carp6_digest_input`). As over IPv4, advbase and advskew are not covered, and
neither is anything of the IPv6 header: its source is taken on trust, as the BSDs do.

Unicast peers (``peers``, pyucarp's ``--peer``): each advert is one IPv6 packet per peer
(:meth:`AdvertCodec6.encode_ip`, hop limit 255), routed by the kernel, and a received
advert counts only when it comes from a peer to our own address, with hop limit 255: the
IPv4 rule of :class:`pyucarp.core.codec.AdvertCodec`.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from pyucarp.core.codec import (
    CARP_ADVERTISEMENT,
    CARP_HEADER_LEN,
    CARP_TTL,
    CARP_VERSION,
    ETH_HEADER_LEN,
    IPPROTO_CARP,
    Dropped,
    DropReason,
    _DigestBase,
    bad_digest,
    carp_fields,
    carp_header,
    compare_digest,
    internet_checksum,
    is_leave,
)
from pyucarp.records import TYPE_CHECKING, NamedTuple  # lean: no dataclasses/typing, ~3 MiB

if TYPE_CHECKING:
    from collections.abc import Sequence
    from ipaddress import IPv4Address

IPV6_HEADER_LEN = 40
ADVERT6_LEN = ETH_HEADER_LEN + IPV6_HEADER_LEN + CARP_HEADER_LEN  # 90
ND_NA_LEN = 32  # ICMPv6 header 4, flags 4, target 16, one 8-byte option
NA_LEN = ETH_HEADER_LEN + IPV6_HEADER_LEN + ND_NA_LEN  # 86

ETHERTYPE_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
HOP_LIMIT = CARP_TTL  # 255, for adverts and for neighbour discovery alike
CARP6_GROUP = IPv6Address("ff02::12")
ALL_NODES = IPv6Address("ff02::1")

ND_NEIGHBOR_ADVERT = 136
ND_NA_FLAG_ROUTER = 0x80  # the flags byte of a Neighbour Advertisement (RFC 4861 4.4)
ND_NA_FLAG_SOLICITED = 0x40
ND_NA_FLAG_OVERRIDE = 0x20
ND_OPT_TARGET_LINKADDR = 2

_SRC_AT = ETH_HEADER_LEN + 8  # 22: the IPv6 source address
_DST_AT = ETH_HEADER_LEN + 24  # 38: the IPv6 destination address
_CARP_AT = ETH_HEADER_LEN + IPV6_HEADER_LEN  # 54

# version/traffic class/flow label, payload length, next header, hop limit, source, destination
_IPV6_HEADER = struct.Struct("!IHBB16s16s")
_NA_BODY = struct.Struct("!BBHB3x16sBB6s")  # type, code, checksum, flags, target, option
_PSEUDO_TAIL = struct.Struct("!I3xB")  # upper-layer length, three zero bytes, next header

_UNSPECIFIED = bytes(16)
_ALL_ONES = b"\xff" * 16


def ipv6_multicast_mac(group: IPv6Address) -> bytes:
    """The Ethernet address of an IPv6 multicast group: 33:33 + its last 32 bits."""
    return b"\x33\x33" + group.packed[12:]


def is_scope_embedded(address: IPv6Address) -> bool:
    """KAME's ``IN6_IS_SCOPE_EMBED``: link-local unicast (fe80::/10) and interface- or
    link-local multicast, the addresses whose bytes 2-3 a BSD kernel keeps the interface
    index in."""
    b = address.packed
    if b[0] == 0xFE:
        return b[1] & 0xC0 == 0x80
    return b[0] == 0xFF and b[1] & 0x0F in (1, 2)


def carp6_digest_input(
    vhid: int,
    vips: Sequence[IPv6Address],
    *,
    link_local: bool = False,
    ipv4: Sequence[IPv4Address] = (),
) -> bytes:
    """What the BSD kernels hash after the key pad and before the counter.

    ``02 01 vhid``, then the IPv4 addresses of the virtual host (``ipv4``: a dual-stack
    vhid hashes both families in both of its adverts), then the IPv6 ones, each family in
    ascending order of its network-order bytes, each distinct address once; the all-zero
    and all-ones addresses are never hashed (the selection loop of ``carp_hmac_prepare``
    cannot pick them). Link-local addresses are left out (OpenBSD's ``HMAC_NOV6LL``, what
    it sends); with ``link_local`` they are hashed with bytes 2-3 cleared and sorted with
    the rest (``HMAC_ORIG``: OpenBSD accepts it too, FreeBSD sends and accepts only this).
    """
    v4 = sorted({a.packed for a in ipv4} - {b"\x00" * 4, b"\xff" * 4})
    v6: set[bytes] = set()
    for address in vips:
        packed = address.packed
        if is_scope_embedded(address):
            if not link_local:
                continue
            packed = packed[:2] + b"\x00\x00" + packed[4:]
        v6.add(packed)
    v6 -= {_UNSPECIFIED, _ALL_ONES}
    head = bytes([CARP_VERSION, CARP_ADVERTISEMENT, vhid & 0xFF])
    return head + b"".join(v4) + b"".join(sorted(v6))


def carp6_digest(
    password: bytes,
    vhid: int,
    vips: Sequence[IPv6Address],
    counter: int,
    *,
    link_local: bool = False,
    ipv4: Sequence[IPv4Address] = (),
) -> bytes:
    """HMAC-SHA1 keyed with the password over :func:`carp6_digest_input` and the counter
    (8 bytes, big-endian, as on the wire)."""
    prefix = carp6_digest_input(vhid, vips, link_local=link_local, ipv4=ipv4)
    return _DigestBase(password, prefix).digest_for(counter)


def tie_value6(address: IPv6Address) -> int:
    """The tie-break key of an IPv6 source: its 16 bytes read as one big-endian integer.

    The BSDs break no tie (an equal advert sends a MASTER to BACKUP); pyucarp prefers the
    smaller key, as over IPv4, and this order is the same on every host (no byte order).
    """
    return int.from_bytes(address.packed, "big")


def neighbour_advertisement(
    mac: bytes, vip: IPv6Address, src: IPv6Address, *, router: bool = False
) -> bytes:
    """The unsolicited Neighbour Advertisement for ``vip`` on becoming MASTER (86 bytes).

    To all nodes (ff02::1) from ``src`` (the instance's -s address: RFC 4861 §4.4 asks for
    one of the interface's), hop limit 255; ICMPv6 type 136 with Override set and Solicited
    clear, Router set only when asked (OpenBSD sets it on a forwarding host: a router's
    address announced without it drops out of its neighbours' default router lists),
    target ``vip``, and the target link-layer address option (type 2) carrying ``mac``,
    the interface's own MAC.
    """
    if len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, not {len(mac)}")
    flags = ND_NA_FLAG_OVERRIDE | (ND_NA_FLAG_ROUTER if router else 0)
    body = bytearray(_NA_BODY.pack(
        ND_NEIGHBOR_ADVERT, 0, 0, flags, vip.packed, ND_OPT_TARGET_LINKADDR, 1, mac
    ))
    pseudo = src.packed + ALL_NODES.packed + _PSEUDO_TAIL.pack(ND_NA_LEN, IPPROTO_ICMPV6)
    struct.pack_into("!H", body, 2, internet_checksum(pseudo + bytes(body)))
    ip = _IPV6_HEADER.pack(
        6 << 28, ND_NA_LEN, IPPROTO_ICMPV6, HOP_LIMIT, src.packed, ALL_NODES.packed
    )
    eth = ipv6_multicast_mac(ALL_NODES) + mac + struct.pack("!H", ETHERTYPE_IPV6)
    return eth + ip + bytes(body)


class CarpFrame6(NamedTuple):
    """Every field of a structurally valid CARP-over-IPv6 frame, before authentication."""

    eth_dst: bytes
    eth_src: bytes
    traffic_class: int
    flow_label: int
    payload_length: int
    hop_limit: int
    src: IPv6Address
    dst: IPv6Address
    version: int
    type: int
    vhid: int
    advskew: int
    authlen: int
    demote: int
    advbase: int
    counter: int
    digest: bytes
    checksum_ok: bool


class Advert6(NamedTuple):
    """An authenticated advertisement from an IPv6 peer: :class:`codec.Advert`'s fields,
    with an IPv6 source and the byte OpenBSD fills with its demotion counter."""

    src: IPv6Address
    advbase: int
    advskew: int
    counter: int
    demote: int = 0

    @property
    def is_leave(self) -> bool:
        """True for the leave message (advbase 255, advskew 255: OpenBSD's bow-out too)."""
        return is_leave(self.advbase, self.advskew)


def _not_carp6(frame: bytes) -> Dropped | None:
    """Why ``frame`` is no CARP-over-IPv6 frame at all, if it is none."""
    if len(frame) < _CARP_AT:
        return Dropped(DropReason.TOO_SHORT, f"Frame too short: [{len(frame)}]")
    if frame[12:14] != b"\x86\xdd" or frame[14] >> 4 != 6:
        return Dropped(DropReason.NOT_CARP, "Not an IPv6 frame")
    if frame[20] != IPPROTO_CARP:
        return Dropped(DropReason.NOT_CARP, f"Not CARP: next header [{frame[20]}]")
    return None


def _payload_length(frame: bytes) -> int:
    return int.from_bytes(frame[18:20], "big")


def _truncated(frame: bytes) -> Dropped | None:
    """The IPv6 layer's check: the payload length must not exceed what arrived (bytes
    beyond it are link padding, ignored)."""
    plen, caplen = _payload_length(frame), len(frame) - _CARP_AT
    if plen > caplen:
        return Dropped(
            DropReason.BOGUS_SIZE, f"Bogus size: payload length [{plen}] > captured [{caplen}]"
        )
    return None


def _short(frame: bytes) -> Dropped | None:
    """``carp6_proto_input``'s check: the payload must hold the 36 CARP bytes."""
    plen = _payload_length(frame)
    if plen < CARP_HEADER_LEN:
        return Dropped(
            DropReason.BOGUS_SIZE,
            f"Bogus size: payload length [{plen}] < ch_len=[{CARP_HEADER_LEN}]",
        )
    return None


def _fields(frame: bytes) -> CarpFrame6:
    """The fields of a frame that passed :func:`_not_carp6`, :func:`_truncated` and
    :func:`_short`."""
    vfc, plen, _nxt, hlim, src, dst = _IPV6_HEADER.unpack_from(frame, ETH_HEADER_LEN)
    return CarpFrame6(
        eth_dst=frame[0:6],
        eth_src=frame[6:12],
        traffic_class=(vfc >> 20) & 0xFF,
        flow_label=vfc & 0xFFFFF,
        payload_length=plen,
        hop_limit=hlim,
        src=IPv6Address(src),
        dst=IPv6Address(dst),
        **carp_fields(frame, _CARP_AT),
    )


def parse_frame6(frame: bytes) -> CarpFrame6 | Dropped:
    """Split an Ethernet frame into CARP-over-IPv6 fields, with no key or identity involved.

    Never raises: anything that is not a well-formed IPv6 CARP frame is ``Dropped``
    (IPv6 extension headers included: no BSD sends them with an advert). Hop limit,
    version and checksum are reported, not judged, so diagnostics can show them.
    """
    problem = _not_carp6(frame) or _truncated(frame) or _short(frame)
    return problem if problem is not None else _fields(frame)


class AdvertCodec6:
    """Encodes our IPv6 advertisements and judges received frames for one virtual host."""

    def __init__(
        self,
        *,
        vhid: int,
        password: bytes,
        vips: Sequence[IPv6Address],
        srcip: IPv6Address,
        eth_src: bytes,
        peer: IPv6Address | None = None,
        peer_mac: bytes | None = None,
        traffic_class: int = 0,
        ipv4_vips: Sequence[IPv4Address] = (),
        hmac_link_local: bool = False,
        peers: Sequence[IPv6Address] = (),
    ) -> None:
        """``vips``: the virtual host's IPv6 addresses (``ipv4_vips``: its IPv4 ones, when a
        BSD peer has both families on the vhid); ``srcip``: our source, usually the
        interface's link-local address; ``peer``/``peer_mac``: FreeBSD's unicast mode
        (a unicast ``sc_carpaddr6``) instead of ff02::12; ``hmac_link_local``: send the
        digest with the link-local VIPs hashed (FreeBSD's form) rather than without
        (OpenBSD's). Frames are accepted with either form, as OpenBSD's
        ``carp_hmac_verify`` does. ``peers``: pyucarp's unicast mode (``--peer``), packets
        from :meth:`encode_ip`, one per peer, and only a peer's adverts to ``srcip``
        accepted; not with ``peer``."""
        if len(eth_src) != 6:
            raise ValueError(f"eth_src: a MAC address has 6 bytes, not {len(eth_src)}")
        if not 0 <= traffic_class <= 0xFF:
            raise ValueError(f"traffic_class: 0 to 255, not {traffic_class}")
        if peers and peer is not None:
            raise ValueError("peer (frames to one peer's MAC) or peers (packets), not both")
        self.vhid = vhid
        self.vips = tuple(vips)
        self.srcip = srcip
        self.peer = peer
        self.peers = tuple(peers)
        self._src_bytes = srcip.packed
        self._peer_bytes = frozenset(p.packed for p in self.peers)
        self._ip_word = (6 << 28) | (traffic_class << 20)
        sent = carp6_digest_input(vhid, vips, link_local=hmac_link_local, ipv4=ipv4_vips)
        other = carp6_digest_input(vhid, vips, link_local=not hmac_link_local, ipv4=ipv4_vips)
        self._digests = _DigestBase(password, sent)
        self._other_digests = None if other == sent else _DigestBase(password, other)
        # FreeBSD's unicast mode (carp_input_c): the hop limit is not checked, since a
        # peer may be routed, and adverts to our own address are accepted too. --peer
        # keeps the check, as over IPv4: the peers share the link.
        self._check_hop_limit = peer is None
        self._destinations = {CARP6_GROUP.packed}
        if peer is not None:
            self._destinations.add(srcip.packed)
        if peer is None:
            dst, dst_mac = CARP6_GROUP, ipv6_multicast_mac(CARP6_GROUP)
        elif peer_mac is not None and len(peer_mac) == 6:
            dst, dst_mac = peer, peer_mac
        else:
            raise ValueError("a unicast peer needs its 6-byte MAC address (peer_mac)")
        eth = dst_mac + eth_src + struct.pack("!H", ETHERTYPE_IPV6)
        self._head = eth + self._ip_header(dst)

    def set_source_mac(self, mac: bytes) -> None:
        """The Ethernet source of our adverts from now on (the interface came back)."""
        self._head = self._head[:6] + mac + self._head[12:]

    def digest(self, counter: int) -> bytes:
        """Our HMAC for ``counter``, in the form we send."""
        return self._digests.digest_for(counter)

    def _digest_ok(self, counter: int, digest: bytes) -> bool:
        if compare_digest(self._digests.digest_for(counter), digest):
            return True
        other = self._other_digests
        return other is not None and compare_digest(other.digest_for(counter), digest)

    def encode(self, *, advbase: int, advskew: int, counter: int) -> bytes:
        """The 90-byte advertisement frame with these values."""
        return self._head + carp_header(self.vhid, advbase, advskew, counter,
                                        self.digest(counter))

    def encode_ip(self, *, advbase: int, advskew: int, counter: int, dst: IPv6Address) -> bytes:
        """The advert's 76-byte IPv6 packet to ``dst`` (a unicast peer): the header of
        :meth:`encode`'s frame with that destination, then the 36 CARP bytes."""
        return self._ip_header(dst) + carp_header(self.vhid, advbase, advskew, counter,
                                                  self.digest(counter))

    def _ip_header(self, dst: IPv6Address) -> bytes:
        """Our adverts' IPv6 header to ``dst`` (ff02::12 or a peer): hop limit 255, from -s."""
        return _IPV6_HEADER.pack(self._ip_word, CARP_HEADER_LEN, IPPROTO_CARP, HOP_LIMIT,
                                 self._src_bytes, dst.packed)

    def decode(self, frame: bytes) -> Advert6 | Dropped:
        """Judge a received frame in the BSD kernels' order (docs/compat.md §10).

        The IPv6 layer first (an IPv6 frame of protocol 112, our own source, the payload
        length, the destination; with ``peers``, destination and source), then
        ``carp6_proto_input``: hop limit, length, checksum, then ``carp_proto_input_c``:
        vhid, version, HMAC. Never raises.
        """
        problem = _not_carp6(frame)
        if problem is not None:
            return problem
        if frame[_SRC_AT:_DST_AT] == self._src_bytes:
            return Dropped(DropReason.OWN, "Own advertisement")
        problem = _truncated(frame)
        if problem is not None:
            return problem
        dst = frame[_DST_AT:_CARP_AT]
        if self._peer_bytes:
            # --peer: addressed to us and from a peer, the rule AdvertCodec applies over
            # IPv4 (the single-peer mode above takes any source, and ff02::12 too).
            src = frame[_SRC_AT:_DST_AT]
            if dst != self._src_bytes or src not in self._peer_bytes:
                return Dropped(
                    DropReason.OTHER_GROUP,
                    f"Ignoring advert from [{IPv6Address(src)}] to [{IPv6Address(dst)}]:"
                    " not a peer's to us",
                )
        elif dst not in self._destinations:
            return Dropped(
                DropReason.OTHER_GROUP, f"Ignoring destination: [{IPv6Address(dst)}]"
            )
        hop_limit = frame[21]
        if self._check_hop_limit and hop_limit != HOP_LIMIT:
            return Dropped(DropReason.BAD_TTL, f"Bad hop limit: [{hop_limit}]")
        problem = _short(frame)
        if problem is not None:
            return problem
        parsed = _fields(frame)
        if not parsed.checksum_ok:
            return Dropped(DropReason.BAD_CHECKSUM, "Bad CARP checksum")
        if parsed.vhid != self.vhid:
            return Dropped(DropReason.OTHER_VHID, f"Ignoring vhid: [{parsed.vhid}]")
        if parsed.version != CARP_VERSION:
            return Dropped(DropReason.BAD_VERSION, f"Bad version: [{parsed.version}]")
        if not self._digest_ok(parsed.counter, parsed.digest):
            return bad_digest(self.digest(parsed.counter), parsed.digest, "virtual IP addresses")
        return Advert6(parsed.src, parsed.advbase, parsed.advskew, parsed.counter, parsed.demote)
