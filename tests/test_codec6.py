"""CARP over IPv6 (pyucarp/core/codec6.py) against oracles built without the codec.

Independent oracles: frames assembled with scapy (Ethernet, IPv6, Neighbour Advertisement
and its option) around CARP headers packed here with struct; HMACs computed with hmac and
hashlib over the byte string of docs/compat.md §10, whose address selection is redone here
the way the BSD kernels' ``carp_hmac_prepare`` loop does it; checksums from scapy. No
capture of a BSD kernel is involved: the golden frames are computed from the definitions.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from mutations import mutated, replaced
from pyucarp.core.codec import Dropped, DropReason
from pyucarp.core.codec6 import (
    ADVERT6_LEN,
    CARP6_GROUP,
    NA_LEN,
    Advert6,
    AdvertCodec6,
    CarpFrame6,
    carp6_digest,
    carp6_digest_input,
    ipv6_multicast_mac,
    is_scope_embedded,
    neighbour_advertisement,
    parse_frame6,
    tie_value6,
)

SOURCE_ROOT = Path(__file__).resolve().parent.parent
A6 = IPv6Address


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("·", ""))


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


# ---------------------------------------------------------------- the oracle


def carp_header(password: bytes, vhid: int, hashed: bytes, advbase: int, advskew: int,
                counter: int, *, version_type: int = 0x21, demote: int = 0) -> bytes:
    """36 CARP bytes from the definition: struct, hmac/hashlib and scapy's RFC 1071 sum.

    ``hashed``: the address bytes between the vhid and the counter in the HMAC message.
    """
    msg = bytes([2, 1, vhid]) + hashed + counter.to_bytes(8, "big")
    digest = hmac.new(password, msg, hashlib.sha1).digest()
    head = struct.pack("!BBBBBBHQ", version_type, vhid, advskew, 7, demote, advbase, 0, counter)
    carp = bytearray(head + digest)
    struct.pack_into("!H", carp, 6, scapy_checksum(bytes(carp)))
    return bytes(carp)


def scapy_frame(eth_dst: str, eth_src: str, src: IPv6Address, dst: IPv6Address, carp: bytes,
                *, tc: int = 0) -> bytes:
    """Ethernet and IPv6 headers by scapy around ``carp``."""
    pkt = Ether(dst=eth_dst, src=eth_src) / IPv6(
        src=str(src), dst=str(dst), nh=112, hlim=255, tc=tc, fl=0
    ) / Raw(carp)
    return bytes(pkt)


def bsd_selection(addresses: list[bytes]) -> bytes:
    """carp_hmac_prepare's loop: repeatedly hash the smallest address greater than the last
    one hashed, starting above all-zero and staying below all-ones (memcmp order)."""
    width = len(addresses[0]) if addresses else 16
    out = b""
    last = bytes(width)
    while True:
        cur = b"\xff" * width
        found = False
        for a in addresses:
            if last < a < cur:
                cur, found = a, True
        if not found:
            return out
        out += cur
        last = cur


def bsd_hash_input(vhid: int, vips: list[IPv6Address], *, link_local: bool = False,
                   ipv4: list[IPv4Address] | None = None) -> bytes:
    """The HMAC message before the counter, the BSD way (HMAC_NOV6LL unless link_local)."""
    six = []
    for a in vips:
        p = a.packed
        # IN6_IS_SCOPE_EMBED, spelled from its definition: fe80::/10, ffx1::, ffx2::
        embedded = (p[0] == 0xFE and p[1] & 0xC0 == 0x80) or (p[0] == 0xFF and p[1] & 0xF in (1, 2))
        if embedded:
            if not link_local:
                continue
            p = p[:2] + b"\0\0" + p[4:]
        six.append(p)
    four = [a.packed for a in ipv4 or []]
    return bytes([2, 1, vhid]) + bsd_selection(four) + bsd_selection(six)


# ---------------------------------------------------------------- golden vectors


@dataclass(frozen=True)
class Golden:
    """A reference frame and everything that produced it."""

    password: bytes
    vhid: int
    vips: tuple[IPv6Address, ...]
    hashed: bytes  # what the HMAC covers between vhid and counter, written out by hand
    src: IPv6Address
    eth_src: bytes
    advbase: int
    advskew: int
    counter: int
    frame: bytes
    peer: IPv6Address | None = None
    peer_mac: bytes | None = None


GOLDEN = [
    # OpenBSD-like: link-local source, the virtual router MAC as Ethernet source.
    Golden(
        b"love", 42, (A6("2001:db8:10::100"),), _hex("20010db8001000000000000000000100"),
        A6("fe80::200:ff:fe00:1"), _mac("00:00:5e:00:01:2a"), 1, 10, 0x880DEABA87C47333,
        _hex(
            "333300000012 00005e00012a 86dd · 60000000 0024 70 ff "
            "fe800000000000000200 00fffe000001 ff020000000000000000000000000012 · "
            "21 2a 0a 07 00 01 30c3 880deaba87c47333 d880756c934853adbf4b354ecca9ffd024381c1a"
        ),
    ),
    # Unsorted VIPs with a link-local one: hashed sorted, the link-local one left out.
    Golden(
        b"s3cret", 7, (A6("2001:db8::b"), A6("2001:db8::a"), A6("fe80::1")),
        _hex("20010db800000000000000000000000a 20010db800000000000000000000000b"),
        A6("2001:db8::2"), _mac("00:00:5e:00:01:07"), 1, 0, 0x432B2AE7B4517AEC,
        _hex(
            "333300000012 00005e000107 86dd · 60000000 0024 70 ff "
            "20010db8000000000000000000000002 ff020000000000000000000000000012 · "
            "21 07 00 07 00 01 35ad 432b2ae7b4517aec 7ee96b15c069986875fae8e953250bcddd052e45"
        ),
    ),
    # FreeBSD's unicast mode: to the peer's address and MAC.
    Golden(
        b"peer", 200, (A6("2001:db8:5::1"),), _hex("20010db8000500000000000000000001"),
        A6("2001:db8:5::2"), _mac("02:00:00:00:00:02"), 2, 100, 1,
        _hex(
            "020000000003 020000000002 86dd · 60000000 0024 70 ff "
            "20010db8000500000000000000000002 20010db8000500000000000000000003 · "
            "21 c8 64 07 00 02 cc2b 0000000000000001 030c50f317e4da88f5de5c56b0aa012915e84da4"
        ),
        peer=A6("2001:db8:5::3"), peer_mac=_mac("02:00:00:00:00:03"),
    ),
]
GOLDEN_IDS = ["love-vhid42", "s3cret-vhid7-sorted", "peer-vhid200-unicast"]
MULTICAST = GOLDEN[:2]


def sender(g: Golden, **over: Any) -> AdvertCodec6:
    """The codec of the node that sent ``g``."""
    kw: dict[str, Any] = dict(vhid=g.vhid, password=g.password, vips=g.vips, srcip=g.src,
                              eth_src=g.eth_src, peer=g.peer, peer_mac=g.peer_mac)
    kw.update(over)
    return AdvertCodec6(**kw)


def receiver(g: Golden, **over: Any) -> AdvertCodec6:
    """Another node of the same virtual host: the peer itself in unicast mode."""
    mac = _mac("02:00:00:00:00:99")
    if g.peer is not None:
        kw: dict[str, Any] = dict(srcip=g.peer, eth_src=mac, peer=g.src, peer_mac=g.eth_src)
    else:
        kw = dict(srcip=A6(int(g.src) + 1), eth_src=mac)
    kw.update(over)
    return sender(g, **kw)


def judged_without_raising(frame: bytes) -> None:
    """``frame`` parses, and every golden vhid's sender and receiver decode it, to a record
    or a Dropped."""
    assert isinstance(parse_frame6(frame), (CarpFrame6, Dropped))
    for g in GOLDEN:
        assert isinstance(receiver(g).decode(frame), (Advert6, Dropped))
        assert isinstance(sender(g).decode(frame), (Advert6, Dropped))


def oracle(g: Golden) -> bytes:
    carp = carp_header(g.password, g.vhid, g.hashed, g.advbase, g.advskew, g.counter)
    if g.peer is None:
        return scapy_frame("33:33:00:00:00:12", _mac_text(g.eth_src), g.src, CARP6_GROUP, carp)
    assert g.peer_mac is not None
    return scapy_frame(_mac_text(g.peer_mac), _mac_text(g.eth_src), g.src, g.peer, carp)


def reason(result: Advert6 | Dropped | CarpFrame6) -> DropReason | None:
    return result.reason if isinstance(result, Dropped) else None


def _msg(result: Advert6 | Dropped) -> str:
    assert isinstance(result, Dropped), result
    return result.message


def fix_checksum(frame: bytes) -> bytes:
    """Recompute the CARP checksum (the IPv6 header has none)."""
    b = bytearray(frame)
    b[60:62] = b"\0\0"
    struct.pack_into("!H", b, 60, scapy_checksum(bytes(b[54:90])))
    return bytes(b)


def edit(frame: bytes, offset: int, value: int | bytes, *, fix: bool = False) -> bytes:
    """``frame`` with the byte(s) at ``offset`` replaced (and the checksum fixed)."""
    edited = replaced(frame, offset, value)
    return fix_checksum(edited) if fix else edited


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_frame_is_the_oracles(g: Golden) -> None:
    """The literal vectors (also in docs/compat.md §10) are what scapy + hmac build."""
    assert oracle(g) == g.frame
    assert len(g.frame) == ADVERT6_LEN == 90


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_encodes_to_the_same_bytes(g: Golden) -> None:
    frame = sender(g).encode(advbase=g.advbase, advskew=g.advskew, counter=g.counter)
    assert frame == g.frame


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_decodes_for_a_peer(g: Golden) -> None:
    assert receiver(g).decode(g.frame) == Advert6(g.src, g.advbase, g.advskew, g.counter, 0)


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_own_frame_is_dropped_by_its_sender(g: Golden) -> None:
    assert sender(g).decode(g.frame) == Dropped(DropReason.OWN, "Own advertisement")


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_digest_is_hmac_over_the_documented_bytes(g: Golden) -> None:
    assert carp6_digest_input(g.vhid, g.vips) == bytes([2, 1, g.vhid]) + g.hashed
    assert bsd_hash_input(g.vhid, list(g.vips)) == bytes([2, 1, g.vhid]) + g.hashed
    msg = bytes([2, 1, g.vhid]) + g.hashed + g.counter.to_bytes(8, "big")
    expected = hmac.new(g.password, msg, hashlib.sha1).digest()
    assert g.frame[70:90] == expected
    assert carp6_digest(g.password, g.vhid, g.vips, g.counter) == expected
    assert sender(g).digest(g.counter) == expected


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
def test_golden_per_scapy_and_parse_frame6(g: Golden) -> None:
    pkt = Ether(g.frame)
    ip = pkt[IPv6]
    dst = CARP6_GROUP if g.peer is None else g.peer
    assert pkt.type == 0x86DD and pkt.src == _mac_text(g.eth_src)
    assert pkt.dst == ("33:33:00:00:00:12" if g.peer is None else _mac_text(g.peer_mac or b""))
    assert (ip.version, ip.tc, ip.fl, ip.plen, ip.nh, ip.hlim) == (6, 0, 0, 36, 112, 255)
    assert (A6(ip.src), A6(ip.dst)) == (g.src, dst)
    assert scapy_checksum(bytes(ip.payload)) == 0  # over the 36 CARP bytes, no pseudo-header
    f = parse_frame6(g.frame)
    assert isinstance(f, CarpFrame6)
    assert (f.eth_dst, f.eth_src) == (g.frame[0:6], g.eth_src)
    assert (f.traffic_class, f.flow_label, f.payload_length, f.hop_limit) == (0, 0, 36, 255)
    assert (f.src, f.dst) == (g.src, dst)
    assert (f.version, f.type, f.vhid, f.authlen, f.demote) == (2, 1, g.vhid, 7, 0)
    assert (f.advbase, f.advskew, f.counter) == (g.advbase, g.advskew, g.counter)
    assert f.digest == g.frame[70:90] and f.checksum_ok


# ---------------------------------------------------------------- the HMAC input


def test_digest_input_sorts_deduplicates_and_leaves_link_local_out() -> None:
    vips = [A6("2001:db8::2"), A6("fe80::1"), A6("2001:db8::1"), A6("2001:db8::2")]
    assert carp6_digest_input(5, vips) == _hex(
        "020105 20010db8000000000000000000000001 20010db8000000000000000000000002"
    )


def test_digest_input_with_link_local_clears_bytes_2_and_3_and_sorts_them_in() -> None:
    """HMAC_ORIG: the KAME scope bytes cleared (fe80:7::1 hashes as fe80::1), then sorted."""
    vips = [A6("fe80:7::1"), A6("2001:db8::1"), A6("fe80::1"), A6("fe80::2")]
    assert carp6_digest_input(5, vips, link_local=True) == _hex(
        "020105 20010db8000000000000000000000001"
        " fe800000000000000000000000000001 fe800000000000000000000000000002"
    )


def test_digest_input_ipv4_first_then_ipv6() -> None:
    got = carp6_digest_input(
        9, [A6("2001:db8::1")], ipv4=[IPv4Address("192.0.2.10"), IPv4Address("10.0.0.1")]
    )
    assert got == _hex("020109 0a000001 c000020a 20010db8000000000000000000000001")


def test_digest_input_never_hashes_all_zero_or_all_ones() -> None:
    """The BSD loop starts above 0 and below all-ones: neither can be picked."""
    vips = [A6("::"), A6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), A6("::1")]
    assert carp6_digest_input(1, vips) == _hex("020101 00000000000000000000000000000001")
    assert carp6_digest_input(
        1, [], ipv4=[IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255")]) == _hex("020101")


def test_digest_input_vhid_is_one_byte() -> None:
    assert carp6_digest_input(256 + 3, [])[2] == 3


@pytest.mark.parametrize(
    ("address", "embedded"),
    [("fe80::1", True), ("febf:ffff::1", True), ("fec0::1", False), ("fe7f::1", False),
     ("ff02::1", True), ("ff01::1", True), ("ff12::1", True), ("ff05::1", False),
     ("2001:db8::1", False), ("::1", False)],
)
def test_scope_embedded_is_kames_definition(address: str, embedded: bool) -> None:
    assert is_scope_embedded(A6(address)) is embedded


v6_any = st.builds(A6, st.integers(0, 2**128 - 1))
v6_link_local = st.builds(lambda low: A6((0xFE80 << 112) | low), st.integers(0, 2**112 - 1))
v6_edges = st.sampled_from([A6("::"), A6("::1"), A6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                            A6("fe80::"), A6("ff02::12"), A6("2001:db8::1")])
v6_addresses = st.one_of(v6_any, v6_link_local, v6_edges)
v4_addresses = st.one_of(st.builds(IPv4Address, st.integers(0, 2**32 - 1)),
                         st.sampled_from([IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255")]))


@settings(max_examples=300)
@given(vhid=st.integers(0, 255), vips=st.lists(v6_addresses, max_size=6),
       ipv4=st.lists(v4_addresses, max_size=3), link_local=st.booleans(),
       password=st.binary(max_size=19), counter=st.integers(0, 2**64 - 1))
@example(vhid=1, vips=[A6("fe80::1"), A6("fe80:9::1")], ipv4=[], link_local=True,
         password=b"x", counter=0)
def test_digest_input_is_the_bsd_selection_loop(
    vhid: int, vips: list[IPv6Address], ipv4: list[IPv4Address], link_local: bool,
    password: bytes, counter: int,
) -> None:
    expected = bsd_hash_input(vhid, vips, link_local=link_local, ipv4=ipv4)
    assert carp6_digest_input(vhid, vips, link_local=link_local, ipv4=ipv4) == expected
    mac = hmac.new(password, expected + counter.to_bytes(8, "big"), hashlib.sha1).digest()
    assert carp6_digest(password, vhid, vips, counter, link_local=link_local, ipv4=ipv4) == mac


@settings(max_examples=100)
@given(password=st.binary(min_size=65, max_size=200), counter=st.integers(0, 2**64 - 1))
def test_digest_of_a_long_key_is_standard_hmac(password: bytes, counter: int) -> None:
    """Over 64 bytes RFC 2104 hashes the key first (the BSDs take 19 at most: moot there)."""
    vips = [A6("2001:db8::1")]
    msg = bsd_hash_input(3, vips) + counter.to_bytes(8, "big")
    expected = hmac.new(password, msg, hashlib.sha1).digest()
    assert carp6_digest(password, 3, vips, counter) == expected


LL_VIPS = (A6("2001:db8:1::1"), A6("fe80::1"))


def _ll_codec(srcip: str, **over: Any) -> AdvertCodec6:
    kw: dict[str, Any] = dict(vhid=3, password=b"pw", vips=LL_VIPS, srcip=A6(srcip),
                              eth_src=_mac("02:00:00:00:00:01"))
    kw.update(over)
    return AdvertCodec6(**kw)


def test_both_digest_forms_are_accepted_and_the_openbsd_one_is_sent() -> None:
    """OpenBSD sends HMAC_NOV6LL and verifies against both; FreeBSD's only form is ORIG."""
    nov6ll = bsd_hash_input(3, list(LL_VIPS))
    orig = bsd_hash_input(3, list(LL_VIPS), link_local=True)
    assert nov6ll != orig
    counter = 77
    for flag, hashed in ((False, nov6ll), (True, orig)):
        frame = _ll_codec("fe80::a", hmac_link_local=flag).encode(
            advbase=1, advskew=0, counter=counter)
        want = hmac.new(b"pw", hashed + counter.to_bytes(8, "big"), hashlib.sha1).digest()
        assert frame[70:90] == want, flag
        for receiving in (False, True):
            got = _ll_codec("fe80::b", hmac_link_local=receiving).decode(frame)
            assert got == Advert6(A6("fe80::a"), 1, 0, counter), (flag, receiving)
    # A third form (another VIP set) is refused.
    wrong = _ll_codec("fe80::a", vips=(A6("2001:db8:1::2"),)).encode(
        advbase=1, advskew=0, counter=counter)
    assert reason(_ll_codec("fe80::b").decode(wrong)) is DropReason.BAD_DIGEST


