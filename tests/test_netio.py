"""CarpSocket: raw CARP frames on a veth pair between two private namespaces."""

from __future__ import annotations

import secrets
import select
import socket
import struct
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from pyucarp.errors import RuntimeFailure
from pyucarp.shell.netio import CARP_FILTER, CarpSocket, multicast_mac, open_unicast_socket
from vethpair import A_IF, B_IF, Pair, inside, needs_netns, run_ip, veth_pair

GROUP = IPv4Address("224.0.0.18")
A_IP = A_IF.ip
B_IP = B_IF.ip


@pytest.fixture
def lab() -> Iterator[Pair]:
    with veth_pair("nio") as pair:
        yield pair


# --------------------------------------------------------------------------
# Frames built by hand, independently of the project's codec.


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(proto: int, src: IPv4Address, dst: IPv4Address, payload: bytes) -> bytes:
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0x10, 20 + len(payload), 0x1234, 0x4000, 255,
        proto, 0, src.packed, dst.packed,
    )
    head = head[:10] + struct.pack("!H", _csum(head)) + head[12:]
    return head + payload


def carp_frame(vhid: int, src: IPv4Address, counter: int = 1,
               dst_mac: bytes = b"\x01\x00\x5e\x00\x00\x12") -> bytes:
    """A 70-byte CARP advertisement (digest bytes arbitrary)."""
    carp = struct.pack("!BBBBBBH", 0x21, vhid, 0, 7, 0, 1, 0)
    carp += counter.to_bytes(8, "big") + secrets.token_bytes(20)
    carp = carp[:6] + struct.pack("!H", _csum(carp)) + carp[8:]
    eth = dst_mac + bytes([0, 0, 0x5E, 0, 0, vhid]) + b"\x08\x00"
    return eth + _ipv4(112, src, GROUP, carp)


def udp_frame(src: IPv4Address, dst: IPv4Address) -> bytes:
    udp = struct.pack("!HHHH", 9999, 9, 12, 0) + b"hiya"
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01\x08\x00" + _ipv4(17, src, dst, udp)


def arp_frame(ip: IPv4Address) -> bytes:
    mac = b"\x02\x00\x00\x00\x00\x01"
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip.packed, mac, ip.packed)
    return b"\xff" * 6 + mac + b"\x08\x06" + arp


def wait_frames(sock: CarpSocket, count: int, timeout: float = 2.0) -> list[bytes]:
    """Collect frames until ``count`` arrived or ``timeout`` passed."""
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            frames.extend(sock.recv_frames())
    return frames


def open_carp(ns: str, *, nomcast: bool = False, src: IPv4Address = A_IP) -> CarpSocket:
    with inside(ns):
        return CarpSocket("eth0", srcip=src, group=GROUP, nomcast=nomcast)


# --------------------------------------------------------------------------
# Tests without privileges


def test_multicast_mac() -> None:
    assert multicast_mac(GROUP) == bytes.fromhex("01005e000012")
    # Only the low 23 bits are mapped.
    assert multicast_mac(IPv4Address("239.129.2.3")) == bytes.fromhex("01005e010203")


def test_filter_program_is_six_instructions_ending_in_drop() -> None:
    assert len(CARP_FILTER) == 6 * 8
    code, _jt, _jf, k = struct.unpack("=HBBI", CARP_FILTER[-8:])
    assert (code, k) == (0x06, 0)
    # The protocol test compares against 112 at IP header byte 9.
    assert struct.unpack("=HBBI", CARP_FILTER[16:24])[3] == 23
    assert struct.unpack("=HBBI", CARP_FILTER[24:32])[3] == 112


def test_missing_device_is_a_runtime_failure() -> None:
    with pytest.raises(RuntimeFailure, match=r"\[nosuch0\]"):
        CarpSocket("nosuch0", srcip=A_IP, group=GROUP, nomcast=False)


# --------------------------------------------------------------------------
# Namespace tests


@pytest.mark.netns
@needs_netns
def test_frame_crosses_with_exact_bytes_and_is_not_echoed(lab: Pair) -> None:
    with open_carp(lab.a) as sa, open_carp(lab.b, src=B_IP) as sb:
        frame = carp_frame(42, A_IP)
        assert len(frame) == 70
        sent_at = time.monotonic()
        sa.send(frame)
        got = wait_frames(sb, 1)
        # Delivered as it arrives, not in capture batches.
        assert time.monotonic() - sent_at < 0.5
        assert got == [frame]

        reply = carp_frame(7, B_IP, counter=2)
        sb.send(reply)
        # A hears B's frame, and never its own.
        assert wait_frames(sa, 2, timeout=0.5) == [reply]
        assert sb.recv_frames() == []


