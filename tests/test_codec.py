"""The frame codec against the golden vectors, ucarp's receive checks, scapy and the C ucarp.

Independent oracles: the golden frames of docs/compat.md §2, scapy's dissector, an HMAC and
checksums computed here from the definitions, and frames captured from /usr/sbin/ucarp
(``tests/vectors/cucarp.json``, when present).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import checksum as scapy_checksum

from mutations import mutated, replaced
from pyucarp.core.codec import (
    ADVERT_LEN,
    ARP_LEN,
    BROADCAST_MAC,
    Advert,
    AdvertCodec,
    CarpFrame,
    Dropped,
    DropReason,
    carp_digest,
    gratuitous_arp,
    internet_checksum,
    multicast_mac,
    parse_frame,
    virtual_mac,
)

GROUP = IPv4Address("224.0.0.18")
VECTORS_FILE = Path(__file__).resolve().parent / "vectors" / "cucarp.json"


@dataclass(frozen=True)
class Golden:
    """A reference frame and everything that produced it."""

    password: bytes
    vhid: int
    vip: IPv4Address
    src: IPv4Address
    advbase: int
    advskew: int
    counter: int
    ip_id: int
    frame: bytes


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("·", ""))


GOLDEN = [
    Golden(
        b"love", 42, IPv4Address("10.0.0.100"), IPv4Address("10.0.0.1"), 1, 10,
        0x880DEABA87C47333, 0xE6F4,
        _hex(
            "01005e000012 00005e00002a 0800 · 4510 0038 e6f4 4000 ff70 aa3d 0a000001 e0000012 · "
            "21 2a 0a 07 00 01 ada0 880deaba87c47333 8137d9f5f5b1a182f7af53a691f75547040b906a"
        ),
    ),
    Golden(
        b"s3cret", 7, IPv4Address("10.99.0.100"), IPv4Address("10.99.0.1"), 1, 0,
        0x432B2AE7B4517AEC, 0x574B,
        _hex(
            "01005e000012 00005e000007 0800 · 4510 0038 574b 4000 ff70 3984 0a630001 e0000012 · "
            "21 07 00 07 00 01 4f20 432b2ae7b4517aec 863dff8eccc89245101e6c1ae4f968d812443156"
        ),
    ),
]
GOLDEN_IDS = ["love-vhid42", "s3cret-vhid7"]


def sender(g: Golden, **over: Any) -> AdvertCodec:
    """The codec of the node that sent ``g``."""
    kw: dict[str, Any] = dict(vhid=g.vhid, password=g.password, vip=g.vip, srcip=g.src, group=GROUP)
    kw.update(over)
    return AdvertCodec(**kw)


def peer(g: Golden, **over: Any) -> AdvertCodec:
    """The codec of another node of the same virtual host (another source address)."""
    other = IPv4Address(int(g.src) + 1)
    return sender(g, srcip=other, **over)


def judged_without_raising(frame: bytes) -> None:
    """``frame`` parses, and every golden vhid's sender and peer decode it, to a record or
    a Dropped."""
    assert isinstance(parse_frame(frame), (CarpFrame, Dropped))
    for g in GOLDEN:
        assert isinstance(peer(g).decode(frame), (Advert, Dropped))
        assert isinstance(sender(g).decode(frame), (Advert, Dropped))


def fix_checksums(frame: bytes) -> bytes:
    """Recompute the IP and CARP checksums of a (possibly edited) 20-byte-header frame."""
    b = bytearray(frame)
    b[24:26] = b"\0\0"
    b[40:42] = b"\0\0"
    struct.pack_into("!H", b, 40, internet_checksum(bytes(b[34:70])))
    struct.pack_into("!H", b, 24, internet_checksum(bytes(b[14:34])))
    return bytes(b)


def edit(frame: bytes, offset: int, value: int | bytes, *, fix: bool = False) -> bytes:
    """``frame`` with the byte(s) at ``offset`` replaced (and the checksums fixed)."""
    edited = replaced(frame, offset, value)
    return fix_checksums(edited) if fix else edited


def reason(result: Advert | Dropped | CarpFrame) -> DropReason | None:
    return result.reason if isinstance(result, Dropped) else None


# ---------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_parse_frame_fields(g: Golden) -> None:
    f = parse_frame(g.frame)
    assert isinstance(f, CarpFrame)
    assert f.eth_dst == bytes.fromhex("01005e000012")
    assert f.eth_src == bytes([0, 0, 0x5E, 0, 0, g.vhid])
    assert f.ip_id == g.ip_id
    assert f.ttl == 255
    assert f.src == g.src and f.dst == GROUP
    assert (f.version, f.type, f.vhid, f.authlen) == (2, 1, g.vhid, 7)
    assert (f.advbase, f.advskew, f.counter) == (g.advbase, g.advskew, g.counter)
    assert f.digest == g.frame[50:70]
    assert f.checksum_ok


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_decodes_for_a_peer(g: Golden) -> None:
    expected = Advert(src=g.src, advbase=g.advbase, advskew=g.advskew, counter=g.counter)
    assert peer(g).decode(g.frame) == expected


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_reencodes_to_the_same_bytes(g: Golden) -> None:
    frame = sender(g).encode(advbase=g.advbase, advskew=g.advskew, counter=g.counter, ip_id=g.ip_id)
    assert len(frame) == ADVERT_LEN == 70
    assert frame == g.frame


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_own_frame_is_dropped_by_its_sender(g: Golden) -> None:
    assert reason(sender(g).decode(g.frame)) is DropReason.OWN


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_digest_matches_independent_hmac(g: Golden) -> None:
    msg = bytes([2, 1, g.vhid]) + g.vip.packed + g.counter.to_bytes(8, "big")
    expected = hmac.new(g.password, msg, hashlib.sha1).digest()
    assert g.frame[50:70] == expected
    assert carp_digest(g.password, g.vhid, g.vip, g.counter) == expected
    assert sender(g).digest(g.counter) == expected


@settings(max_examples=200)
@given(password=st.binary(max_size=200), vhid=st.integers(0, 255),
       vip=st.builds(IPv4Address, st.integers(0, 2**32 - 1)), counter=st.integers(0, 2**64 - 1))
@example(password=b"k" * 65, vhid=1, vip=IPv4Address("192.0.2.1"), counter=1)
@example(password=b"k" * 64, vhid=1, vip=IPv4Address("192.0.2.1"), counter=1)
def test_digest_is_standard_hmac_sha1_for_any_key(
    password: bytes, vhid: int, vip: IPv4Address, counter: int
) -> None:
    """Keys longer than the SHA-1 block are hashed first, as RFC 2104 says."""
    msg = bytes([2, 1, vhid]) + vip.packed + counter.to_bytes(8, "big")
    expected = hmac.new(password, msg, hashlib.sha1).digest()
    assert carp_digest(password, vhid, vip, counter) == expected


# ---------------------------------------------------------------- gratuitous ARP

MAC = bytes.fromhex("020000c0ffee")


def test_gratuitous_arp_layout() -> None:
    vip = IPv4Address("192.0.2.100")
    frame = gratuitous_arp(MAC, vip)
    assert len(frame) == ARP_LEN == 42
    assert frame[0:6] == BROADCAST_MAC
    assert frame[6:12] == MAC
    assert frame[12:14] == b"\x08\x06"
    # htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request)
    assert frame[14:22] == bytes.fromhex("0001 0800 06 04 0001".replace(" ", ""))
    assert frame[22:28] == MAC and frame[28:32] == vip.packed  # sender
    assert frame[32:38] == MAC and frame[38:42] == vip.packed  # target


def test_gratuitous_arp_per_scapy() -> None:
    vip = IPv4Address("198.51.100.7")
    pkt = Ether(gratuitous_arp(MAC, vip))
    assert pkt.dst == "ff:ff:ff:ff:ff:ff" and pkt.src == "02:00:00:c0:ff:ee" and pkt.type == 0x0806
    arp = pkt[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
    assert arp.hwsrc == arp.hwdst == "02:00:00:c0:ff:ee"
    assert arp.psrc == arp.pdst == "198.51.100.7"


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("group", "mac"),
    [
        ("224.0.0.18", "01005e000012"),
        ("239.255.0.18", "01005e7f0012"),  # bit 23 is dropped
        ("224.128.1.2", "01005e000102"),
        ("239.127.255.255", "01005e7fffff"),
    ],
)
def test_multicast_mac(group: str, mac: str) -> None:
    assert multicast_mac(IPv4Address(group)) == bytes.fromhex(mac)


@pytest.mark.parametrize("vhid", [1, 42, 255])
def test_virtual_mac_is_ucarps_not_vrrps(vhid: int) -> None:
    assert virtual_mac(vhid) == bytes([0, 0, 0x5E, 0, 0, vhid])


def test_nomcast_sends_to_broadcast_but_ip_to_group() -> None:
    g = GOLDEN[0]
    frame = sender(g, nomcast=True).encode(advbase=1, advskew=10, counter=g.counter, ip_id=g.ip_id)
    assert frame[0:6] == BROADCAST_MAC
    assert frame[6:] == g.frame[6:]  # everything else identical, IP destination included
    assert peer(g).decode(frame) == peer(g).decode(g.frame)


def test_other_group_encodes_its_mac_and_destination() -> None:
    group = IPv4Address("239.255.0.18")
    c = AdvertCodec(vhid=11, password=b"x", vip=IPv4Address("192.0.2.1"),
                    srcip=IPv4Address("192.0.2.2"), group=group)
    frame = c.encode(advbase=1, advskew=0, counter=5, ip_id=1)
    assert frame[0:6] == bytes.fromhex("01005e7f0012")
    assert frame[30:34] == group.packed


# ---------------------------------------------------------------- scapy as an oracle

ENCODE_CASES = [
    (1, b"pw", IPv4Address("192.0.2.100"), IPv4Address("192.0.2.1"), 1, 0, 0, 0),
    (255, b"abcdefghijklmnopqrs", IPv4Address("198.51.100.9"), IPv4Address("198.51.100.2"),
     255, 255, 2**64 - 1, 0xFFFF),
    (42, b"", IPv4Address("10.0.0.100"), IPv4Address("10.0.0.1"), 3, 100, 12345, 777),
]


@pytest.mark.parametrize(
    ("vhid", "pw", "vip", "src", "advbase", "advskew", "counter", "ip_id"), ENCODE_CASES
)
def test_encoded_frame_per_scapy(
    vhid: int, pw: bytes, vip: IPv4Address, src: IPv4Address,
    advbase: int, advskew: int, counter: int, ip_id: int,
) -> None:
    codec = AdvertCodec(vhid=vhid, password=pw, vip=vip, srcip=src, group=GROUP)
    frame = codec.encode(advbase=advbase, advskew=advskew, counter=counter, ip_id=ip_id)
    pkt = Ether(frame)
    assert pkt.dst == "01:00:5e:00:00:12"
    assert pkt.src == f"00:00:5e:00:00:{vhid:02x}"
    assert pkt.type == 0x0800
    ip = pkt[IP]
    assert (ip.version, ip.ihl, ip.tos, ip.len, ip.id) == (4, 5, 0x10, 56, ip_id)
    assert ip.flags == "DF" and ip.frag == 0
    assert (ip.ttl, ip.proto) == (255, 112)
    assert (ip.src, ip.dst) == (str(src), str(GROUP))
    # scapy recomputes the header checksum when it is deleted: it must equal ours.
    sent_sum = ip.chksum
    fresh = ip.copy()
    del fresh.chksum
    assert IP(bytes(fresh)).chksum == sent_sum
    # The CARP header, built here from the definition, checksummed with scapy's RFC 1071.
    msg = bytes([2, 1, vhid]) + vip.packed + counter.to_bytes(8, "big")
    digest = hmac.new(pw, msg, hashlib.sha1).digest()
    header = struct.pack("!BBBBBBHQ", 0x21, vhid, advskew, 7, 0, advbase, 0, counter)
    carp = bytearray(header + digest)
    struct.pack_into("!H", carp, 6, scapy_checksum(bytes(carp)))
    payload = bytes(ip.payload)
    assert payload == bytes(carp)
    assert scapy_checksum(payload) == 0


@settings(max_examples=200)
@given(st.binary(max_size=120))
def test_internet_checksum_agrees_with_scapy(data: bytes) -> None:
    assert internet_checksum(data) == scapy_checksum(data)


# ---------------------------------------------------------------- receive checks

V = GOLDEN[0]


def test_too_short_then_bogus_size_at_every_length() -> None:
    """ucarp drops ``caplen <= 14 + 20`` silently, then says "Bogus size" below 14 + 20 + 36."""
    p = peer(V)
    for n in range(ADVERT_LEN):
        want = DropReason.TOO_SHORT if n <= 34 else DropReason.BOGUS_SIZE
        assert reason(parse_frame(V.frame[:n])) is want, n
        assert reason(p.decode(V.frame[:n])) is want, n
    assert "Bogus size: caplen=[55], ip_len=[20] ch_len=[36]" == _msg(p.decode(V.frame[:69]))
    assert isinstance(p.decode(V.frame), Advert)


def _msg(r: Advert | Dropped) -> str:
    assert isinstance(r, Dropped)
    return r.message


def test_trailing_bytes_are_ignored() -> None:
    assert peer(V).decode(V.frame + b"\0" * 4) == peer(V).decode(V.frame)


def test_not_ipv4() -> None:
    assert reason(peer(V).decode(edit(V.frame, 12, b"\x86\xdd"))) is DropReason.NOT_IPV4
    assert reason(peer(V).decode(edit(V.frame, 14, 0x65))) is DropReason.NOT_IPV4


def test_not_carp() -> None:
    r = peer(V).decode(edit(V.frame, 23, 17, fix=True))
    assert reason(r) is DropReason.NOT_CARP and "17" in _msg(r)


def test_bogus_header_length() -> None:
    for vhl in (0x46, 0x4F, 0x44, 0x40):  # options that do not fit, or shorter than 20 bytes
        assert reason(peer(V).decode(edit(V.frame, 14, vhl))) is DropReason.BOGUS_SIZE, hex(vhl)


def test_ip_options_are_skipped() -> None:
    """ucarp finds the CARP header at ip_hl * 4: a header with options still authenticates."""
    b = bytearray(V.frame[:34] + b"\x01\x01\x01\x01" + V.frame[34:])
    b[14] = 0x46
    struct.pack_into("!H", b, 16, 60)
    b[24:26] = b"\0\0"
    struct.pack_into("!H", b, 24, internet_checksum(bytes(b[14:38])))
    assert peer(V).decode(bytes(b)) == peer(V).decode(V.frame)


@pytest.mark.parametrize("ttl", [0, 1, 64, 254])
def test_bad_ttl(ttl: int) -> None:
    r = peer(V).decode(edit(V.frame, 22, ttl, fix=True))
    assert reason(r) is DropReason.BAD_TTL and _msg(r) == f"Bad TTL: [{ttl}]"


@pytest.mark.parametrize("version", [0, 1, 3, 15])
def test_bad_version(version: int) -> None:
    r = peer(V).decode(edit(V.frame, 34, (version << 4) | 1, fix=True))
    assert reason(r) is DropReason.BAD_VERSION and _msg(r) == f"Bad version: [{version}]"


def test_other_vhid_even_when_valid_for_it() -> None:
    other = sender(V, vhid=43).encode(advbase=1, advskew=0, counter=1, ip_id=1)
    r = peer(V).decode(other)
    assert reason(r) is DropReason.OTHER_VHID and _msg(r) == "Ignoring vhid: [43]"


def test_other_group() -> None:
    other = sender(V, group=IPv4Address("224.0.0.19")).encode(
        advbase=1, advskew=0, counter=1, ip_id=1
    )
    assert reason(peer(V).decode(other)) is DropReason.OTHER_GROUP
    assert reason(peer(V, group=IPv4Address("224.0.0.19")).decode(other)) is None


def test_other_group_message_is_ucarps() -> None:
    other = sender(V, group=IPv4Address("224.0.0.19")).encode(
        advbase=1, advskew=0, counter=1, ip_id=1
    )
    assert _msg(peer(V).decode(other)) == "Ignoring different multicast ip: [224.0.0.19]"


def test_bad_checksum() -> None:
    r = peer(V).decode(edit(V.frame, 40, b"\x00\x00"))
    assert reason(r) is DropReason.BAD_CHECKSUM and _msg(r) == "Bad IP checksum"


def test_bad_digest_wrong_password_or_vip() -> None:
    for codec in (peer(V, password=b"lov"), peer(V, password=b"love "),
                  peer(V, vip=IPv4Address("10.0.0.101"))):
        r = codec.decode(V.frame)
        assert reason(r) is DropReason.BAD_DIGEST
        expected = codec.digest(V.counter)
        assert _msg(r) == (
            f"Bad digest - md2=[{expected[:4].hex()}...] md=[8137d9f5...]"
            " - Check vhid, password and virtual IP address"
        )


def test_wrong_vhid_reports_vhid_before_digest() -> None:
    assert reason(peer(V, vhid=41).decode(V.frame)) is DropReason.OTHER_VHID


def test_digest_covers_vhid_vip_counter_not_advbase_or_skew() -> None:
    """ucarp's HMAC covers only version, type, vhid, VIP and counter."""
    p = peer(V)
    for off, val in ((36, 200), (39, 9), (37, 3), (38, 1)):  # advskew, advbase, authlen, pad
        assert isinstance(p.decode(edit(V.frame, off, val, fix=True)), Advert), off
    assert p.decode(edit(V.frame, 36, 200, fix=True)) == Advert(V.src, 1, 200, V.counter)
    for off in range(42, 70):  # counter and digest bytes
        flipped = edit(V.frame, off, V.frame[off] ^ 0x01, fix=True)
        assert reason(p.decode(flipped)) is DropReason.BAD_DIGEST, off