def test_ipv4_vips_enter_the_digest() -> None:
    dual = _ll_codec("fe80::a", ipv4_vips=(IPv4Address("192.0.2.1"),))
    frame = dual.encode(advbase=1, advskew=0, counter=1)
    assert reason(_ll_codec("fe80::b").decode(frame)) is DropReason.BAD_DIGEST
    both = _ll_codec("fe80::b", ipv4_vips=(IPv4Address("192.0.2.1"),))
    assert isinstance(both.decode(frame), Advert6)


# ---------------------------------------------------------------- Neighbour Advertisement

NA_MAC = _mac("02:00:00:c0:ff:ee")
NA_VIP = A6("2001:db8:10::100")
NA_SRC = A6("fe80::ff:fec0:ffee")
NA_GOLDEN = _hex(
    "333300000001 020000c0ffee 86dd · 60000000 0020 3a ff fe80000000000000000000fffec0ffee "
    "ff020000000000000000000000000001 · 88 00 26f8 20000000 20010db8001000000000000000000100 "
    "02 01 020000c0ffee"
)


def scapy_na(mac: bytes, vip: IPv6Address, src: IPv6Address, router: bool = False) -> bytes:
    pkt = Ether(dst="33:33:00:00:00:01", src=_mac_text(mac)) / IPv6(
        src=str(src), dst="ff02::1", hlim=255
    ) / ICMPv6ND_NA(R=int(router), S=0, O=1, tgt=str(vip)) / ICMPv6NDOptDstLLAddr(
        lladdr=_mac_text(mac))
    return bytes(pkt)


