"""``pyucarp watch``: dissection and HMAC checks on ucarp's golden frames and on the IPv6
golden frames of tests/test_codec6.py (frames built there with scapy and hmac, not by the
codec), then live captures in namespace labs: an IPv4 cluster with one misconfigured node,
an IPv6 pair with several addresses, and an IPv6 pair of unicast peers."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import hmac
import io
import re
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pyucarp.config import options
from pyucarp.lab.daemons import Daemon, pyucarp_command, pyucarp_env, start_node, start_ucarp
from pyucarp.lab.netlab import Host, Lab, wait_until
from pyucarp.ops import watch
from test_codec6 import GOLDEN as GOLDEN6
from test_codec6 import GOLDEN_IDS as GOLDEN6_IDS
from test_codec6 import NA_GOLDEN, NA_MAC, NA_SRC, NA_VIP, Golden, carp_header

# Real captures (docs/compat.md §2): password, vhid, VIP, and the 70-byte frame.
REPO = Path(__file__).resolve().parent.parent
GOLDEN = [
    ("love", 42, "10.0.0.100",
     "01005e00001200005e00002a0800" "45100038e6f44000ff70aa3d0a000001e0000012"
     "212a0a070001ada0880deaba87c473338137d9f5f5b1a182f7af53a691f75547040b906a"),
    ("s3cret", 7, "10.99.0.100",
     "01005e00001200005e0000070800" "45100038574b4000ff7039840a630001e0000012"
     "2107000700014f20432b2ae7b4517aec863dff8eccc89245101e6c1ae4f968d812443156"),
]


def _frame(hexdata: str) -> bytes:
    return bytes.fromhex(hexdata)


@pytest.mark.parametrize("password, vhid, vip, hexdata", GOLDEN)
def test_hmac_includes_the_counter(password: str, vhid: int, vip: str, hexdata: str) -> None:
    frame = _frame(hexdata)
    counter = int.from_bytes(frame[34 + 8:34 + 16], "big")
    assert watch.carp_hmac(password.encode(), vhid, IPv4Address(vip), counter) == frame[-20:]
    # Without the counter (scapy's helper) it would not match.
    assert watch.carp_hmac(password.encode(), vhid, IPv4Address(vip), counter + 1) != frame[-20:]


@pytest.mark.parametrize("password, vhid, vip, hexdata", GOLDEN)
def test_dissect_golden(password: str, vhid: int, vip: str, hexdata: str) -> None:
    frame = _frame(hexdata)
    view = watch.dissect(frame, 1000.25, password.encode(), IPv4Address(vip))
    assert view is not None and view.carp
    assert (view.vhid, view.ttl, view.checksum_ok, view.ip_checksum_ok, view.hmac_ok) == (
        vhid, 255, True, True, True)
    assert view.src_mac == f"00:00:5e:00:00:{vhid:02x}" and view.dst == "224.0.0.18"
    line = watch.format_view(view, password_given=True)
    assert f"vhid {vhid}" in line and "HMAC ok" in line and "cksum ok" in line
    assert f"counter {frame[42:50].hex()}" in line and "LEAVE" not in line
    bad = watch.dissect(frame, 0, b"wrong", IPv4Address(vip))
    assert bad is not None and bad.hmac_ok is False and bad.bad
    assert "HMAC BAD (wrong password or VIP?)" in watch.format_view(bad, True)
    unknown = watch.dissect(frame, 0, password.encode(), None)
    assert unknown is not None and unknown.hmac_ok is None and not unknown.bad
    assert "HMAC ? (give -a)" in watch.format_view(unknown, True)
    assert "HMAC" not in watch.format_view(watch.dissect(frame, 0) or unknown, False)


def test_leave_checksum_ttl_and_not_carp() -> None:
    frame = bytearray(_frame(GOLDEN[1][3]))
    leave = bytearray(frame)
    leave[34 + 2] = 255  # advskew (the checksum is now wrong too)
    leave[34 + 5] = 255  # advbase
    view = watch.dissect(bytes(leave), 0)
    assert view is not None and view.leave and not view.checksum_ok and view.bad
    line = watch.format_view(view, False)
    assert "advbase/skew 255/255 LEAVE" in line and "cksum BAD" in line
    ttl = bytearray(frame)
    ttl[22] = 64  # TTL (IP checksum now wrong as well)
    view = watch.dissect(bytes(ttl), 0)
    assert view is not None and "ttl 64 BAD" in watch.format_view(view, False) and view.bad
    vrrp = bytearray(frame[:34]) + bytes.fromhex("2107640101010000c0000264") + bytes(8)
    view = watch.dissect(bytes(vrrp), 0)
    assert view is not None and not view.carp and "not a CARP" in watch.format_view(view, False)
    arp = bytes.fromhex("ffffffffffff020000000001" "0806") + bytes(28)
    assert watch.dissect(arp, 0) is None


def test_watcher_vhid_filter_and_exit_status() -> None:
    out = io.StringIO()
    w = watch.Watcher(out, b"s3cret", IPv4Address("10.99.0.100"), vhid=7)
    assert w.exit_status() == 3
    frame = _frame(GOLDEN[1][3])
    assert w.wanted(frame) and not w.wanted(_frame(GOLDEN[0][3]))
    w.handle(frame, time.time())
    assert w.exit_status() == 0 and out.getvalue().count("\n") == 1
    w.password = b"nope"
    w.handle(frame, time.time())
    assert w.exit_status() == 1 and w.seen == 2 and w.bad == 1


def test_password_file_read_as_the_daemon_reads_it(tmp_path: Path) -> None:
    # One reader for -o, the daemon's (its cases are in test_options.py).
    assert watch.read_passfile is options.read_passfile
    path = tmp_path / "pass"
    path.write_bytes(b"")
    proc = subprocess.run([*pyucarp_command(), "watch", "-i", "lo", "-o", str(path)],
                          capture_output=True, text=True, env=pyucarp_env(), cwd=REPO,
                          timeout=30)
    assert proc.returncode == 2
    assert f"error reading passfile {path}: unexpected end of file" in proc.stderr


def test_scapy_only_with_watch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pyucarp import cli\n"
        "from pyucarp.ops import admin, metrics\n"
        "from pyucarp.shell import loop\n"
        f"cli.main(['status', '--statedir', {str(tmp_path)!r}])\n"
        f"cli.main(['metrics', '--statedir', {str(tmp_path)!r}])\n"
        "assert not [m for m in sys.modules if m.startswith('scapy')], 'scapy imported'\n"
        "from pyucarp.ops import watch\n"
        "assert not [m for m in sys.modules if m.startswith('scapy')], 'scapy at import'\n"
        "print('clean')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=pyucarp_env(), cwd=REPO, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("clean"), proc.stderr


def test_usage_errors() -> None:
    def run(*args: str) -> int:
        return subprocess.run([*pyucarp_command(), "watch", *args], capture_output=True,
                              env=pyucarp_env(), cwd=REPO, timeout=30).returncode

    assert run() == 2  # -i is required
    assert run("-i", "eth0", "-a", "not-an-ip") == 2
    assert run("-i", "eth0", "-p", "x" * 20) == 2  # ucarp caps passwords at 19 bytes
    assert run("-i", "eth0", "-p", "a", "-o", "/dev/null") == 2
    assert run("-i", "pyu-nosuch0", "--timeout", "1") == 2  # a capture error, no traceback


@pytest.mark.parametrize("args, message", [
    (["-i", "eth0", "-a", "2001:db8::zz"], "argument -a/--addr: not an IP address: 2001:db8::zz"),
    (["-i", "eth0", "-a", "2001:db8::100%eth0"],
     "argument -a/--addr: give 2001:db8::100%eth0 without a scope (%...)"),
    (["-i", "eth0", "-a", "2001:db8::100", "-a", "192.0.2.300"],
     "argument -a/--addr: not an IP address: 192.0.2.300"),
    (["-i", "eth0", "-v", "256"], "vhid must be between 1 and 255"),
    (["-i", "eth0", "--count", "0"], "--count must be positive"),
    (["-i", "eth0", "--timeout", "-1"], "--timeout must be positive"),
    ([], "the following arguments are required: -i/--interface"),
])
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    proc = subprocess.run([*pyucarp_command(), "watch", *args], capture_output=True, text=True,
                          env=pyucarp_env(), cwd=REPO, timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"pyucarp watch: error: {message}"], proc.stderr


# --------------------------------------------------------------------------- IPv6


def _frame6(carp: bytes, *, src: str = "2001:db8::2", dst: str = "ff02::12", hlim: int = 255,
            eth_dst: str = "33:33:00:00:00:12", tail: bytes = b"") -> bytes:
    """An advert built by scapy around 36 CARP bytes (``tail``: link padding past them)."""
    pkt = Ether(dst=eth_dst, src="00:00:5e:00:01:07") / IPv6(
        src=src, dst=dst, nh=112, hlim=hlim, plen=len(carp)) / Raw(carp + tail)
    return bytes(pkt)


G7 = GOLDEN6[1]  # s3cret, vhid 7, 2001:db8::b, 2001:db8::a and fe80::1, multicast
G7_HASHED = bytes.fromhex("20010db800000000000000000000000a 20010db800000000000000000000000b")


def _carp7(*, hashed: bytes = G7_HASHED, advbase: int = 1, advskew: int = 0,
           counter: int = 0x432B2AE7B4517AEC, **kw: Any) -> bytes:
    return carp_header(G7.password, G7.vhid, hashed, advbase, advskew, counter, **kw)


@pytest.mark.parametrize("g", GOLDEN6, ids=GOLDEN6_IDS)
def test_carp6_hmac_is_hmac_over_the_documented_bytes(g: Golden) -> None:
    """The watch's own IPv6 HMAC against the message written out by hand (compat.md §10):
    every non-link-local address, sorted, and the counter."""
    expected = hmac.new(g.password, bytes([2, 1, g.vhid]) + g.hashed
                        + g.counter.to_bytes(8, "big"), hashlib.sha1).digest()
    assert watch.carp6_hmac(g.password, g.vhid, g.vips, g.counter) == expected == g.frame[-20:]
    assert watch.carp6_hmac(g.password, g.vhid, g.vips[::-1] * 2, g.counter) == expected
    assert watch.carp6_hmac(g.password, g.vhid, g.vips, g.counter + 1) != expected


def test_the_ipv6_hmac_is_not_codec6s() -> None:
    # watch is an independent check: it must not take the daemon's IPv6 code at all.
    tree = ast.parse((REPO / "pyucarp" / "ops" / "watch.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert "pyucarp.core.codec" in imported
    assert not [m for m in imported if m and "codec6" in m], imported


@pytest.mark.parametrize("g", GOLDEN6, ids=GOLDEN6_IDS)
def test_dissect_ipv6_golden(g: Golden) -> None:
    view = watch.dissect(g.frame, 1000.25, g.password, list(g.vips))
    assert isinstance(view, watch.AdvertView) and view.carp and view.family == 6
    assert (view.src, view.vhid, view.advbase, view.advskew, view.counter, view.demote) == (
        str(g.src), g.vhid, g.advbase, g.advskew, g.counter, 0)
    assert (view.ttl, view.checksum_ok, view.hmac_ok, view.leave, view.bad) == (
        255, True, True, False, False)
    line = watch.format_view(view, password_given=True)
    assert re.search(rf"^\d\d:\d\d:\d\d\.250000 {re.escape(str(g.src))} +"
                     rf"{':'.join(f'{b:02x}' for b in g.eth_src)} ", line), line
    assert (f" vhid {g.vhid:<3} advbase/skew {g.advbase}/{g.advskew} counter {g.counter:016x}"
            " hlim 255 cksum ok HMAC ok") in line and line.endswith("HMAC ok")
    if g.peer is None:
        assert view.dst == "ff02::12" and not view.unicast and " to " not in line
    else:
        assert view.dst == str(g.peer) and view.unicast and f" to {g.peer} vhid" in line
    # The addresses in another order, repeated, mixed with an IPv4 one: the same verdict.
    mixed = [IPv4Address("192.0.2.100"), *reversed(g.vips), *g.vips]
    assert watch.dissect(g.frame, 0, g.password, mixed) == dataclasses.replace(view, time=0)
    for password, vips in ((b"wrong", list(g.vips)),
                           (g.password, [*g.vips, IPv6Address("2001:db8:ffff::1")]),
                           (g.password, [IPv6Address(int(g.vips[0]) + 1)])):
        bad = watch.dissect(g.frame, 0, password, vips)
        assert isinstance(bad, watch.AdvertView) and bad.hmac_ok is False and bad.bad, vips
        assert watch.format_view(bad, True).endswith(" HMAC BAD (wrong password or VIP?)")
    # Only an IPv4 address (or none): nothing to check an IPv6 advert against.
    for vips4 in ([IPv4Address("192.0.2.100")], IPv4Address("192.0.2.100"), None, []):
        unknown = watch.dissect(g.frame, 0, g.password, vips4)
        assert isinstance(unknown, watch.AdvertView) and unknown.hmac_ok is None
        assert not unknown.bad and watch.format_view(unknown, True).endswith("HMAC ? (give -a)")
    assert "HMAC" not in watch.format_view(unknown, False)


def test_ipv6_hmac_with_link_local_addresses_in_either_form() -> None:
    """G7 lists fe80::1: the form without it (sent) and the one hashing it with bytes 2-3
    cleared (FreeBSD's) both pass, as the daemon accepts both; the latter fails when
    fe80::1 is not among the addresses given."""
    orig = _frame6(_carp7(hashed=G7_HASHED + IPv6Address("fe80::1").packed))
    for frame in (G7.frame, orig):
        view = watch.dissect(frame, 0, G7.password, list(G7.vips))
        assert isinstance(view, watch.AdvertView) and view.hmac_ok is True
    without = [v for v in G7.vips if not v.is_link_local]
    view = watch.dissect(G7.frame, 0, G7.password, without)
    assert isinstance(view, watch.AdvertView) and view.hmac_ok is True
    view = watch.dissect(orig, 0, G7.password, without)
    assert isinstance(view, watch.AdvertView) and view.hmac_ok is False


def test_ipv6_hop_limit_checksum_leave_demote_padding_and_not_carp() -> None:
    vips = list(G7.vips)

    def seen(frame: bytes) -> tuple[watch.AdvertView, str]:
        view = watch.dissect(frame, 0, G7.password, vips)
        assert isinstance(view, watch.AdvertView)
        return view, watch.format_view(view, True)

    assert _frame6(_carp7()) == G7.frame  # the helper builds the golden frame
    view, line = seen(_frame6(_carp7(), hlim=64))
    assert view.bad and view.hmac_ok and " hlim 64 BAD cksum ok HMAC ok" in line
    broken = bytearray(G7.frame)
    broken[54 + 6] ^= 0xFF  # the CARP checksum
    view, line = seen(bytes(broken))
    assert view.bad and " hlim 255 cksum BAD HMAC ok" in line
    view, line = seen(_frame6(_carp7(advbase=255, advskew=255)))
    assert view.leave and not view.bad and "advbase/skew 255/255 LEAVE counter" in line
    view, line = seen(_frame6(_carp7(demote=3)))
    assert view.demote == 3 and not view.bad and "advbase/skew 1/0 demote 3 counter" in line
    view, line = seen(_frame6(_carp7(), tail=b"\xee" * 6))  # link padding past the length
    assert view.carp and not view.bad and line.endswith("cksum ok HMAC ok")
    vrrp3 = bytes.fromhex("3107640000010000") + bytes(16)  # VRRPv3 uses next header 112 too
    view, line = seen(_frame6(vrrp3))
    assert not view.carp and view.bad and line.endswith(
        "00:00:5e:00:01:07 not a CARP advertisement (VRRP?) hlim 255")
    short = _frame6(_carp7()[:30])
    view, _ = seen(short)
    assert not view.carp and view.bad
    # An advert to a unicast peer from a link-local source.
    view, line = seen(_frame6(_carp7(), src="fe80::1", dst="fe80::2",
                              eth_dst="02:00:00:00:00:02"))
    assert view.unicast and view.hmac_ok and " fe80::1         00:00:5e:00:01:07 to fe80::2 " \
        "vhid 7" in line
    # Neither IPv6 protocol 112 nor a Neighbour Advertisement: not shown.
    udp = Ether() / IPv6(src="2001:db8::1", dst="ff02::12", nh=17) / Raw(bytes(40))
    assert watch.dissect(bytes(udp), 0, G7.password, vips) is None


NA_MAC_TEXT = ":".join(f"{b:02x}" for b in NA_MAC)


def _na(*, target: IPv6Address = NA_VIP, hlim: int = 255, solicited: bool = False,
        router: bool = False, lladdr: bool = True, dst: str = "ff02::1") -> bytes:
    """A Neighbour Advertisement built by scapy (by default the golden one)."""
    pkt = Ether(dst="33:33:00:00:00:01", src=NA_MAC_TEXT) / IPv6(
        src=str(NA_SRC), dst=dst, hlim=hlim) / ICMPv6ND_NA(
        R=int(router), S=int(solicited), O=1, tgt=str(target))
    if lladdr:
        pkt = pkt / ICMPv6NDOptDstLLAddr(lladdr=NA_MAC_TEXT)
    return bytes(pkt)


def test_neighbour_advertisements_for_watched_addresses() -> None:
    assert _na() == NA_GOLDEN
    view = watch.dissect(NA_GOLDEN, 1000.5, None, [IPv4Address("192.0.2.1"), NA_VIP])
    assert isinstance(view, watch.NeighbourView) and not view.bad
    assert (view.src, view.target, view.lladdr, view.override, view.router) == (
        str(NA_SRC), str(NA_VIP), "02:00:00:c0:ff:ee", True, False)
    line = watch.format_view(view, True)
    assert line.endswith(f" {NA_SRC} 02:00:00:c0:ff:ee NA {NA_VIP} is-at 02:00:00:c0:ff:ee"
                         " override hlim 255 cksum ok"), line
    assert line.startswith(watch.format_view(
        watch.dissect(G7.frame, 1000.5) or view, False)[:16])  # the advert's time stamp
    # Not for a watched address, or solicited (an answer, not an announcement): not shown.
    assert watch.dissect(NA_GOLDEN, 0, None, [IPv6Address("2001:db8::1")]) is None
    assert watch.dissect(NA_GOLDEN, 0, None, None) is None
    assert watch.dissect(_na(solicited=True), 0, None, [NA_VIP]) is None
    for frame, end in ((_na(hlim=64), " hlim 64 BAD cksum ok"),
                       (NA_GOLDEN[:56] + b"\x00\x00" + NA_GOLDEN[58:], " hlim 255 cksum BAD")):
        bad = watch.dissect(frame, 0, None, [NA_VIP])
        assert isinstance(bad, watch.NeighbourView) and bad.bad
        assert watch.format_view(bad, False).endswith(end)
    odd = watch.dissect(_na(router=True, lladdr=False, dst="2001:db8::9"), 0, None, [NA_VIP])
    assert isinstance(odd, watch.NeighbourView) and not odd.bad
    assert f"to 2001:db8::9 NA {NA_VIP} is-at (none) override router hlim 255" in \
        watch.format_view(odd, False)


def test_watcher_ipv6_vhid_filter_neighbours_and_exit_status() -> None:
    out = io.StringIO()
    vips = [IPv4Address("10.99.0.100"), *G7.vips]
    w = watch.Watcher(out, G7.password, vips, vhid=7)
    announce = _na(target=G7.vips[0])  # a Neighbour Advertisement has no vhid: it passes
    assert w.wanted(G7.frame) and not w.wanted(GOLDEN6[0].frame) and w.wanted(announce)
    w.handle(NA_GOLDEN, time.time())  # not a watched address
    w.handle(announce, time.time())
    assert (w.seen, w.neighbours, w.exit_status()) == (0, 1, 3)  # no advert yet
    w.handle(G7.frame, time.time())
    w.password = b"s3cret"  # the IPv4 golden frame's, checked against its VIP
    w.handle(_frame(GOLDEN[1][3]), time.time())
    assert (w.seen, w.bad, w.exit_status()) == (2, 0, 0), out.getvalue()
    assert w.summary() == "2 advertisement(s), 0 bad, 1 neighbour advertisement(s), 0 bad"
    w.handle(_na(target=G7.vips[1], hlim=1), time.time())
    assert (w.neighbours_bad, w.exit_status()) == (1, 1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and " NA " in lines[0] and " hlim 255 " in lines[1]
    assert " ttl 255 " in lines[2] and lines[1].endswith("HMAC ok") and lines[2].endswith("HMAC ok")


def test_python_filter_takes_what_the_bpf_filter_takes() -> None:
    assert watch._is_carp(G7.frame) and watch._is_carp(NA_GOLDEN)
    assert watch._is_carp(_frame(GOLDEN[0][3]))
    solicitation = Ether() / IPv6(src="2001:db8::1", dst="ff02::1:ff00:1", nh=58) / Raw(
        bytes([135]) + bytes(23))
    assert not watch._is_carp(bytes(solicitation))
    assert not watch._is_carp(bytes(Ether() / IPv6(nh=17) / Raw(bytes(36))))
    assert "ip6 proto 112" in watch.BPF_FILTER and "ip proto 112" in watch.BPF_FILTER


def test_bpf_filter_compiles() -> None:
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        compile_filter(watch.BPF_FILTER)
    except Scapy_Exception as exc:  # no libpcap or tcpdump: watch filters in Python
        pytest.skip(str(exc))


# --------------------------------------------------------------------------- live


LINE_RE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{6} (?P<src>[\d.]+) +(?P<mac>[0-9a-f:]{17}) vhid (?P<vhid>\d+) +"
    r"advbase/skew (?P<base>\d+)/(?P<skew>\d+)(?P<leave> LEAVE)? counter (?P<counter>[0-9a-f]{16}) "
    r"ttl (?P<ttl>\d+) cksum (?P<cksum>ok|BAD)(?P<rest>.*)$"
)


@pytest.mark.netns
def test_watch_a_cluster_with_a_misconfigured_node(lab: Lab, tmp_path: Path) -> None:
    vip = "192.0.2.100"
    ha = lab.add_host("a", "192.0.2.1/24")
    hb = lab.add_host("b", "192.0.2.2/24")
    hc = lab.add_host("c", "192.0.2.3/24")
    hw = lab.add_host("w", "192.0.2.9/24")
    passfile = tmp_path / "c.pass"
    passfile.write_text("wrong\n")
    watchers = {}
    for label, args in {
        "good": ["-p", "s3cret", "-a", vip],
        "cpass": ["-o", str(passfile), "-a", vip],
        "noaddr": ["-p", "s3cret"],
    }.items():
        out = open(tmp_path / f"{label}.out", "wb")
        err = open(tmp_path / f"{label}.err", "wb")
        watchers[label] = hw.popen([*pyucarp_command(), "watch", "-i", "eth0", *args,
                                    "--timeout", "40"],
                                   stdout=out, stderr=err, env=pyucarp_env(), cwd=REPO)
        out.close()
        err.close()

    def text(label: str, ext: str = "out") -> str:
        return (tmp_path / f"{label}.{ext}").read_text()

    assert wait_until(lambda: all("watching eth0" in text(k, "err") for k in watchers), 20), \
        {k: text(k, "err") for k in watchers}

    def statedir(name: str) -> list[str]:
        return ["--statedir", str(tmp_path / f"state-{name}")]

    a = start_node(ha, tmp_path, name="a", vip=vip, advskew=0, deadratio=2, shutdown=True,
                   extra=statedir("a"))
    b = start_node(hb, tmp_path, name="b", vip=vip, advskew=100, deadratio=2, shutdown=True,
                   extra=statedir("b"))
    # c has the wrong password: it hears nobody it trusts and advertises on its own.
    start_node(hc, tmp_path, name="c", vip=vip, advskew=200, deadratio=2, password="wrong",
               extra=statedir("c"))

    def lines(label: str) -> list[re.Match[str]]:
        return [m for m in map(LINE_RE.match, text(label).splitlines()) if m]

    def seen(label: str, src: str) -> list[re.Match[str]]:
        return [m for m in lines(label) if m["src"] == src]

    assert wait_until(lambda: len(seen("good", ha.ip)) >= 2 and bool(seen("good", hc.ip)), 15), \
        text("good")
    a.stop(signal.SIGTERM)  # -z: a leave advert, then b takes over at once
    assert wait_until(lambda: len(seen("good", hb.ip)) >= 2, 10), (text("good"), b.log())
    for label in ("noaddr", "cpass"):
        assert wait_until(lambda lb=label: len(seen(lb, hb.ip)) >= 2, 5), text(label)
    codes = {}
    for label, proc in watchers.items():
        proc.send_signal(signal.SIGINT)
        codes[label] = proc.wait(timeout=10)

    good = lines("good")
    assert all(m["vhid"] == "7" and m["ttl"] == "255" and m["cksum"] == "ok" for m in good)
    assert all(m["mac"] == "00:00:5e:00:00:07" for m in good)
    for m in good:
        expected = " HMAC BAD (wrong password or VIP?)" if m["src"] == hc.ip else " HMAC ok"
        assert m["rest"] == expected, m.string
    leaves = [m for m in good if m["src"] == ha.ip and m["leave"]]
    assert len(leaves) == 1 and (leaves[0]["base"], leaves[0]["skew"]) == ("255", "255")
    assert {(m["base"], m["skew"]) for m in good if m["src"] == hb.ip} == {("1", "100")}
    # Adverts come in order: a's, a's leave, then b's.
    ab = [m for m in good if m["src"] != hc.ip]
    i_leave = ab.index(leaves[0])
    assert all(m["src"] == ha.ip for m in ab[:i_leave]), [m.string for m in ab]
    assert all(m["src"] == hb.ip for m in ab[i_leave + 1:]), [m.string for m in ab]
    assert codes["good"] == 1  # bad adverts (c's) were seen
    for m in lines("cpass"):
        expected = " HMAC ok" if m["src"] == hc.ip else " HMAC BAD (wrong password or VIP?)"
        assert m["rest"] == expected, m.string
    assert all(m["rest"] == " HMAC ? (give -a)" for m in lines("noaddr"))
    assert codes["noaddr"] == 0
    assert re.search(r"^\d+ advertisement\(s\), \d+ bad$", text("good", "err"), re.M)


# --------------------------------------------------------------------------- live IPv6


LINE6_RE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{6} (?P<src>[0-9a-f:]+) +(?P<mac>[0-9a-f:]{17})(?: to (?P<dst>\S+))?"
    r" vhid (?P<vhid>\d+) +advbase/skew (?P<base>\d+)/(?P<skew>\d+)(?P<leave> LEAVE)?"
    r" counter (?P<counter>[0-9a-f]{16}) hlim (?P<hlim>\d+) cksum (?P<cksum>ok|BAD)(?P<rest>.*)$"
)
NA_RE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{6} (?P<src>[0-9a-f:]+) +(?P<mac>[0-9a-f:]{17}) NA (?P<target>\S+)"
    r" is-at (?P<lladdr>\S+) override hlim (?P<hlim>\d+) cksum (?P<cksum>ok|BAD)$"
)
VIPS6 = ("2001:db8::100", "2001:db8::101")


class LiveWatch:
    """One ``pyucarp watch`` in a lab host, its output in files under ``tmp_path``."""

    def __init__(self, host: Host, tmp_path: Path, label: str, args: list[str]) -> None:
        self.out_path = tmp_path / f"{label}.out"
        self.err_path = tmp_path / f"{label}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = host.popen([*pyucarp_command(), "watch", "-i", "eth0", *args],
                                   stdout=out, stderr=err, env=pyucarp_env(), cwd=REPO)

    def out(self) -> str:
        return self.out_path.read_text()

    def err(self) -> str:
        return self.err_path.read_text()

    def adverts(self, src: str | None = None) -> list[re.Match[str]]:
        found = [m for m in map(LINE6_RE.match, self.out().splitlines()) if m]
        return [m for m in found if src is None or m["src"] == src]

    def neighbours(self) -> list[re.Match[str]]:
        return [m for m in map(NA_RE.match, self.out().splitlines()) if m]

    def stop(self) -> int:
        """SIGINT (as Ctrl-C), then its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=10)