def test_leave_advert_flag() -> None:
    assert Advert(V.src, 255, 255, 0).is_leave
    assert not Advert(V.src, 255, 254, 0).is_leave and not Advert(V.src, 1, 255, 0).is_leave


def test_own_source() -> None:
    assert reason(sender(V).decode(V.frame)) is DropReason.OWN


def test_checks_run_in_ucarps_order() -> None:
    """Fix one defect at a time: the reason reported walks down ucarp's list."""
    p = peer(V)
    b = bytearray(V.frame)
    b[22] = 64  # TTL
    b[34] = 0x31  # version 3
    b[35] = 43  # vhid
    b[30:34] = IPv4Address("224.0.0.19").packed  # group
    b[40] ^= 0xFF  # checksum (also wrong for every edit above)
    b[50] ^= 0xFF  # digest
    steps: list[tuple[DropReason, int, bytes]] = [
        (DropReason.BAD_TTL, 22, bytes([255])),
        (DropReason.BAD_VERSION, 34, bytes([0x21])),
        (DropReason.OTHER_VHID, 35, bytes([42])),
        (DropReason.OTHER_GROUP, 30, GROUP.packed),
    ]
    for want, off, fix in steps:
        assert reason(p.decode(bytes(b))) is want
        b[off : off + len(fix)] = fix
    assert reason(p.decode(bytes(b))) is DropReason.BAD_CHECKSUM
    b = bytearray(fix_checksums(bytes(b)))
    assert reason(p.decode(bytes(b))) is DropReason.BAD_DIGEST
    b[50] ^= 0xFF
    assert isinstance(p.decode(fix_checksums(bytes(b))), Advert)