def test_na_golden() -> None:
    assert scapy_na(NA_MAC, NA_VIP, NA_SRC) == NA_GOLDEN
    assert neighbour_advertisement(NA_MAC, NA_VIP, NA_SRC) == NA_GOLDEN
    assert len(NA_GOLDEN) == NA_LEN == 86


def _check_na_per_scapy(frame: bytes, mac: bytes, vip: IPv6Address, src: IPv6Address,
                        router: bool) -> None:
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src, pkt.type) == ("33:33:00:00:00:01", _mac_text(mac), 0x86DD)
    ip = pkt[IPv6]
    assert (ip.version, ip.tc, ip.fl, ip.plen, ip.nh, ip.hlim) == (6, 0, 0, 32, 58, 255)
    assert (A6(ip.src), A6(ip.dst)) == (src, A6("ff02::1"))
    na = pkt[ICMPv6ND_NA]
    assert (na.type, na.code, na.R, na.S, na.O, na.res) == (136, 0, int(router), 0, 1, 0)
    assert A6(na.tgt) == vip
    opt = pkt[ICMPv6NDOptDstLLAddr]
    assert (opt.type, opt.len, opt.lladdr) == (2, 1, _mac_text(mac))
    # scapy computes the checksum over its own IPv6 pseudo-header when it is left unset.
    sent = na.cksum
    fresh = pkt.copy()
    del fresh[ICMPv6ND_NA].cksum
    assert Ether(bytes(fresh))[ICMPv6ND_NA].cksum == sent