def _node6(host: Host, tmp_path: Path, name: str, vips: tuple[str, ...], advskew: int,
           extra: tuple[str, ...] = ()) -> Daemon:
    assert host.ip6 is not None
    args = ["-i", "eth0", "-s", host.ip6, "-v", "7", "-p", "s3cret", "-k", str(advskew), "-z"]
    for vip in vips:
        args += ["-a", vip]
    return start_ucarp(host, tmp_path, [*args, *extra], name=name)


@pytest.mark.netns
def test_watch_an_ipv6_pair(lab: Lab, tmp_path: Path) -> None:
    """A pair with two addresses (listed in another order on each node) hands over with a
    leave advert. The watch checks every advert's HMAC over both addresses, flags every one
    when given a wrong password or one address only, and shows each master's unsolicited
    Neighbour Advertisements for both addresses, with its MAC."""
    ha = lab.add_host("a", "192.0.2.1/24", addr6="2001:db8::1")
    hb = lab.add_host("b", "192.0.2.2/24", addr6="2001:db8::2")
    hw = lab.add_host("w", "192.0.2.9/24", addr6="2001:db8::9")
    passfile = tmp_path / "wrong.pass"
    passfile.write_text("wrong\n")
    watchers = {
        "good": LiveWatch(hw, tmp_path, "good", ["-p", "s3cret", "-a", VIPS6[1], "-a", VIPS6[0],
                                                 "-v", "7", "--timeout", "40"]),
        "wrong": LiveWatch(hw, tmp_path, "wrong", ["-o", str(passfile), "-a", VIPS6[0],
                                                   "-a", VIPS6[1], "--timeout", "40"]),
        "one": LiveWatch(hw, tmp_path, "one", ["-p", "s3cret", "-a", VIPS6[0],
                                               "--timeout", "40"]),
    }
    assert wait_until(lambda: all("watching eth0" in w.err() for w in watchers.values()), 20), \
        {k: w.err() for k, w in watchers.items()}
    good = watchers["good"]
    a = _node6(ha, tmp_path, "a", VIPS6, 0)
    b = _node6(hb, tmp_path, "b", VIPS6[::-1], 50)
    assert ha.ip6 is not None and hb.ip6 is not None
    assert wait_until(lambda: len(good.adverts(ha.ip6)) >= 2, 15), (good.out(), a.log())
    assert a.stop(signal.SIGTERM) == 0  # -z: a leave advert, then b takes over at once
    assert wait_until(lambda: len(good.adverts(hb.ip6)) >= 2, 10), (good.out(), b.log())
    assert wait_until(lambda: {(m["target"], m["lladdr"]) for m in good.neighbours()}
                      >= {(v, hb.mac()) for v in VIPS6}, 5), good.out()
    for label in ("wrong", "one"):
        assert wait_until(lambda lb=label: len(watchers[lb].adverts(hb.ip6)) >= 2, 5), \
            watchers[label].out()
    codes = {label: w.stop() for label, w in watchers.items()}
    b.stop(signal.SIGTERM)

    ads = good.adverts()
    assert {m["src"] for m in ads} == {ha.ip6, hb.ip6}, good.out()
    for m in ads:
        assert (m["vhid"], m["hlim"], m["cksum"], m["rest"]) == ("7", "255", "ok", " HMAC ok"), \
            m.string
        assert m["mac"] == "00:00:5e:00:01:07" and m["dst"] is None, m.string
    leaves = [m for m in ads if m["leave"]]
    assert [(m["src"], m["base"], m["skew"]) for m in leaves] == [(ha.ip6, "255", "255")]
    i_leave = ads.index(leaves[0])
    assert all(m["src"] == ha.ip6 for m in ads[:i_leave]), good.out()
    assert {(m["src"], m["base"], m["skew"]) for m in ads[i_leave + 1:]} == {(hb.ip6, "1", "50")}
    # Neighbour Advertisements: a's when it became master, b's after the hand-over, each
    # from the sender's own MAC, for both addresses; nothing else.
    nas = good.neighbours()
    assert {(m["target"], m["lladdr"]) for m in nas} == {(v, h.mac()) for v in VIPS6
                                                          for h in (ha, hb)}, good.out()
    assert all(m["mac"] == m["lladdr"] and (m["hlim"], m["cksum"]) == ("255", "ok")
               for m in nas), good.out()
    assert len(good.out().splitlines()) == len(ads) + len(nas), good.out()
    assert codes["good"] == 0, good.err()
    assert re.search(rf"^{len(ads)} advertisement\(s\), 0 bad, {len(nas)} neighbour "
                     r"advertisement\(s\), 0 bad$", good.err(), re.M), good.err()
    for label in ("wrong", "one"):
        seen = watchers[label].adverts()
        assert seen and all(m["rest"] == " HMAC BAD (wrong password or VIP?)" for m in seen), \
            watchers[label].out()
        assert codes[label] == 1, watchers[label].err()
    # Only the addresses given are watched for Neighbour Advertisements.
    assert {m["target"] for m in watchers["one"].neighbours()} == {VIPS6[0]}