def _expected_for_flip(off: int, flipped: int) -> set[DropReason | None]:
    """What ucarp's checks make of a valid frame whose byte ``off`` became ``flipped``."""
    if off < 12:  # MAC addresses are not looked at
        return {None}
    if off in (12, 13):
        return {DropReason.NOT_IPV4}
    if off == 14:
        return {DropReason.NOT_IPV4} if (flipped >> 4) != 4 else {DropReason.BOGUS_SIZE}
    if off == 22:
        return {DropReason.BAD_TTL}
    if off == 23:
        return {DropReason.NOT_CARP}
    if 30 <= off < 34:
        return {DropReason.OTHER_GROUP}
    if off == 34:
        return {DropReason.BAD_VERSION} if (flipped >> 4) != 2 else {DropReason.BAD_CHECKSUM}
    if off == 35:
        return {DropReason.OTHER_VHID}
    # tos, length, id, offset, checksum, source, type, skew, authlen, pad, base, sum, counter, md
    return {DropReason.BAD_CHECKSUM}


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
@pytest.mark.parametrize("mask", [0x01, 0x10, 0x80, 0xFF])
def test_every_single_byte_flip(g: Golden, mask: int) -> None:
    p = peer(g)
    for off in range(ADVERT_LEN):
        flipped = g.frame[off] ^ mask
        got = reason(p.decode(edit(g.frame, off, flipped)))
        assert got in _expected_for_flip(off, flipped), (off, mask, got)