def test_na_per_scapy() -> None:
    _check_na_per_scapy(neighbour_advertisement(NA_MAC, NA_VIP, NA_SRC), NA_MAC, NA_VIP,
                        NA_SRC, False)


def test_na_router_flag_on_request_only() -> None:
    plain = neighbour_advertisement(NA_MAC, NA_VIP, NA_SRC)
    routed = neighbour_advertisement(NA_MAC, NA_VIP, NA_SRC, router=True)
    assert plain[58] == 0x20 and routed[58] == 0xA0  # Override; Router + Override
    assert routed == scapy_na(NA_MAC, NA_VIP, NA_SRC, router=True)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(mac=st.binary(min_size=6, max_size=6), vip=v6_any, src=st.one_of(v6_link_local, v6_any),
       router=st.booleans())
def test_na_agrees_with_scapy(mac: bytes, vip: IPv6Address, src: IPv6Address,
                              router: bool) -> None:
    frame = neighbour_advertisement(mac, vip, src, router=router)
    assert frame == scapy_na(mac, vip, src, router)
    _check_na_per_scapy(frame, mac, vip, src, router)


@pytest.mark.parametrize("mac", [b"", b"\x02" * 5, b"\x02" * 7])
def test_na_refuses_a_bad_mac(mac: bytes) -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        neighbour_advertisement(mac, NA_VIP, NA_SRC)


# ---------------------------------------------------------------- addresses and order


@pytest.mark.parametrize(
    ("group", "mac"),
    [("ff02::12", "333300000012"), ("ff02::1", "333300000001"),
     ("ff05::1:3", "333300010003"), ("ff02::1:ff00:1234", "3333ff001234")],
)
def test_ipv6_multicast_mac(group: str, mac: str) -> None:
    assert ipv6_multicast_mac(A6(group)) == bytes.fromhex(mac)


@settings(max_examples=200)
@given(a=v6_any, b=v6_any)
def test_tie_value6_is_memcmp_order_on_every_host(a: IPv6Address, b: IPv6Address) -> None:
    assert (tie_value6(a) < tie_value6(b)) == (a.packed < b.packed)
    assert tie_value6(a) == int(a)


def test_tie_value6_examples() -> None:
    assert tie_value6(A6("fe80::1")) < tie_value6(A6("fe80::2")) < tie_value6(A6("fe80:1::"))
    assert tie_value6(A6("2001:db8::ffff")) < tie_value6(A6("fe80::1"))


def test_constructor_refuses_bad_arguments() -> None:
    base: dict[str, Any] = dict(vhid=1, password=b"p", vips=(A6("2001:db8::1"),),
                                srcip=A6("fe80::1"), eth_src=_mac("02:00:00:00:00:01"))
    with pytest.raises(ValueError, match="eth_src"):
        AdvertCodec6(**{**base, "eth_src": b"\x02"})
    with pytest.raises(ValueError, match="peer_mac"):
        AdvertCodec6(**base, peer=A6("2001:db8::2"))
    with pytest.raises(ValueError, match="peer_mac"):
        AdvertCodec6(**base, peer=A6("2001:db8::2"), peer_mac=b"\x02" * 3)
    with pytest.raises(ValueError, match="traffic_class"):
        AdvertCodec6(**base, traffic_class=256)


def test_traffic_class_freebsd_style() -> None:
    """FreeBSD sends DSCP 56 (CS7): traffic class 0xe0. Receivers do not look at it."""
    g = GOLDEN[0]
    frame = sender(g, traffic_class=0xE0).encode(advbase=1, advskew=10, counter=g.counter)
    assert frame[14:16] == b"\x6e\x00"
    carp = carp_header(g.password, g.vhid, g.hashed, 1, 10, g.counter)
    assert frame == scapy_frame("33:33:00:00:00:12", _mac_text(g.eth_src), g.src, CARP6_GROUP,
                                carp, tc=0xE0)
    assert receiver(g).decode(frame) == receiver(g).decode(g.frame)


# ---------------------------------------------------------------- receive checks

V = GOLDEN[0]
P = GOLDEN[2]


def test_too_short_at_every_length_then_bogus_size() -> None:
    r = receiver(V)
    for n in range(ADVERT6_LEN):
        want = DropReason.TOO_SHORT if n < 54 else DropReason.BOGUS_SIZE
        assert reason(parse_frame6(V.frame[:n])) is want, n
        assert reason(r.decode(V.frame[:n])) is want, n
    assert _msg(r.decode(V.frame[:89])) == "Bogus size: payload length [36] > captured [35]"
    assert isinstance(r.decode(V.frame), Advert6)


def test_trailing_bytes_beyond_the_payload_length_are_ignored() -> None:
    assert receiver(V).decode(V.frame + b"\0" * 6) == receiver(V).decode(V.frame)


