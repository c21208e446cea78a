"""Interface facts and link monitoring, checked in private namespaces."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import pytest

from pyucarp.errors import RuntimeFailure
from pyucarp.shell.iface import (
    AddressEvent,
    LinkEvent,
    LinkMonitor,
    MonitorEvent,
    Resync,
    default_interface,
    has_address,
    interface_facts,
    parse_rtnetlink,
)
from vethpair import A_IF, B_IF, Pair, inside, needs_netns, run_ip, veth_pair

VIP = IPv4Interface("192.0.2.100/32")
UCARP = "/usr/sbin/ucarp"

needs_ucarp = pytest.mark.skipif(
    not os.access(UCARP, os.X_OK), reason=f"{UCARP} not installed"
)


@pytest.fixture
def lab() -> Iterator[Pair]:
    with veth_pair("ifc") as pair:
        yield pair


def _link_json(ns: str, dev: str) -> dict[str, object]:
    out = json.loads(run_ip("-n", ns, "-j", "link", "show", "dev", dev))
    assert isinstance(out, list) and len(out) == 1
    entry = out[0]
    assert isinstance(entry, dict)
    return entry


def _wait_running(ns: str, dev: str, timeout: float = 3.0, want: bool = True) -> None:
    """Wait until iproute2 shows the carrier ``want``ed (linkwatch may lag ~1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flags = _link_json(ns, dev).get("flags", [])
        if isinstance(flags, list) and ("LOWER_UP" in flags) == want:
            return
        time.sleep(0.02)
    raise AssertionError(f"{dev} in {ns}: carrier never became {want}")


# --------------------------------------------------------------------------
# rtnetlink parsing, no privileges needed


def _rtattr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _nlmsg(kind: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_parse_newlink_and_dellink() -> None:
    ifinfo = struct.pack("=BxHiII", 0, 1, 7, 0x1003, 0)  # UP, no RUNNING
    body = ifinfo + _rtattr(3, b"eth0\0") + _rtattr(1, bytes.fromhex("020000000001"))
    events = parse_rtnetlink(_nlmsg(16, body) + _nlmsg(17, body))
    assert events == [
        LinkEvent(index=7, name="eth0", flags=0x1003, up=True, running=False,
                  deleted=False, mac=bytes.fromhex("020000000001")),
        LinkEvent(index=7, name="eth0", flags=0x1003, up=True, running=False,
                  deleted=True, mac=bytes.fromhex("020000000001")),
    ]


def test_parse_address_prefers_local_and_keeps_label() -> None:
    ifaddr = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 3)
    body = (ifaddr + _rtattr(1, bytes([198, 51, 100, 9]))
            + _rtattr(2, bytes([192, 0, 2, 1])) + _rtattr(3, b"eth0:carp0\0"))
    (event,) = parse_rtnetlink(_nlmsg(21, body))
    assert event == AddressEvent(index=3, address=IPv4Interface("192.0.2.1/24"),
                                 label="eth0:carp0", deleted=True)


def _ifaddr6(kind: int, prefixlen: int, flags: int, index: int, *attrs: bytes) -> bytes:
    return _nlmsg(kind, struct.pack("=BBBBI", socket.AF_INET6, prefixlen, flags, 0, index)
                  + b"".join(attrs))


V6 = IPv6Address("2001:db8::100")


def test_parse_ipv6_address_removed() -> None:
    """RTM_DELADDR for AF_INET6: IFA_ADDRESS alone is the address (the kernel sends
    IFA_LOCAL over IPv6 only with a point-to-point peer); IPv6 has no label."""
    (event,) = parse_rtnetlink(_ifaddr6(21, 64, 0x80, 3, _rtattr(1, V6.packed)))
    assert event == AddressEvent(index=3, address=IPv6Interface(f"{V6}/64"), label="",
                                 deleted=True, flags=0x80)
    assert not event.tentative and not event.dadfailed and not event.usable


def test_parse_ipv6_prefers_local_over_the_peer() -> None:
    peer = IPv6Address("2001:db8::ffff").packed
    (event,) = parse_rtnetlink(_ifaddr6(20, 128, 0, 3, _rtattr(1, peer), _rtattr(2, V6.packed)))
    assert event.address == IPv6Interface(f"{V6}/128") and not event.deleted
    assert event.usable


@pytest.mark.parametrize(("flags", "tentative", "dadfailed", "usable"), [
    (0x80, False, False, True),  # permanent: DAD passed, usable
    (0x82, False, False, True),  # nodad (--manage-vip's): usable at once
    (0xC0, True, False, False),  # permanent, tentative: DAD under way
    (0xC8, True, True, False),  # DAD failed: tentative for good
])
def test_parse_ipv6_duplicate_address_detection_flags(
    flags: int, tentative: bool, dadfailed: bool, usable: bool
) -> None:
    """The header's 8-bit ifa_flags, as old kernels send them alone."""
    (event,) = parse_rtnetlink(_ifaddr6(20, 64, flags, 3, _rtattr(1, V6.packed)))
    assert (event.tentative, event.dadfailed, event.usable) == (tentative, dadfailed, usable)
    assert event.flags == flags


def test_parse_ifa_flags_attribute_wins_over_the_header() -> None:
    """IFA_FLAGS (32 bits) is the whole word; the header keeps only its low 8 bits. A
    tentative address the header calls settled is tentative (a crafted disagreement)."""
    word = 0x100 | 0x80 | 0x40  # IFA_F_MANAGETEMPADDR, PERMANENT, TENTATIVE
    (event,) = parse_rtnetlink(_ifaddr6(20, 64, 0x80, 3, _rtattr(1, V6.packed),
                                        _rtattr(8, struct.pack("=I", word))))
    assert event.flags == word and event.tentative and not event.usable
    short = _rtattr(8, b"\x40\x00")  # not 4 bytes: ignored, the header's flags stand
    (event,) = parse_rtnetlink(_ifaddr6(20, 64, 0x80, 3, _rtattr(1, V6.packed), short))
    assert event.flags == 0x80 and event.usable


def test_parse_skips_wrong_sizes_other_families_truncated_and_unknown() -> None:
    v6_short = _ifaddr6(20, 64, 0, 3, _rtattr(1, b"\0" * 4))  # 4 bytes for AF_INET6
    v4_long = _nlmsg(20, struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 3)
                     + _rtattr(2, b"\0" * 16))  # 16 bytes for AF_INET
    packet = _nlmsg(20, struct.pack("=BBBBI", socket.AF_PACKET, 0, 0, 0, 3)
                    + _rtattr(1, b"\0" * 6))
    no_address = _ifaddr6(21, 64, 0, 3, _rtattr(3, b"eth0\0"))
    unknown = _nlmsg(24, b"\0" * 12)  # RTM_NEWROUTE
    truncated = _nlmsg(16, b"\0" * 16)[:20]
    short_body = _nlmsg(20, b"\x0a\x40")  # shorter than struct ifaddrmsg
    data = v6_short + v4_long + packet + no_address + unknown + short_body + truncated
    assert parse_rtnetlink(data) == []
    assert parse_rtnetlink(_nlmsg(4, b"")) == [Resync()]