# ---------------------------------------------------------------- property tests

addresses = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
passwords = st.binary(max_size=19)
u8 = st.integers(0, 255)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    vhid=st.integers(1, 255), advbase=u8, advskew=u8, counter=st.integers(0, 2**64 - 1),
    ip_id=st.integers(0, 0xFFFF), password=passwords, vip=addresses, src=addresses,
    group=addresses, nomcast=st.booleans(),
)
def test_decode_encode_roundtrip(
    vhid: int, advbase: int, advskew: int, counter: int, ip_id: int, password: bytes,
    vip: IPv4Address, src: IPv4Address, group: IPv4Address, nomcast: bool,
) -> None:
    kw: dict[str, Any] = dict(vhid=vhid, password=password, vip=vip, group=group, nomcast=nomcast)
    frame = AdvertCodec(srcip=src, **kw).encode(
        advbase=advbase, advskew=advskew, counter=counter, ip_id=ip_id
    )
    other = IPv4Address((int(src) + 1) % 2**32)
    assert AdvertCodec(srcip=other, **kw).decode(frame) == Advert(src, advbase, advskew, counter)
    f = parse_frame(frame)
    assert isinstance(f, CarpFrame) and f.ip_id == ip_id and f.checksum_ok
    own = Dropped(DropReason.OWN, "Own advertisement")
    assert AdvertCodec(srcip=src, **kw).decode(frame) == own