def test_not_ipv6_or_not_carp() -> None:
    r = receiver(V)
    assert _msg(r.decode(edit(V.frame, 12, b"\x08\x00"))) == "Not an IPv6 frame"
    assert reason(r.decode(edit(V.frame, 14, 0x40))) is DropReason.NOT_CARP
    got = r.decode(edit(V.frame, 20, 0))  # a hop-by-hop header: no BSD sends one
    assert reason(got) is DropReason.NOT_CARP and _msg(got) == "Not CARP: next header [0]"


def test_payload_length_shorter_than_carp() -> None:
    """Checked after the hop limit, as carp6_proto_input's m_pullup."""
    r = receiver(V)
    short = edit(V.frame, 18, b"\x00\x23")
    assert _msg(r.decode(short)) == "Bogus size: payload length [35] < ch_len=[36]"
    assert reason(r.decode(edit(short, 21, 64))) is DropReason.BAD_TTL


def test_payload_length_beyond_the_frame_is_refused_before_the_destination() -> None:
    """The IPv6 layer drops a truncated packet before it looks at where it goes."""
    b = edit(edit(V.frame, 18, b"\x00\x40"), 38, A6("ff02::13").packed)
    assert reason(receiver(V).decode(b)) is DropReason.BOGUS_SIZE


@pytest.mark.parametrize("hlim", [0, 1, 64, 254])
def test_bad_hop_limit(hlim: int) -> None:
    got = receiver(V).decode(edit(V.frame, 21, hlim))
    assert reason(got) is DropReason.BAD_TTL and _msg(got) == f"Bad hop limit: [{hlim}]"


def test_unicast_mode_does_not_check_the_hop_limit() -> None:
    """FreeBSD's carp_input_c checks the TTL only when the vhid's address is multicast."""
    got = receiver(P).decode(edit(P.frame, 21, 60))
    assert got == Advert6(P.src, P.advbase, P.advskew, P.counter)


def test_destination() -> None:
    other = edit(V.frame, 38, A6("ff02::13").packed)
    got = receiver(V).decode(other)
    assert reason(got) is DropReason.OTHER_GROUP and _msg(got) == "Ignoring destination: [ff02::13]"
    # Unicast to us is refused without peers, accepted with them; ff02::12 always.
    to_us = edit(V.frame, 38, A6("2001:db8::99").packed)
    plain = receiver(V, srcip=A6("2001:db8::99"))
    assert reason(plain.decode(to_us)) is DropReason.OTHER_GROUP
    with_peer = receiver(V, srcip=A6("2001:db8::99"), peer=V.src, peer_mac=V.eth_src)
    assert isinstance(with_peer.decode(to_us), Advert6)
    assert isinstance(with_peer.decode(V.frame), Advert6)
    assert reason(with_peer.decode(edit(V.frame, 38, A6("2001:db8::98").packed))) is (
        DropReason.OTHER_GROUP)


def test_link_local_and_global_sources_are_both_fine() -> None:
    for src in ("fe80::1234", "2001:db8::77", "fd00::1"):
        got = receiver(V).decode(edit(V.frame, 22, A6(src).packed))
        assert got == Advert6(A6(src), V.advbase, V.advskew, V.counter), src


def test_bad_checksum() -> None:
    got = receiver(V).decode(edit(V.frame, 60, b"\0\0"))
    assert reason(got) is DropReason.BAD_CHECKSUM and _msg(got) == "Bad CARP checksum"


def test_other_vhid_even_when_valid_for_it() -> None:
    other = sender(V, vhid=43).encode(advbase=1, advskew=0, counter=1)
    got = receiver(V).decode(other)
    assert reason(got) is DropReason.OTHER_VHID and _msg(got) == "Ignoring vhid: [43]"


@pytest.mark.parametrize("version", [0, 1, 3, 15])
def test_bad_version(version: int) -> None:
    got = receiver(V).decode(edit(V.frame, 54, (version << 4) | 1, fix=True))
    assert reason(got) is DropReason.BAD_VERSION and _msg(got) == f"Bad version: [{version}]"


def test_bad_digest_wrong_password_or_vips() -> None:
    for codec in (receiver(V, password=b"lov"), receiver(V, password=b"love "),
                  receiver(V, vips=(A6("2001:db8:10::101"),)),
                  receiver(V, vips=(*V.vips, A6("2001:db8:10::101")))):
        got = codec.decode(V.frame)
        assert reason(got) is DropReason.BAD_DIGEST
        assert _msg(got) == (
            f"Bad digest - md2=[{codec.digest(V.counter)[:4].hex()}...] md=[d880756c...]"
            " - Check vhid, password and virtual IP addresses"
        )


def test_vip_order_and_link_local_vips_do_not_change_the_digest() -> None:
    """Sorted and without link-local addresses: peers may list them differently."""
    g = GOLDEN[1]
    shuffled = receiver(g, vips=(A6("2001:db8::a"), A6("fe80::99"), A6("2001:db8::b"),
                                 A6("2001:db8::a")))
    assert shuffled.decode(g.frame) == Advert6(g.src, g.advbase, g.advskew, g.counter)


def test_type_skew_base_authlen_demote_are_not_authenticated() -> None:
    """Neither BSD checks the type, and the HMAC covers only vhid, addresses, counter."""
    r = receiver(V)
    assert r.decode(edit(V.frame, 54, 0x22, fix=True)) == Advert6(V.src, 1, 10, V.counter)
    assert r.decode(edit(V.frame, 56, 200, fix=True)) == Advert6(V.src, 1, 200, V.counter)
    assert r.decode(edit(V.frame, 59, 9, fix=True)) == Advert6(V.src, 9, 10, V.counter)
    assert r.decode(edit(V.frame, 57, 3, fix=True)) == Advert6(V.src, 1, 10, V.counter)
    # OpenBSD's demotion counter rides in the byte after authlen: reported, not judged.
    assert r.decode(edit(V.frame, 58, 5, fix=True)) == Advert6(V.src, 1, 10, V.counter, 5)


def test_leave_advert_flag() -> None:
    assert Advert6(V.src, 255, 255, 0).is_leave
    assert not Advert6(V.src, 255, 254, 0).is_leave and not Advert6(V.src, 1, 255, 0).is_leave