def test_parse_ipv4_and_ipv6_in_one_datagram() -> None:
    v4 = _nlmsg(21, struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, 5)
                + _rtattr(2, bytes([192, 0, 2, 100])))
    events = parse_rtnetlink(v4 + _ifaddr6(21, 64, 0, 5, _rtattr(1, V6.packed)))
    assert [e.address for e in events if isinstance(e, AddressEvent)] == [
        IPv4Interface("192.0.2.100/32"), IPv6Interface(f"{V6}/64")]


def test_missing_interface_message() -> None:
    with pytest.raises(RuntimeFailure, match=r"^Unable to find MAC address of \[nosuch0\]"):
        interface_facts("nosuch0")


# --------------------------------------------------------------------------
# Facts, in a namespace


@pytest.mark.netns
@needs_netns
def test_interface_facts(lab: Pair) -> None:
    run_ip("-n", lab.a, "addr", "add", str(VIP), "dev", "eth0", "label", "eth0:carp0")
    _wait_running(lab.a, "eth0")
    link = _link_json(lab.a, "eth0")
    with inside(lab.a):
        facts = interface_facts("eth0")
    assert facts.device == "eth0"
    assert facts.index == link["ifindex"]
    assert facts.mac == bytes.fromhex(str(link["address"]).replace(":", ""))
    assert {a for a in facts.addresses if a.version == 4} == {A_IF, VIP}
    # IPv6 ones follow the IPv4 ones: here the kernel's link-local address only.
    six = [a for a in facts.addresses if a.version == 6]
    assert facts.addresses[: len(facts.addresses) - len(six)] == tuple(
        a for a in facts.addresses if a.version == 4)
    assert all(a.ip.is_link_local for a in six)
    assert facts.up and facts.running and facts.usable