def _ucarp_cksum(data: bytes) -> int:
    """carp.c's cksum(): 16-bit words summed with an end-around carry at every step."""
    total = 0
    for i in range(0, len(data) - 1, 2):
        total += (data[i] << 8) | data[i + 1]
        if total > 0xFFFF:
            total = (total & 0xFFFF) + 1
    if len(data) % 2:
        total += data[-1] << 8
        if total > 0xFFFF:
            total = (total & 0xFFFF) + 1
    return ~total & 0xFFFF


@settings(max_examples=300)
@given(
    vhid=st.integers(1, 255), advbase=u8, advskew=u8, counter=st.integers(0, 2**64 - 1),
    ip_id=st.integers(0, 0xFFFF), password=passwords, vip=addresses, src=addresses, group=addresses,
)
def test_ip_checksum_equals_ucarps_over_ip_and_carp_headers(
    vhid: int, advbase: int, advskew: int, counter: int, ip_id: int, password: bytes,
    vip: IPv4Address, src: IPv4Address, group: IPv4Address,
) -> None:
    """carp_send_ad sums the IP header *and* the CARP header (ip_len = 56) into ip_sum;
    the CARP part sums to zero, so a standard 20-byte header checksum must give the same."""
    frame = AdvertCodec(vhid=vhid, password=password, vip=vip, srcip=src, group=group).encode(
        advbase=advbase, advskew=advskew, counter=counter, ip_id=ip_id)
    assert _ucarp_cksum(frame[34:70]) == 0
    zeroed = frame[14:24] + b"\0\0" + frame[26:70]
    assert frame[24:26] == _ucarp_cksum(zeroed).to_bytes(2, "big")
    assert _ucarp_cksum(frame[14:70]) == 0  # ucarp's receive check