def test_checks_run_in_the_bsd_order() -> None:
    """Fix one defect at a time: the reason reported walks down the BSD kernels' list."""
    r = receiver(V)
    b = bytearray(V.frame)
    b[38:54] = A6("ff02::13").packed  # destination (the IPv6 layer)
    b[21] = 64  # hop limit
    b[18:20] = b"\x00\x23"  # payload length 35
    b[55] = 43  # vhid
    b[54] = 0x31  # version 3
    b[60] ^= 0xFF  # checksum (also wrong for every CARP edit above)
    b[70] ^= 0xFF  # digest
    steps: list[tuple[DropReason, int, bytes]] = [
        (DropReason.OTHER_GROUP, 38, CARP6_GROUP.packed),
        (DropReason.BAD_TTL, 21, b"\xff"),
        (DropReason.BOGUS_SIZE, 18, b"\x00\x24"),
    ]
    for want, off, fix in steps:
        assert reason(r.decode(bytes(b))) is want
        b[off : off + len(fix)] = fix
    assert reason(r.decode(bytes(b))) is DropReason.BAD_CHECKSUM
    b = bytearray(fix_checksum(bytes(b)))
    assert reason(r.decode(bytes(b))) is DropReason.OTHER_VHID  # vhid before version
    b = bytearray(edit(bytes(b), 55, V.vhid, fix=True))
    assert reason(r.decode(bytes(b))) is DropReason.BAD_VERSION
    b = bytearray(edit(bytes(b), 54, 0x21, fix=True))
    assert reason(r.decode(bytes(b))) is DropReason.BAD_DIGEST
    b[70] ^= 0xFF
    assert r.decode(fix_checksum(bytes(b))) == Advert6(V.src, V.advbase, V.advskew, V.counter)


def test_own_source_is_checked_right_after_the_ipv6_header() -> None:
    s = sender(V)
    assert reason(s.decode(V.frame[:60])) is DropReason.OWN
    assert reason(s.decode(edit(V.frame, 21, 1))) is DropReason.OWN
    assert reason(s.decode(edit(V.frame, 20, 17))) is DropReason.NOT_CARP


# ---------------------------------------------------------------- single-byte corruption


def _expected(g: Golden, r: AdvertCodec6, off: int, new: int, fix: bool) -> DropReason | None:
    """What the BSD order of checks makes of ``g`` with byte ``off`` replaced by ``new``."""
    frame = edit(g.frame, off, new)
    if off < 12 or 15 <= off < 18:  # MACs, traffic class and flow label: not looked at
        return None
    if off in (12, 13, 20):
        return DropReason.NOT_CARP
    if off == 14:
        return DropReason.NOT_CARP if new >> 4 != 6 else None
    if off in (18, 19):
        return DropReason.BOGUS_SIZE  # too long for the frame, or too short for CARP
    if off == 21:
        return DropReason.BAD_TTL if g.peer is None else None
    if 22 <= off < 38:
        return DropReason.OWN if frame[22:38] == r.srcip.packed else None
    if 38 <= off < 54:
        ours = {CARP6_GROUP.packed} | ({r.srcip.packed} if r.peer is not None else set())
        return None if frame[38:54] in ours else DropReason.OTHER_GROUP
    if not fix or off in (60, 61):  # the checksum covers every CARP byte
        return DropReason.BAD_CHECKSUM if not fix else None
    if off == 54:
        return DropReason.BAD_VERSION if new >> 4 != 2 else None  # the type is not checked
    if off == 55:
        return DropReason.OTHER_VHID
    if off < 62:  # advskew, authlen, demote, advbase
        return None
    return DropReason.BAD_DIGEST  # counter and HMAC


def _corrupt(g: Golden, off: int, new: int, fix: bool) -> bytes:
    frame = edit(g.frame, off, new)
    if fix and off not in (60, 61):
        frame = fix_checksum(frame)
    elif fix:  # "fixing" an edited checksum restores it
        frame = g.frame
    return frame


def _check_corruption(g: Golden, off: int, mask: int, fix: bool) -> None:
    r = receiver(g)
    new = g.frame[off] ^ mask
    got = r.decode(_corrupt(g, off, new, fix))
    want = _expected(g, r, off, new, fix)
    assert reason(got) is want, (off, mask, fix, got)
    if want is None:  # accepted: exactly the fields that arrived
        f = parse_frame6(_corrupt(g, off, new, fix))
        assert isinstance(f, CarpFrame6)
        assert got == Advert6(f.src, f.advbase, f.advskew, f.counter, f.demote)


@pytest.mark.parametrize("g", GOLDEN, ids=GOLDEN_IDS)
@pytest.mark.parametrize("mask", [0x01, 0x10, 0x80, 0xFF])
@pytest.mark.parametrize("fix", [False, True], ids=["raw", "checksum-fixed"])
def test_every_single_byte_corruption(g: Golden, mask: int, fix: bool) -> None:
    for off in range(ADVERT6_LEN):
        _check_corruption(g, off, mask, fix)


@settings(max_examples=500)
@given(g=st.sampled_from(GOLDEN), off=st.integers(0, ADVERT6_LEN - 1), mask=st.integers(1, 255),
       fix=st.booleans())
def test_any_single_byte_corruption(g: Golden, off: int, mask: int, fix: bool) -> None:
    _check_corruption(g, off, mask, fix)


# ---------------------------------------------------------------- round trips

passwords = st.binary(max_size=19)  # CARP_KEY_LEN 20, strlcpy'd by ifconfig: 19 at most
u8 = st.integers(0, 255)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    vhid=st.integers(1, 255), advbase=u8, advskew=u8, counter=st.integers(0, 2**64 - 1),
    password=passwords, vips=st.lists(v6_addresses, min_size=1, max_size=4),
    src=st.one_of(v6_link_local, v6_any), unicast=st.booleans(), tc=u8,
    hmac_link_local=st.booleans(), eth_src=st.binary(min_size=6, max_size=6),
)
def test_encode_decode_roundtrip(
    vhid: int, advbase: int, advskew: int, counter: int, password: bytes,
    vips: list[IPv6Address], src: IPv6Address, unicast: bool, tc: int,
    hmac_link_local: bool, eth_src: bytes,
) -> None:
    other = A6((int(src) + 1) % 2**128)
    peer_mac = _mac("02:00:00:00:00:fe")
    kw: dict[str, Any] = dict(vhid=vhid, password=password, vips=vips)
    mine = AdvertCodec6(srcip=src, eth_src=eth_src, traffic_class=tc,
                        hmac_link_local=hmac_link_local, **kw,
                        **(dict(peer=other, peer_mac=peer_mac) if unicast else {}))
    theirs = AdvertCodec6(srcip=other, eth_src=peer_mac, **kw,
                          **(dict(peer=src, peer_mac=eth_src) if unicast else {}))
    frame = mine.encode(advbase=advbase, advskew=advskew, counter=counter)
    assert len(frame) == ADVERT6_LEN
    assert theirs.decode(frame) == Advert6(src, advbase, advskew, counter)
    assert mine.decode(frame) == Dropped(DropReason.OWN, "Own advertisement")
    # The oracle builds the same frame.
    hashed = bsd_hash_input(vhid, vips, link_local=hmac_link_local)[3:]
    carp = carp_header(password, vhid, hashed, advbase, advskew, counter)
    dst, dst_mac = (other, peer_mac) if unicast else (CARP6_GROUP, _mac("33:33:00:00:00:12"))
    assert frame == scapy_frame(_mac_text(dst_mac), _mac_text(eth_src), src, dst, carp, tc=tc)
    f = parse_frame6(frame)
    assert isinstance(f, CarpFrame6) and f.checksum_ok and f.traffic_class == tc