@pytest.mark.netns
@needs_netns
def test_facts_follow_carrier_and_admin_state(lab: Pair) -> None:
    run_ip("-n", lab.b, "link", "set", "eth0", "down")
    _wait_running(lab.a, "eth0", want=False)
    with inside(lab.a):
        facts = interface_facts("eth0")
    assert facts.up and not facts.running and not facts.usable
    run_ip("-n", lab.a, "link", "set", "eth0", "down")
    with inside(lab.a):
        facts = interface_facts("eth0")
    assert not facts.up and not facts.running


@pytest.mark.netns
@needs_netns
def test_missing_interface_inside_namespace(lab: Pair) -> None:
    with inside(lab.a):
        with pytest.raises(RuntimeFailure, match=r"\[eth7\]"):
            interface_facts("eth7")
        # A label is not a device, even when it exists.
        run_ip("-n", lab.a, "addr", "add", str(VIP), "dev", "eth0", "label", "eth0:carp0")
        with pytest.raises(RuntimeFailure, match="alias label"):
            interface_facts("eth0:carp0")


@pytest.mark.netns
@needs_netns
def test_has_address_sees_labelled_addresses(lab: Pair) -> None:
    with inside(lab.a):
        assert has_address("eth0", A_IF.ip)
        assert not has_address("eth0", VIP.ip)
        assert not has_address("eth0", B_IF.ip)
    run_ip("-n", lab.a, "addr", "add", str(VIP), "dev", "eth0", "label", "eth0:carp0")
    with inside(lab.a):
        assert has_address("eth0", VIP.ip)
        assert not has_address("lo", VIP.ip)


@pytest.mark.netns
@needs_netns
def test_default_interface(lab: Pair) -> None:
    _wait_running(lab.a, "eth0")
    with inside(lab.a):
        assert default_interface() == "eth0"
    run_ip("-n", lab.b, "link", "set", "eth0", "down")  # A's eth0 loses carrier
    _wait_running(lab.a, "eth0", want=False)
    with inside(lab.a):
        assert default_interface() is None


def _ucarp_choice(ns: str) -> str | None:
    done = subprocess.run(
        # ucarp logs through stdio: line-buffer it, as the kill loses a full buffer.
        ["ip", "netns", "exec", ns, "timeout", "0.5", "stdbuf", "-oL", UCARP,
         "-s", "192.0.2.1", "-v", "1", "-p", "x", "-a", "192.0.2.100"],
        capture_output=True, text=True, timeout=10, check=False,
    )
    found = re.search(r"Using \[(.+?)\] as a network interface", done.stdout)
    assert found, done.stdout + done.stderr
    return None if found.group(1) == "any" else found.group(1)


