"""End-to-end tests of the real pyucarp daemon: processes in network namespaces, as root.

Two pyucarp nodes share a bridge unless a test says otherwise: ``a`` (192.0.2.1, advskew 0,
the intended master) and ``b`` (192.0.2.2, advskew 100). Their scripts are the shipped
vip-up.sh / vip-down.sh behind wrappers that record each call (pyucarp/lab/daemons.py), so
"who is master" is read from the logs and "who holds the VIP" from the hosts' addresses.

Timings are kept small: advbase 1 and deadratio 2 for pairs (a backup's dead interval
(2, skew) stays above any master's (1, skew), so the "going to time out" rule never
fires), deadratio 1 for lone nodes. Windows asserted here are generous on purpose:
precise failover figures belong to the benchmark.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import signal
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon_helpers import assert_refused
from pyucarp.lab.daemons import (
    DEFAULT_PASSWORD,
    DEFAULT_VIP,
    LOG_LINE_RE,
    SOURCE_ROOT,
    Daemon,
    describe,
    holders,
    pyucarp_command,
    pyucarp_env,
    run_pyucarp,
    start_node,
    wait_converged,
    wait_holder,
    write_recording_scripts,
)
from pyucarp.lab.netlab import Host, Lab, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

A_IP = "192.0.2.1/24"
B_IP = "192.0.2.2/24"
PAIR_DEADRATIO = 2
B_SKEW = 100
RecordProperty = Callable[[str, object], None]


def _hosts(lab: Lab) -> tuple[Host, Host]:
    return lab.add_host("a", A_IP), lab.add_host("b", B_IP)


def _start_pair(
    lab: Lab,
    tmp_path: Path,
    a_opts: dict[str, Any] | None = None,
    b_opts: dict[str, Any] | None = None,
    **common: Any,
) -> tuple[Daemon, Daemon]:
    """``a`` first, until it is MASTER with the VIP, then ``b``; both converged."""
    ha, hb = _hosts(lab)
    common.setdefault("deadratio", PAIR_DEADRATIO)
    na = start_node(ha, tmp_path, advskew=0, **{**common, **(a_opts or {})})
    assert na.wait_state("MASTER", 6) and wait_until(na.holds_vip, 3), describe([na])
    nb = start_node(hb, tmp_path, advskew=B_SKEW, **{**common, **(b_opts or {})})
    # settle longer than one advert interval: b has heard a and stays BACKUP
    assert wait_converged([na, nb], 6, settle=1.2) is na, describe([na, nb])
    assert nb.states() == ["BACKUP"], describe([na, nb])
    return na, nb


def _lone(lab: Lab, tmp_path: Path, **opts: Any) -> Daemon:
    """One node on host ``a`` that becomes MASTER after one second (deadratio 1)."""
    host = lab.add_host("a", A_IP)
    opts.setdefault("deadratio", 1)
    node = start_node(host, tmp_path, **opts)
    assert node.wait_state("MASTER", 5) and wait_until(node.holds_vip, 3), describe([node])
    return node


# ----------------------------------------------------------------------------- election


def test_election_lower_skew_wins_and_console_format(lab: Lab, tmp_path: Path) -> None:
    ha, hb = _hosts(lab)
    # started together: the lower skew times out first (2.0 s against 2.78 s) and wins
    na = start_node(ha, tmp_path, advskew=0, deadratio=PAIR_DEADRATIO, extra=["-x", "xp1"])
    nb = start_node(hb, tmp_path, advskew=200, deadratio=PAIR_DEADRATIO)
    nodes = [na, nb]
    assert wait_converged(nodes, 8, settle=1.2) is na, describe(nodes)
    assert holders(nodes) == [na]
    assert na.states() == ["BACKUP", "MASTER"], describe(nodes)
    assert nb.states() == ["BACKUP"], describe(nodes)
    assert nb.count(r"\[WARNING\] Switching to state: BACKUP$") == 1
    # INIT -> BACKUP runs the downscript (no -n), MASTER runs the upscript once
    assert [c.kind for c in na.calls()] == ["down", "up"], describe(nodes)
    assert [c.kind for c in nb.calls()] == ["down"], describe(nodes)
    # script argv: interface, VIP as typed, then -x's extra parameter when given
    assert na.calls("up")[0].args == ("eth0", DEFAULT_VIP, "xp1")
    assert nb.calls("down")[0].args == ("eth0", DEFAULT_VIP)
    for node in nodes:
        lines = node.lines()
        assert lines
        bad = [line for line in lines if not LOG_LINE_RE.match(line)]
        assert not bad, f"console lines not in ucarp's format: {bad}"


# ----------------------------------------------------------------------------- failover


@pytest.mark.parametrize("preempt", [False, True], ids=["no-preempt", "preempt"])
def test_failover_on_master_link_loss(
    lab: Lab, tmp_path: Path, preempt: bool, record_property: RecordProperty
) -> None:
    na, nb = _start_pair(lab, tmp_path, a_opts={"preempt": preempt})
    nodes = [na, nb]
    t_down = time.time()
    na.host.link_down()
    assert nb.wait_calls("up", 6, since=t_down), describe(nodes)
    took = nb.calls("up", since=t_down)[0].t - t_down
    # b's master-down time is 2 + 100/256 = 2.39 s after a's last advert, which went out
    # at most 1 s before the link went
    record_property("takeover_s", round(took, 3))
    assert 1.0 <= took <= 4.5, f"takeover after {took:.2f} s\n{describe(nodes)}"
    assert wait_until(nb.holds_vip, 3), describe(nodes)
    # the old master lost its carrier: BACKUP, downscript, VIP gone
    assert na.wait_state("BACKUP", 3), describe(nodes)
    assert na.calls("down", since=t_down), describe(nodes)
    assert wait_until(lambda: not na.holds_vip(), 3), describe(nodes)
    assert na.count(r"\[WARNING\] Switching to state: BACKUP$") == 2

    t_up = time.time()
    na.host.link_up()
    if preempt:
        # a hears b's worse advert and takes the VIP back; b hears the preferred master
        assert wait_holder(nodes, na, 6), describe(nodes)
        assert na.state() == "MASTER" and nb.state() == "BACKUP", describe(nodes)
        assert nb.calls("down", since=t_up), describe(nodes)
        assert nb.count("Preferred master advertised: going back to BACKUP state") >= 1
    else:
        # a comes back as BACKUP and stays so well past its own master-down time
        assert wait_until(na.host.carrier, 3)
        time.sleep(PAIR_DEADRATIO + 1.0)
        assert na.state() == "BACKUP", describe(nodes)
        assert not na.calls("up", since=t_up), describe(nodes)
        assert holders(nodes) == [nb], describe(nodes)


# ----------------------------------------------------------------------------- -n


def test_neutral_skips_the_first_downscript(lab: Lab, tmp_path: Path) -> None:
    ha, hb = _hosts(lab)
    na = start_node(ha, tmp_path, neutral=True, advskew=0)
    nb = start_node(hb, tmp_path, neutral=False, advskew=0)
    nodes = [na, nb]
    assert na.wait_state("BACKUP", 5) and nb.wait_state("BACKUP", 5), describe(nodes)
    assert nb.wait_calls("down", 3), describe(nodes)
    time.sleep(0.5)  # well before the 3 s master-down time: nothing else happens yet
    assert na.calls() == [], describe(nodes)
    assert [c.kind for c in nb.calls()] == ["down"], describe(nodes)


# ----------------------------------------------------------------------------- exit signals


def test_sigterm_with_z_runs_downscript_and_hands_over_at_once(
    lab: Lab, tmp_path: Path, record_property: RecordProperty
) -> None:
    na, nb = _start_pair(lab, tmp_path, shutdown=True, deadratio=3)
    nodes = [na, nb]
    t_term = time.time()
    na.send_signal(signal.SIGTERM)
    assert na.wait_exit(10) == 0, describe(nodes)
    assert [c.kind for c in na.calls(since=t_term)] == ["down"], describe(nodes)
    assert not na.holds_vip()
    # the leave advert (sent once a's downscript is done): b takes over advskew/2048 s
    # (0.05 s) later, not after its master-down time of 3 + 100/256 s
    assert nb.wait_calls("up", 5, since=t_term), describe(nodes)
    took = nb.calls("up", since=t_term)[0].t - t_term
    record_property("takeover_s", round(took, 3))
    assert took < 1.5, f"takeover after {took:.2f} s\n{describe(nodes)}"
    assert wait_until(nb.holds_vip, 2), describe(nodes)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT, signal.SIGHUP],
                         ids=["INT", "QUIT", "HUP"])
def test_z_exit_signals(lab: Lab, tmp_path: Path, signum: int) -> None:
    master = _lone(lab, tmp_path, shutdown=True)
    # a second instance (another vhid) that is still BACKUP: -z exits it without a script
    backup = start_node(master.host, tmp_path, name="backup", vhid=8, vip="192.0.2.101",
                        shutdown=True, deadratio=3)
    assert backup.wait_state("BACKUP", 3) and backup.wait_calls("down", 2)
    t_sig = time.time()
    master.send_signal(signum)
    backup.send_signal(signum)
    assert master.wait_exit(10) == 0, describe([master, backup])
    assert backup.wait_exit(10) == 0, describe([master, backup])
    assert [c.kind for c in master.calls(since=t_sig)] == ["down"], describe([master])
    assert backup.calls(since=t_sig) == [], describe([backup])
    assert not master.holds_vip()


def test_sigterm_without_z_dies_of_the_signal_without_script(lab: Lab, tmp_path: Path) -> None:
    node = _lone(lab, tmp_path)
    t_term = time.time()
    node.send_signal(signal.SIGTERM)
    assert node.wait_exit(5) == -signal.SIGTERM, describe([node])
    time.sleep(0.3)
    assert node.calls(since=t_term) == [], describe([node])
    assert node.holds_vip()  # ucarp's default: nothing cleans up


# ----------------------------------------------------------------------------- SIGUSR1/2


def test_sigusr1_sigusr2_and_a_signal_burst(lab: Lab, tmp_path: Path) -> None:
    na, nb = _start_pair(lab, tmp_path)
    nodes = [na, nb]
    na.send_signal(signal.SIGUSR1)
    nb.send_signal(signal.SIGUSR1)
    assert na.wait_log(r"\[INFO\] MASTER on eth0 id 7$", 2), describe(nodes)
    assert nb.wait_log(r"\[INFO\] BACKUP on eth0 id 7$", 2), describe(nodes)

    t_usr2 = time.time()
    na.send_signal(signal.SIGUSR2)
    assert na.wait_state("BACKUP", 2), describe(nodes)
    assert na.wait_calls("down", 2, since=t_usr2), describe(nodes)
    assert wait_holder(nodes, nb, 4), describe(nodes)
    assert nb.state() == "MASTER"
    na.send_signal(signal.SIGUSR1)
    assert na.wait_log(r"\[INFO\] BACKUP on eth0 id 7$", 2), describe(nodes)

    # a burst on the new master: it must survive and still answer
    before = nb.count(r"\[INFO\] (MASTER|BACKUP) on eth0 id 7$")
    for i in range(50):
        nb.send_signal(signal.SIGUSR1 if i % 2 else signal.SIGUSR2)
    time.sleep(0.5)
    assert nb.alive(), describe(nodes)
    assert nb.count(r"\[INFO\] (MASTER|BACKUP) on eth0 id 7$") > before
    nb.send_signal(signal.SIGUSR1)
    assert nb.wait_log(r"\[INFO\] (MASTER|BACKUP) on eth0 id 7$", 2, count=before + 2)
    assert not re.search(r"Traceback|Error:", nb.log()), describe(nodes)
    # and the pair still ends with exactly one master (b was demoted: a takes over)
    assert wait_converged(nodes, 8, settle=1.2) is not None, describe(nodes)
    assert na.alive() and nb.alive()


# ----------------------------------------------------------------------------- carrier


@pytest.mark.parametrize("ignoreifstate", [False, True], ids=["default", "-S"])
def test_carrier_loss_and_return(lab: Lab, tmp_path: Path, ignoreifstate: bool) -> None:
    node = _lone(lab, tmp_path, ignoreifstate=ignoreifstate)
    t_down = time.time()
    node.host.link_down()
    if ignoreifstate:
        time.sleep(1.5)
        assert node.states() == ["BACKUP", "MASTER"], describe([node])
        assert node.calls(since=t_down) == [] and node.holds_vip(), describe([node])
        node.host.link_up()
        time.sleep(1.0)
        assert node.states() == ["BACKUP", "MASTER"], describe([node])
        assert node.calls(since=t_down) == [], describe([node])
        return
    assert node.wait_state("BACKUP", 3), describe([node])
    assert node.wait_calls("down", 3, since=t_down), describe([node])
    assert wait_until(lambda: not node.holds_vip(), 3)
    time.sleep(1.5)  # longer than the master-down time: no carrier, no takeover
    assert node.state() == "BACKUP" and not node.calls("up", since=t_down), describe([node])
    t_up = time.time()
    node.host.link_up()
    assert node.wait_state("MASTER", 5), describe([node])
    assert node.wait_calls("up", 3, since=t_up) and wait_until(node.holds_vip, 3)


# ----------------------------------------------------------------------------- -M, --mcast


@pytest.mark.parametrize(
    "mode, eth_dst, ip_dst",
    [
        ({"nomcast": True}, "ff:ff:ff:ff:ff:ff", "224.0.0.18"),
        ({"mcast": "239.255.0.18"}, "01:00:5e:7f:00:12", "239.255.0.18"),
    ],
    ids=["-M", "--mcast"],
)
def test_destination_modes(
    lab: Lab, tmp_path: Path, mode: dict[str, Any], eth_dst: str, ip_dst: str
) -> None:
    ha, hb = _hosts(lab)
    with lab.capture_bridge(kinds=("carp",), max_seconds=30) as cap:
        na = start_node(ha, tmp_path, advskew=0, deadratio=PAIR_DEADRATIO, **mode)
        nb = start_node(hb, tmp_path, advskew=200, deadratio=PAIR_DEADRATIO, **mode)
        nodes = [na, nb]
        # b only stays BACKUP if a's adverts reach it in this mode
        assert wait_converged(nodes, 8, settle=1.5) is na, describe(nodes)
        assert nb.states() == ["BACKUP"], describe(nodes)
    frames = [f for _, f in cap.frames()]
    assert len(frames) >= 2
    for frame in frames:
        assert _mac(frame[0:6]) == eth_dst
        assert str(ipaddress.IPv4Address(frame[30:34])) == ip_dst


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# ----------------------------------------------------------------------------- -B


@pytest.mark.parametrize("closed", [False, True], ids=["console", "closed-0-1-2"])
def test_daemonize_detaches_at_once(lab: Lab, tmp_path: Path, closed: bool) -> None:
    """-B returns at once and the daemon runs on, also when started with descriptors 0-2
    closed (``<&- >&- 2>&-``): they are /dev/null in the daemon either way."""
    host = lab.add_host("a", A_IP)
    up, down = write_recording_scripts(tmp_path, tmp_path / "calls.txt")
    pidfile = tmp_path / "ucarp.pid"
    args = ["-i", "eth0", "-s", host.ip, "-v", "7", "-p", DEFAULT_PASSWORD, "-a", DEFAULT_VIP,
            "-r", "1", "-f", "none", "-u", str(up), "-d", str(down), "-B", f"--pidfile={pidfile}"]
    t0 = time.monotonic()
    if closed:
        done = subprocess.run(
            ["ip", "netns", "exec", host.netns, "sh", "-c", 'exec "$@" <&- >&- 2>&-', "sh",
             *pyucarp_command(), *args],
            capture_output=True, text=True, timeout=10, env=pyucarp_env(), cwd=SOURCE_ROOT)
    else:
        done = run_pyucarp(host, args, timeout=10)
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert elapsed < 3.0, f"-B took {elapsed:.2f} s to return"
    assert wait_until(pidfile.exists, 3)
    pid = int(pidfile.read_text().split()[0])
    try:
        assert pid in host.pids()
        # detached: the console is gone, and the password is still not on show
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
        assert DEFAULT_PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        # it really runs: alone, it becomes master and runs the upscript
        assert wait_until(lambda: host.has_address(DEFAULT_VIP), 5)
        assert "up " in (tmp_path / "calls.txt").read_text()
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    assert wait_until(lambda: pid not in host.pids(), 5)
    assert wait_until(lambda: not pidfile.exists(), 2), "pid file left behind"


# ----------------------------------------------------------------------------- wire


def test_advert_and_arp_bytes_match_ucarp(lab: Lab, tmp_path: Path) -> None:
    scapy_l2 = pytest.importorskip("scapy.layers.l2")
    scapy_inet = pytest.importorskip("scapy.layers.inet")
    from scapy.utils import checksum

    vhid, skew = 42, 10
    host = lab.add_host("a", A_IP)
    mac = host.mac()
    with host.capture(kinds=("carp", "arp"), max_seconds=30) as cap:
        node = start_node(host, tmp_path, vhid=vhid, advskew=skew, deadratio=1)
        assert node.wait_state("MASTER", 5), describe([node])
        assert cap.wait_for(lambda fs: sum(f[12:14] == b"\x08\x00" for _, f in fs) >= 4, 8)
    records = [r for r in cap.records() if r.outgoing]
    adverts = [r.data for r in records if r.data[12:14] == b"\x08\x00"]
    arps = [r.data for r in records if r.data[12:14] == b"\x08\x06"]
    # one ARP on becoming master, another after the third advert (ucarp's sc_delayed_arp)
    assert len(adverts) >= 4 and len(arps) >= 2

    counters = set()
    for raw in adverts:
        assert len(raw) == 70
        eth = scapy_l2.Ether(raw)
        assert eth.src == f"00:00:5e:00:00:{vhid:02x}"
        assert eth.dst == "01:00:5e:00:00:12"
        assert eth.type == 0x0800
        ip = eth[scapy_inet.IP]
        assert (ip.version, ip.ihl, ip.tos, ip.len) == (4, 5, 0x10, 56)
        assert ip.flags == "DF" and ip.frag == 0
        assert (ip.ttl, ip.proto) == (255, 112)
        assert (ip.src, ip.dst) == (host.ip, "224.0.0.18")
        assert checksum(raw[14:34]) == 0, "IP header checksum"
        carp = bytes(ip.payload)
        assert len(carp) == 36
        assert checksum(carp) == 0, "CARP checksum"
        ver_type, c_vhid, c_skew, authlen, pad, advbase = carp[:6]
        assert (ver_type, c_vhid, c_skew, authlen, pad, advbase) == (0x21, vhid, skew, 7, 0, 1)
        counter = carp[8:16]
        counters.add(counter)
        message = bytes([2, 1, vhid]) + ipaddress.IPv4Address(DEFAULT_VIP).packed + counter
        expected = hmac.new(DEFAULT_PASSWORD.encode(), message, hashlib.sha1).digest()
        assert carp[16:36] == expected, "HMAC-SHA1 over 02 01 vhid VIP counter"
    # alone, ucarp draws a fresh random counter for every advert
    assert len(counters) == len(adverts)
    ids = {struct.unpack("!H", raw[18:20])[0] for raw in adverts}
    assert len(ids) > 1, "IP IDs vary"

    for raw in arps:
        assert len(raw) == 42
        eth = scapy_l2.Ether(raw)
        assert eth.dst == "ff:ff:ff:ff:ff:ff" and eth.src == mac
        arp = eth[scapy_l2.ARP]
        assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
        assert arp.hwsrc == mac and arp.hwdst == mac
        assert arp.psrc == DEFAULT_VIP and arp.pdst == DEFAULT_VIP


# ----------------------------------------------------------------------------- password


def test_password_hidden_from_cmdline_and_logs(lab: Lab, tmp_path: Path) -> None:
    secret = "Zq9-hidden-pw"
    ha, hb = _hosts(lab)
    hc = lab.add_host("c", "192.0.2.3/24")
    na = start_node(ha, tmp_path, password=secret, debug=True, deadratio=PAIR_DEADRATIO)
    nb = start_node(hb, tmp_path, password=None, extra=[f"--pass={secret}"], debug=True,
                    advskew=B_SKEW, deadratio=PAIR_DEADRATIO)
    nc = start_node(hc, tmp_path, password=None, extra=[f"-p{secret}"], debug=True,
                    advskew=200, deadratio=PAIR_DEADRATIO)
    nodes = [na, nb, nc]
    # same key everywhere: they authenticate each other and agree on one master
    assert wait_converged(nodes, 8, settle=1.2) is na, describe(nodes)
    for node in nodes:
        cmdline = Path(f"/proc/{node.pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline, cmdline
        assert b"-i\0eth0" in cmdline  # the rest of the command line is intact
        assert secret not in node.log(), node.log()


# ----------------------------------------------------------------------------- config errors


def _error_args(host: Host, up: Path, down: Path) -> dict[str, list[str]]:
    base = {"-i": "eth0", "-s": host.ip, "-v": "7", "-p": DEFAULT_PASSWORD, "-a": DEFAULT_VIP,
            "-u": str(up), "-d": str(down)}

    def argv(**changes: str | None) -> list[str]:
        opts = dict(base)
        for key, value in changes.items():
            flag = "-" + key
            if value is None:
                del opts[flag]
            else:
                opts[flag] = value
        return [tok for kv in opts.items() for tok in kv]

    return {
        "missing -s": argv(s=None),
        "vhid 0": argv(v="0"),
        "vhid 256": argv(v="256"),
        "no such interface": argv(i="nosuch0"),
        "srcip not on interface": argv(s="192.0.2.99"),
    }


_ERROR_WORDS = {
    "missing -s": "You must supply a persistent source address",
    "vhid 0": "vhid must be between 1 and 255",
    "vhid 256": "vhid must be between 1 and 255",
    "no such interface": "nosuch0",
    "srcip not on interface": "192.0.2.99",
}


@pytest.mark.parametrize("case", ["missing -s", "vhid 0", "vhid 256", "no such interface",
                                  "srcip not on interface"])
@pytest.mark.parametrize("detach", [False, True], ids=["fg", "-B"])
def test_configuration_errors(errhost: Host, tmp_path: Path, case: str, detach: bool) -> None:
    record = tmp_path / "calls.txt"
    up, down = write_recording_scripts(tmp_path, record)
    args = _error_args(errhost, up, down)[case] + ["-f", "none"] + (["-B"] if detach else [])
    assert_refused(errhost, args, _ERROR_WORDS[case], record=record,
                   exit_code=None if case == "no such interface" else 1)


# ----------------------------------------------------------------------------- memory


def test_memory_and_no_scapy(lab: Lab, tmp_path: Path, record_property: RecordProperty) -> None:
    node = _lone(lab, tmp_path, python_flags=["-X", "importtime"])
    time.sleep(1.0)  # a few adverts and the scripts are behind it
    rss = node.status_kib("VmRSS")
    record_property("daemon_vmrss_kib", rss)
    print(f"\npyucarp master VmRSS: {rss} kB ({rss / 1024:.1f} MiB)")
    assert rss < 40 * 1024
    maps = Path(f"/proc/{node.pid}/maps").read_text()
    assert "scapy" not in maps
    imported = [line.split("|")[-1].strip() for line in node.lines()
                if line.startswith("import time:")]
    assert "pyucarp.shell.loop" in imported, "-X importtime output missing: the check below is void"
    assert not [m for m in imported if m.split(".")[0] == "scapy"], "the daemon imported scapy"