@settings(max_examples=500)
@given(st.binary(max_size=200))
@example(b"")
@example(V.frame[:54])
@example(V.frame[:14] + b"\x60" + V.frame[15:18] + b"\xff\xff" + V.frame[20:])
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for frame in (data, V.frame[:14] + data, V.frame[:54] + data):
        judged_without_raising(frame)


@settings(max_examples=500)
@given(mutated([g.frame for g in GOLDEN]))
def test_mutated_frames_never_raise(frame: bytes) -> None:
    judged_without_raising(frame)


# ---------------------------------------------------------------- --peer: packets, peers only

# pyucarp's unicast mode (``peers``): the kernel routes one IPv6 packet per peer, and only
# a peer's adverts to our own address count, with hop limit 255 (the IPv4 rule). The packet
# of the unicast golden frame above, written out (its Ethernet header is the kernel's now).
U_PACKET = _hex(
    "60000000 0024 70 ff 20010db8000500000000000000000002 20010db8000500000000000000000003 · "
    "21 c8 64 07 00 02 cc2b 0000000000000001 030c50f317e4da88f5de5c56b0aa012915e84da4"
)
U_SRC, U_PEER = A6("2001:db8:5::2"), A6("2001:db8:5::3")  # P's source and its peer
U_THIRD = A6("2001:db8:5::4")  # a third node: the other peer of a three-node cluster
MAC_TO, MAC_FROM = _mac("02:00:00:00:00:03"), _mac("02:00:00:00:00:02")


def peers_codec(srcip: IPv6Address, peers: tuple[IPv6Address, ...], **over: Any) -> AdvertCodec6:
    kw: dict[str, Any] = dict(vhid=P.vhid, password=P.password, vips=P.vips, srcip=srcip,
                              eth_src=MAC_FROM, peers=peers)
    kw.update(over)
    return AdvertCodec6(**kw)


def oracle_packet(src: IPv6Address, dst: IPv6Address, *, hlim: int = 255,
                  counter: int = P.counter, password: bytes = P.password,
                  vhid: int = P.vhid) -> bytes:
    """P's advert from ``src`` to ``dst``, IPv6 header by scapy, CARP bytes by the oracle."""
    carp = carp_header(password, vhid, P.hashed, P.advbase, P.advskew, counter)
    return bytes(IPv6(src=str(src), dst=str(dst), nh=112, hlim=hlim, tc=0, fl=0) / Raw(carp))


def on_the_wire(packet: bytes) -> bytes:
    """The frame a receiver's packet socket reads: the kernel's Ethernet header first."""
    return MAC_TO + MAC_FROM + b"\x86\xdd" + packet


def test_peers_packet_is_the_oracles_and_the_golden_frames() -> None:
    assert oracle_packet(U_SRC, U_PEER) == U_PACKET == P.frame[14:]
    assert len(U_PACKET) == 76
    codec = peers_codec(U_SRC, (U_PEER, U_THIRD))
    values = dict(advbase=P.advbase, advskew=P.advskew, counter=P.counter)
    assert codec.encode_ip(dst=U_PEER, **values) == U_PACKET
    # one packet per peer, the same but for the destination
    assert codec.encode_ip(dst=U_THIRD, **values) == oracle_packet(U_SRC, U_THIRD)
    assert on_the_wire(U_PACKET) == P.frame


def test_peers_packet_between_link_local_addresses() -> None:
    """No scope in the bytes: the kernel is told the interface when the packet is sent."""
    src, peer = A6("fe80::2"), A6("fe80::3")
    codec = peers_codec(src, (peer,))
    packet = codec.encode_ip(advbase=P.advbase, advskew=P.advskew, counter=7, dst=peer)
    assert packet == oracle_packet(src, peer, counter=7)
    got = peers_codec(A6("fe80::3%eth0"), (A6("fe80::2"),)).decode(on_the_wire(packet))
    assert got == Advert6(src, P.advbase, P.advskew, 7)


def test_peers_accept_a_peers_advert_to_us() -> None:
    mine = peers_codec(U_PEER, (U_SRC, U_THIRD))
    assert mine.decode(on_the_wire(U_PACKET)) == Advert6(U_SRC, P.advbase, P.advskew, 1)
    from_third = oracle_packet(U_THIRD, U_PEER, counter=2)
    assert mine.decode(on_the_wire(from_third)) == Advert6(U_THIRD, P.advbase, P.advskew, 2)


@pytest.mark.parametrize(("src", "dst"), [
    (U_SRC, CARP6_GROUP),  # a peer's advert to the group: not ours in unicast mode
    (U_SRC, U_THIRD),  # a peer's advert to someone else
    (A6("2001:db8:5::66"), U_PEER),  # to us, right password, from a host that is no peer
    (A6("fe80::2"), U_PEER),  # the peer's link-local address is another address
])
def test_peers_drop_anything_else_as_other_group(src: IPv6Address, dst: IPv6Address) -> None:
    got = peers_codec(U_PEER, (U_SRC,)).decode(on_the_wire(oracle_packet(src, dst)))
    assert reason(got) is DropReason.OTHER_GROUP
    assert _msg(got) == f"Ignoring advert from [{src}] to [{dst}]: not a peer's to us"


@pytest.mark.parametrize("hlim", [0, 1, 64, 254])
def test_peers_keep_the_hop_limit_check(hlim: int) -> None:
    """Unlike the single-peer mode (FreeBSD's), a routed advert is refused, as over IPv4."""
    got = peers_codec(U_PEER, (U_SRC,)).decode(on_the_wire(oracle_packet(U_SRC, U_PEER,
                                                                          hlim=hlim)))
    assert reason(got) is DropReason.BAD_TTL and _msg(got) == f"Bad hop limit: [{hlim}]"