@pytest.mark.netns
@pytest.mark.cucarp
@needs_netns
@needs_ucarp
def test_default_interface_matches_ucarp(lab: Pair) -> None:
    # More candidates in A, in various states: v1 up without carrier,
    # v3/v4 up and running (v3 created first, so lower index), eth0 running.
    run_ip("-n", lab.a, "link", "add", "v1", "type", "veth", "peer", "name", "v2")
    run_ip("-n", lab.a, "link", "add", "v3", "type", "veth", "peer", "name", "v4")
    run_ip("-n", lab.a, "link", "set", "v1", "up")
    checks = 0
    expected = iter(["eth0", "eth0", "v4|v3", None])
    for step in (
        [],
        ["v3", "v4"],
        ["-eth0"],
        ["-v3", "-v4"],
    ):
        for name in step:
            state = "down" if name.startswith("-") else "up"
            run_ip("-n", lab.a, "link", "set", name.lstrip("-"), state)
        for name in step:
            if not name.startswith("-"):
                _wait_running(lab.a, name)
        with inside(lab.a):
            ours = default_interface()
        assert ours == _ucarp_choice(lab.a), step
        want = next(expected)
        assert (ours is None) if want is None else re.fullmatch(want, ours or ""), step
        checks += 1
    assert checks == 4


@pytest.mark.netns
@pytest.mark.cucarp
@needs_netns
@needs_ucarp
def test_missing_interface_text_matches_ucarp(lab: Pair) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", lab.a, "timeout", "2", UCARP, "-i", "nosuch0",
         "-s", "192.0.2.1", "-v", "1", "-p", "x", "-a", "192.0.2.100"],
        capture_output=True, text=True, timeout=10, check=False,
    )
    assert done.returncode == 2  # RuntimeFailure's exit status
    found = re.search(r"\[ERROR\] (Unable to find MAC address of \[nosuch0\])", done.stderr)
    assert found, done.stderr
    with inside(lab.a):
        with pytest.raises(RuntimeFailure) as info:
            interface_facts("nosuch0")
    assert str(info.value).startswith(found.group(1))


# --------------------------------------------------------------------------
# Link monitor