@pytest.mark.netns
@needs_netns
def test_second_socket_on_sender_does_not_see_outgoing(lab: Pair) -> None:
    with open_carp(lab.a) as sa, open_carp(lab.a) as watcher, open_carp(lab.b) as sb:
        sa.send(carp_frame(1, A_IP))
        assert len(wait_frames(sb, 1)) == 1
        assert wait_frames(watcher, 1, timeout=0.3) == []


@pytest.mark.netns
@needs_netns
def test_filter_drops_non_carp(lab: Pair) -> None:
    # An unfiltered observer on B proves the other frames did arrive.
    with inside(lab.b):
        spy = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        spy.bind(("eth0", 0x0003))
    spy.settimeout(0.5)
    try:
        with open_carp(lab.a) as sa, open_carp(lab.b, src=B_IP) as sb:
            with inside(lab.a):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
                    dgram.sendto(b"not carp", (str(B_IP), 9))
            sa.send(udp_frame(A_IP, B_IP))
            sa.send(arp_frame(A_IP))
            marker = carp_frame(99, A_IP)
            sa.send(marker)
            # Only the CARP frame comes through, though it was sent last.
            assert wait_frames(sb, 1) == [marker]
            assert wait_frames(sb, 1, timeout=0.3) == []

        # The UDP datagrams and the ARP frame did reach B's interface.
        udp = arp = False
        deadline = time.monotonic() + 2
        while not (udp and arp) and time.monotonic() < deadline:
            try:
                f = spy.recv(65536)
            except TimeoutError:
                break
            udp = udp or (f[12:14] == b"\x08\x00" and f[23] == 17)
            arp = arp or f[12:14] == b"\x08\x06"
        assert udp and arp
    finally:
        spy.close()


@pytest.mark.netns
@needs_netns
def test_broadcast_destination_is_received(lab: Pair) -> None:
    with open_carp(lab.a, nomcast=True) as sa, open_carp(lab.b, nomcast=True) as sb:
        frame = carp_frame(5, A_IP, dst_mac=b"\xff" * 6)
        sa.send(frame)
        assert wait_frames(sb, 1) == [frame]


def _memberships(ns: str) -> tuple[bool, bool]:
    """Whether eth0 in ``ns`` is in the CARP group: at the link level (01:00:5e:00:00:12),
    at the IP level (224.0.0.18)."""
    listing = run_ip("-n", ns, "maddr", "show", "dev", "eth0")
    return "01:00:5e:00:00:12" in listing, "224.0.0.18" in listing


@pytest.mark.netns
@needs_netns
def test_multicast_membership_follows_the_socket(lab: Pair) -> None:
    link_level, _ip_level = _memberships(lab.a)
    assert not link_level
    sa = open_carp(lab.a)
    try:
        assert _memberships(lab.a) == (True, True)
    finally:
        sa.close()
    assert sa.closed
    assert _memberships(lab.a) == (False, False)


@pytest.mark.netns
@needs_netns
def test_nomcast_joins_nothing(lab: Pair) -> None:
    with open_carp(lab.a, nomcast=True):
        assert _memberships(lab.a) == (False, False)


@pytest.mark.netns
@needs_netns
def test_join_works_without_an_address(lab: Pair) -> None:
    # ucarp's IP_ADD_MEMBERSHIP names the interface by srcip and fails
    # ("No such device") when that address is not configured yet.
    run_ip("-n", lab.a, "addr", "flush", "dev", "eth0")
    with open_carp(lab.a):
        _link_level, ip_level = _memberships(lab.a)
        assert ip_level


@pytest.mark.netns
@needs_netns
def test_send_failure_raises_oserror(lab: Pair) -> None:
    with open_carp(lab.a) as sa:
        with pytest.raises(OSError):
            sa.send(carp_frame(1, A_IP) + b"\0" * 4000)  # beyond the MTU


@pytest.mark.netns
@needs_netns
def test_link_down_and_up_keeps_the_socket_usable(lab: Pair) -> None:
    with open_carp(lab.a) as sa, open_carp(lab.b, src=B_IP) as sb:
        run_ip("-n", lab.b, "link", "set", "eth0", "down")
        # The kernel's one-off ENETDOWN is not an error for the caller.
        wait_frames(sb, 1, timeout=0.2)
        assert sb.recv_frames() == []
        run_ip("-n", lab.b, "link", "set", "eth0", "up")
        frame = carp_frame(3, A_IP)
        deadline = time.monotonic() + 3
        got: list[bytes] = []
        while not got and time.monotonic() < deadline:
            sa.send(frame)  # carrier takes a moment to return
            got = wait_frames(sb, 1, timeout=0.2)
        assert got == [frame]