def test_peers_order_of_checks() -> None:
    """Own source first, then the IPv6 layer's destination and the peer, then CARP's."""
    mine = peers_codec(U_PEER, (U_SRC,))
    assert reason(mine.decode(on_the_wire(oracle_packet(U_PEER, U_SRC)))) is DropReason.OWN
    # not a peer's, and a bad checksum and hop limit besides: the peer rule speaks first
    stranger = bytearray(on_the_wire(oracle_packet(A6("2001:db8:5::66"), U_PEER, hlim=1)))
    stranger[60:62] = b"\0\0"
    assert reason(mine.decode(bytes(stranger))) is DropReason.OTHER_GROUP
    peer_bad_sum = edit(on_the_wire(U_PACKET), 60, b"\0\0")
    assert reason(mine.decode(peer_bad_sum)) is DropReason.BAD_CHECKSUM
    other_vhid = on_the_wire(oracle_packet(U_SRC, U_PEER, vhid=201))
    assert reason(mine.decode(other_vhid)) is DropReason.OTHER_VHID
    wrong_password = on_the_wire(oracle_packet(U_SRC, U_PEER, password=b"peeR"))
    assert reason(mine.decode(wrong_password)) is DropReason.BAD_DIGEST


def test_peers_every_single_byte_corruption_of_the_ipv6_header() -> None:
    """Any change to the addresses makes the packet no peer's to us (or our own); to the
    hop limit, a bad TTL; to the rest of the header, what the multicast mode says."""
    mine = peers_codec(U_PEER, (U_SRC,))
    frame = on_the_wire(U_PACKET)
    for off in range(14, 54):
        for mask in (0x01, 0x80, 0xFF):
            changed = edit(frame, off, frame[off] ^ mask)
            got = reason(mine.decode(changed))
            if 22 <= off < 38:
                want = DropReason.OWN if changed[22:38] == U_PEER.packed else \
                    DropReason.OTHER_GROUP
            elif 38 <= off < 54:
                want = DropReason.OTHER_GROUP
            elif off == 21:
                want = DropReason.BAD_TTL
            elif off == 14:
                want = DropReason.NOT_CARP if (frame[off] ^ mask) >> 4 != 6 else None
            elif off in (18, 19):
                want = DropReason.BOGUS_SIZE
            elif off == 20:
                want = DropReason.NOT_CARP
            else:  # traffic class and flow label
                want = None
            assert got is want, (off, mask, got)


def test_peer_and_peers_do_not_mix() -> None:
    with pytest.raises(ValueError, match="not both"):
        peers_codec(U_PEER, (U_SRC,), peer=U_SRC, peer_mac=MAC_FROM)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(src=st.one_of(v6_any, v6_link_local), peer=st.one_of(v6_any, v6_link_local),
       counter=st.integers(0, 2**64 - 1), advskew=u8)
def test_peers_roundtrip(src: IPv6Address, peer: IPv6Address, counter: int,
                         advskew: int) -> None:
    if src == peer:
        return
    mine, theirs = peers_codec(src, (peer,)), peers_codec(peer, (src,))
    packet = mine.encode_ip(advbase=P.advbase, advskew=advskew, counter=counter, dst=peer)
    carp = carp_header(P.password, P.vhid, P.hashed, P.advbase, advskew, counter)
    assert packet == bytes(IPv6(src=str(src), dst=str(peer), nh=112, hlim=255) / Raw(carp))
    assert theirs.decode(on_the_wire(packet)) == Advert6(src, P.advbase, advskew, counter)
    assert reason(mine.decode(on_the_wire(packet))) is DropReason.OWN


def test_instance_sends_one_packet_per_peer_and_reports_the_first() -> None:
    """CarpInstance over IPv6 with peers: each advert becomes one packet per peer (the
    kernel routes them), the first carrying the advert's outcome; no frame to ff02::12."""
    from pyucarp.core.instance import CarpInstance
    from pyucarp.core.machine import Params

    instance = CarpInstance(
        vhid=P.vhid, password=P.password, vip=P.vips[0], group=CARP6_GROUP, nomcast=False,
        params=Params(advbase=P.advbase, advskew=P.advskew, deadratio=3, preempt=False,
                      neutral=False, srcip=U_SRC),
        mac=MAC_FROM, random_bits=lambda n: 1, peers=(U_PEER, U_THIRD),
    )
    instance.start(0.0)
    instance.handle_timer(100.0)  # nobody heard: MASTER, and its first advert
    assert instance.state.value == "MASTER"
    sent = instance.frames_to_send()
    packets = [f for f in sent if f.peer is not None]
    assert [(f.peer, f.advert) for f in packets[:2]] == [(U_PEER, True), (U_THIRD, False)]
    for f in packets:
        assert isinstance(f.peer, IPv6Address)
        counter = int.from_bytes(f.data[48:56], "big")
        assert f.data == oracle_packet(U_SRC, f.peer, counter=counter)
    # the rest: the Neighbour Advertisement to all nodes (ff02::1), nothing to ff02::12
    others = [f for f in sent if f.peer is None]
    assert others and all(f.data[:6] == b"\x33\x33\x00\x00\x00\x01" for f in others)
    # adverts from a peer to us are heard; from anyone else, dropped as other_group
    instance.receive_frame(on_the_wire(oracle_packet(U_THIRD, U_SRC, counter=5)), 101.0)
    instance.receive_frame(on_the_wire(oracle_packet(A6("2001:db8:5::66"), U_SRC)), 101.0)
    assert instance.counters.adverts_received == 1
    assert instance.counters.dropped["other_group"] == 1


# ---------------------------------------------------------------- a lean daemon


def test_codec6_imports_only_what_the_codec_imports() -> None:
    """Statically: the standard modules of codec.py, ipaddress, and the core."""
    core = SOURCE_ROOT / "pyucarp" / "core"

    def modules(name: str) -> set[str]:
        tree = ast.parse((core / name).read_text())
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module.split(".")[0])
        return found

    assert modules("codec6.py") <= modules("codec.py") | {"ipaddress"}


_PROBE = """
import sys
import pyucarp.core.codec
before = set(sys.modules)
import pyucarp.core.codec6
print(" ".join(sorted(set(sys.modules) - before)))
print(" ".join(sorted(sys.modules)))
"""


def test_codec6_loads_no_module_beyond_itself() -> None:
    """At run time, in a bare ``python3 -S``: no OpenSSL (hashlib, hmac), no typing."""
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT)}
    proc = subprocess.run([sys.executable, "-S", "-c", _PROBE], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    added, everything = (set(line.split()) for line in proc.stdout.splitlines())
    assert added == {"pyucarp.core.codec6"}
    heavy = {"hashlib", "_hashlib", "hmac", "ssl", "typing", "dataclasses", "re", "scapy"}
    assert not everything & heavy, everything & heavy