@settings(max_examples=500)
@given(st.binary(max_size=200))
@example(b"")
@example(V.frame[:35])
@example(V.frame[:14] + b"\x40" + V.frame[15:])
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    judged_without_raising(data)


@settings(max_examples=500)
@given(mutated([g.frame for g in GOLDEN]))
def test_mutated_frames_never_raise(frame: bytes) -> None:
    judged_without_raising(frame)


@settings(max_examples=300)
@given(g=st.sampled_from(GOLDEN), off=st.integers(42, 69), mask=st.integers(1, 255),
       fix=st.booleans())
def test_flipped_counter_or_digest_is_always_rejected(
    g: Golden, off: int, mask: int, fix: bool
) -> None:
    """Caught by the checksum, or (checksums recomputed) by the HMAC."""
    r = peer(g).decode(edit(g.frame, off, g.frame[off] ^ mask, fix=fix))
    assert reason(r) is (DropReason.BAD_DIGEST if fix else DropReason.BAD_CHECKSUM)


# ---------------------------------------------------------------- known deviations


def test_own_source_is_checked_before_protocol_and_size() -> None:
    s = sender(V)
    assert reason(s.decode(V.frame[:60])) is DropReason.OWN
    assert reason(s.decode(edit(V.frame, 23, 17))) is DropReason.OWN