@pytest.mark.netns
def test_watch_ipv6_unicast_adverts_to_a_peer(lab: Lab, tmp_path: Path) -> None:
    """``--peer`` over IPv6: watched on the backup's own interface, the master's adverts
    are shown with their unicast destination and a good HMAC; ``--count`` ends the watch."""
    ha = lab.add_host("a", "192.0.2.1/24", addr6="2001:db8::1")
    hb = lab.add_host("b", "192.0.2.2/24", addr6="2001:db8::2")
    assert ha.ip6 is not None and hb.ip6 is not None
    w = LiveWatch(hb, tmp_path, "peer", ["-p", "s3cret", "-a", VIPS6[0], "--count", "3",
                                         "--timeout", "30"])
    assert wait_until(lambda: "watching eth0" in w.err(), 20), w.err()
    _node6(ha, tmp_path, "a", VIPS6[:1], 0, ("--peer", hb.ip6))
    _node6(hb, tmp_path, "b", VIPS6[:1], 50, ("--peer", ha.ip6))
    code = w.proc.wait(timeout=40)
    ads = w.adverts()
    assert code == 0 and len(ads) == 3, (w.out(), w.err())
    for m in ads:
        peer = hb.ip6 if m["src"] == ha.ip6 else ha.ip6
        assert (m["dst"], m["hlim"], m["cksum"], m["rest"]) == (peer, "255", "ok", " HMAC ok"), \
            m.string
    assert any(m["src"] == ha.ip6 and m["mac"] == ha.mac() for m in ads), w.out()
    assert "3 advertisement(s), 0 bad" in w.err()
