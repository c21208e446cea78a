"""``pyucarp watch``: dissection and HMAC checks on ucarp's golden frames, then a live
capture of a cluster with one misconfigured node, in a namespace lab."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pyucarp.config import options
from pyucarp.lab.daemons import pyucarp_command, pyucarp_env, start_node
from pyucarp.lab.netlab import Lab, wait_until
from pyucarp.ops import watch

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