# ---------------------------------------------------------------- frames of the real C ucarp


def _load_vectors() -> dict[str, Any] | None:
    if not VECTORS_FILE.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(VECTORS_FILE.read_text())
    except ValueError:  # being rewritten right now
        return None
    return data


_VECTORS = _load_vectors()
_CONFIGS: list[dict[str, Any]] = list((_VECTORS or {}).get("vectors", []))
needs_vectors = pytest.mark.skipif(_VECTORS is None, reason=f"{VECTORS_FILE.name} is absent")


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _codecs(cfg: dict[str, Any]) -> tuple[AdvertCodec, AdvertCodec]:
    c = cfg["config"]
    kw: dict[str, Any] = dict(
        vhid=c["vhid"], password=bytes.fromhex(c["password_hex"]), vip=IPv4Address(c["vip"]),
        group=IPv4Address(c.get("group", "224.0.0.18")), nomcast=bool(c.get("nomcast", False)),
    )
    src = IPv4Address(c["srcip"])
    return AdvertCodec(srcip=src, **kw), AdvertCodec(srcip=IPv4Address(int(src) + 1), **kw)


@needs_vectors
@pytest.mark.parametrize(
    "cfg", _CONFIGS, ids=[v.get("name", str(i)) for i, v in enumerate(_CONFIGS)]
)
def test_cucarp_captures(cfg: dict[str, Any]) -> None:
    c = cfg["config"]
    own, other = _codecs(cfg)
    vip = IPv4Address(c["vip"])
    adverts = arps = 0
    for fr in cfg["frames"]:
        frame = bytes.fromhex(fr["hex"])
        if fr["kind"] == "arp":
            arps += 1
            assert frame == gratuitous_arp(_mac(cfg["mac"]), vip)
            continue
        adverts += 1
        f = parse_frame(frame)
        assert isinstance(f, CarpFrame)
        got = other.decode(frame)
        assert got == Advert(IPv4Address(c["srcip"]), c["advbase"], c["advskew"], f.counter)
        encoded = own.encode(advbase=c["advbase"], advskew=c["advskew"], counter=f.counter,
                             ip_id=f.ip_id)
        assert encoded == frame
    assert adverts > 0 and arps > 0


@needs_vectors
def test_cucarp_pair_frames() -> None:
    pair = (_VECTORS or {}).get("pair")
    if not pair:
        pytest.skip("no pair capture")
    c = pair["config"]
    kw: dict[str, Any] = dict(vhid=c["vhid"], password=bytes.fromhex(c["password_hex"]),
                              vip=IPv4Address(c["vip"]), group=GROUP)
    listener = AdvertCodec(srcip=IPv4Address("192.0.2.254"), **kw)
    for fr in pair["frames"]:
        frame = bytes.fromhex(fr["hex"])
        who = c[fr["from"]]
        if fr["kind"] == "arp":
            assert frame == gratuitous_arp(_mac(who["mac"]), IPv4Address(c["vip"]))
            continue
        f = parse_frame(frame)
        assert isinstance(f, CarpFrame)
        src = IPv4Address(who["srcip"])
        assert listener.decode(frame) == Advert(src, c["advbase"], who["advskew"], f.counter)
        mine = AdvertCodec(srcip=IPv4Address(who["srcip"]), **kw)
        encoded = mine.encode(advbase=f.advbase, advskew=f.advskew, counter=f.counter,
                              ip_id=f.ip_id)
        assert encoded == frame