def wait_event(
    mon: LinkMonitor, pred: Callable[[MonitorEvent], bool], timeout: float = 3.0
) -> list[MonitorEvent]:
    """Read events until one satisfies ``pred``; return everything read."""
    seen: list[MonitorEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([mon], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            batch = mon.read_events()
            seen.extend(batch)
            if any(pred(e) for e in batch):
                return seen
    raise AssertionError(f"no matching event; saw {seen}")


def open_monitor(ns: str, **kw: int) -> LinkMonitor:
    """A LinkMonitor on namespace ``ns`` (it stays there), for a ``with`` block."""
    with inside(ns):
        return LinkMonitor(**kw)


def _is_link(name: str, **want: bool) -> Callable[[MonitorEvent], bool]:
    def pred(e: MonitorEvent) -> bool:
        return isinstance(e, LinkEvent) and e.name == name and all(
            getattr(e, k) == v for k, v in want.items())
    return pred


@pytest.mark.netns
@needs_netns
def test_monitor_reports_carrier_addresses_and_deletion(lab: Pair) -> None:
    _wait_running(lab.a, "eth0")
    with inside(lab.a):
        index = socket.if_nametoindex("eth0")
    with open_monitor(lab.a) as mon:
        assert mon.read_events() == []  # nothing queued, and no blocking

        run_ip("-n", lab.b, "link", "set", "eth0", "down")
        wait_event(mon, _is_link("eth0", up=True, running=False, deleted=False))

        run_ip("-n", lab.b, "link", "set", "eth0", "up")
        wait_event(mon, _is_link("eth0", up=True, running=True, deleted=False))

        run_ip("-n", lab.a, "addr", "add", str(VIP), "dev", "eth0", "label", "eth0:carp0")
        # flags: IFA_F_PERMANENT, as every address an admin adds (compared apart)
        added = AddressEvent(index=index, address=VIP, label="eth0:carp0", deleted=False)
        wait_event(mon, lambda e: isinstance(e, AddressEvent) and e._replace(flags=0) == added
                   and e.usable)

        run_ip("-n", lab.a, "addr", "del", str(VIP), "dev", "eth0")
        removed = AddressEvent(index=index, address=VIP, label="eth0:carp0", deleted=True)
        wait_event(mon, lambda e: isinstance(e, AddressEvent)
                   and e._replace(flags=0) == removed)

        run_ip("-n", lab.a, "link", "del", "eth0")
        seen = wait_event(mon, _is_link("eth0", deleted=True))
        assert any(isinstance(e, LinkEvent) and e.index == index and e.deleted
                   for e in seen)


@pytest.mark.netns
@needs_netns
def test_monitor_sees_only_its_namespace(lab: Pair) -> None:
    with open_monitor(lab.a) as mon:
        run_ip("-n", lab.b, "addr", "add", "198.51.100.7/32", "dev", "eth0")
        run_ip("-n", lab.a, "addr", "add", "198.51.100.8/32", "dev", "eth0")
        seen = wait_event(mon, lambda e: isinstance(e, AddressEvent)
                          and e.address.ip == IPv4Address("198.51.100.8"))
        assert not any(isinstance(e, AddressEvent)
                       and e.address.ip == IPv4Address("198.51.100.7") for e in seen)


@pytest.mark.netns
@needs_netns
def test_monitor_overrun_gives_resync(lab: Pair) -> None:
    with open_monitor(lab.a, rcvbuf=1024) as mon:  # the kernel's minimum: overruns at once
        batch = "".join(f"addr add 198.51.100.{i}/32 dev eth0\n" for i in range(1, 201))
        subprocess.run(["ip", "-n", lab.a, "-batch", "-"], input=batch, text=True,
                       capture_output=True, timeout=10, check=True)
        seen = wait_event(mon, lambda e: isinstance(e, Resync))
        # Still usable afterwards.
        run_ip("-n", lab.a, "addr", "del", "198.51.100.200/32", "dev", "eth0")
        seen += wait_event(mon, lambda e: isinstance(e, AddressEvent) and e.deleted)
        assert sum(isinstance(e, Resync) for e in seen) >= 1


def _is_address6(address: str, **want: bool) -> Callable[[MonitorEvent], bool]:
    wanted = IPv6Address(address)

    def pred(e: MonitorEvent) -> bool:
        return isinstance(e, AddressEvent) and e.address.ip == wanted and all(
            getattr(e, k) == v for k, v in want.items())
    return pred


@pytest.mark.netns
@needs_netns
def test_monitor_reports_ipv6_addresses_and_duplicate_address_detection(lab: Pair) -> None:
    """IPv6 as IPv4: an address added ``nodad`` is usable at once, its removal is reported.
    With duplicate address detection an address comes tentative, then usable once no
    neighbour claims it, or dadfailed when one does (b has it already)."""
    for ns in (lab.a, lab.b):
        for key in ("disable_ipv6=0", "accept_dad=1", "dad_transmits=1"):
            run_ip("netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.eth0.{key}")
    _wait_running(lab.a, "eth0")
    with inside(lab.a):
        index = socket.if_nametoindex("eth0")
    with open_monitor(lab.a) as mon:
        run_ip("-n", lab.a, "addr", "add", "2001:db8::100/64", "dev", "eth0", "nodad")
        seen = wait_event(mon, _is_address6("2001:db8::100", deleted=False))
        (added,) = [e for e in seen if _is_address6("2001:db8::100")(e)]
        assert isinstance(added, AddressEvent) and added.index == index and added.usable
        assert added.address == IPv6Interface("2001:db8::100/64") and added.label == ""

        run_ip("-n", lab.a, "addr", "del", "2001:db8::100/64", "dev", "eth0")
        wait_event(mon, _is_address6("2001:db8::100", deleted=True))

        run_ip("-n", lab.a, "addr", "add", "2001:db8::101/64", "dev", "eth0")
        wait_event(mon, _is_address6("2001:db8::101", tentative=True, deleted=False))
        wait_event(mon, _is_address6("2001:db8::101", usable=True), timeout=5)

        run_ip("-n", lab.b, "addr", "add", "2001:db8::102/64", "dev", "eth0", "nodad")
        run_ip("-n", lab.a, "addr", "add", "2001:db8::102/64", "dev", "eth0")
        seen = wait_event(mon, _is_address6("2001:db8::102", dadfailed=True), timeout=5)
        assert not any(_is_address6("2001:db8::102", usable=True)(e) for e in seen), seen