@pytest.mark.netns
@needs_netns
def test_device_only_in_another_namespace_is_missing(lab: Pair) -> None:
    with inside(lab.a):
        with pytest.raises(RuntimeFailure, match=r"\[veth-nope\]"):
            CarpSocket("veth-nope", srcip=A_IP, group=GROUP, nomcast=False)


# --------------------------------------------------------------------------
# The unicast sockets of --peer, IPv6


A6, B6 = IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2")
GROUP6 = IPv6Address("ff02::12")


def _ipv6_carp(src: IPv6Address, dst: IPv6Address, hop_limit: int = 255) -> bytes:
    """A 76-byte CARP-over-IPv6 packet built by hand (digest bytes arbitrary)."""
    carp = struct.pack("!BBBBBBH", 0x21, 9, 0, 7, 0, 1, 0)
    carp += (1).to_bytes(8, "big") + secrets.token_bytes(20)
    carp = carp[:6] + struct.pack("!H", _csum(carp)) + carp[8:]
    head = struct.pack("!IHBB16s16s", 6 << 28, len(carp), 112, hop_limit, src.packed,
                       dst.packed)
    return head + carp


def _ipv6_pair(lab: Pair) -> dict[str, IPv6Address]:
    """Both ends with IPv6 on, 2001:db8::1 and ::2 (nodad); their link-local addresses."""
    link_local = {}
    for ns, address in ((lab.a, A6), (lab.b, B6)):
        run_ip("netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=0")
        run_ip("-n", ns, "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
    deadline = time.monotonic() + 5
    while len(link_local) < 2 and time.monotonic() < deadline:
        for ns in (lab.a, lab.b):
            out = run_ip("-n", ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link")
            if out and "tentative" not in out:
                link_local[ns] = IPv6Address(out.split()[3].split("/")[0])
        time.sleep(0.05)
    assert len(link_local) == 2, link_local
    return link_local


def _param_problems(sock: socket.socket, timeout: float) -> list[bytes]:
    """ICMPv6 parameter problems (type 4) read from a raw ICMPv6 socket."""
    found = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        data = sock.recv(2048)
        if data[:1] == b"\x04":
            found.append(data)
    return found


@pytest.mark.netns
@needs_netns
def test_unicast_socket6_sends_the_packet_as_built_and_silences_icmp(lab: Pair) -> None:
    """The IPv6 unicast socket hands over our packet byte for byte (hop limit 255, the
    source we wrote), to a global peer and to a link-local one (the scope comes with the
    send). While the receiver holds its own such socket, its kernel answers no advert with
    an ICMPv6 parameter problem (unrecognised next header); without it, it does."""
    link_local = _ipv6_pair(lab)
    with inside(lab.a):
        index_a = socket.if_nametoindex("eth0")
        sender = open_unicast_socket("eth0", 6)
        icmp = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    with inside(lab.b):
        receiver = CarpSocket("eth0", srcip=B6, group=GROUP6, nomcast=True)
        quiet = open_unicast_socket("eth0", 6)
    try:
        assert sender.family == socket.AF_INET6 and sender.proto == 112
        sent = []
        for dst, src in ((B6, A6), (link_local[lab.b], link_local[lab.a])):
            for _ in range(3):
                packet = _ipv6_carp(src, dst)
                sender.sendto(packet, (str(dst), 0, 0, index_a))
                sent.append(packet)
        got = wait_frames(receiver, len(sent), timeout=3)
        assert [f[14:] for f in got] == sent
        assert all(f[12:14] == b"\x86\xdd" for f in got)
        assert _param_problems(icmp, 0.5) == []

        quiet.close()
        sender.sendto(_ipv6_carp(A6, B6), (str(B6), 0, 0, index_a))
        problems = _param_problems(icmp, 2)
        assert problems and problems[0][1] == 1, problems  # code 1: unrecognized next header
    finally:
        for sock in (sender, icmp, quiet):
            sock.close()
        receiver.close()


@pytest.mark.netns
@needs_netns
def test_unicast_socket6_reads_nothing(lab: Pair) -> None:
    """Its filter drops everything: the packet socket does the receiving."""
    _ipv6_pair(lab)
    with inside(lab.a):
        index_a = socket.if_nametoindex("eth0")
        sender = open_unicast_socket("eth0", 6)
    with inside(lab.b):
        quiet = open_unicast_socket("eth0", 6)
    try:
        sender.sendto(_ipv6_carp(A6, B6), (str(B6), 0, 0, index_a))
        ready, _, _ = select.select([quiet], [], [], 0.5)
        assert ready == []
    finally:
        sender.close()
        quiet.close()
