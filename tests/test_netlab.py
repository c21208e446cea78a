"""The namespace lab itself, and the well-formedness of the captured C ucarp vectors."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyucarp.lab import netlab

VECTORS = Path(__file__).resolve().parent / "vectors" / "cucarp.json"


def _carp_frame(src_ip: str) -> bytes:
    """A 70-byte frame shaped like a CARP advert, IP checksum deliberately left zero.

    The lab's bridge must forward it untouched, like a dumb switch.
    """
    eth = bytes.fromhex("01005e000012" "00005e000001" "0800")
    ip = bytes.fromhex("45100038000040 00ff70 0000".replace(" ", "")) + ipaddress.IPv4Address(
        src_ip
    ).packed + ipaddress.IPv4Address("224.0.0.18").packed
    return eth + ip + bytes(36)


# --------------------------------------------------------------------------- pure helpers


def test_check_test_address_accepts_only_documentation_ranges() -> None:
    assert str(netlab.check_test_address("192.0.2.7/24").ip) == "192.0.2.7"
    assert netlab.check_test_address("198.51.100.9").network.prefixlen == 32
    for bad in ("10.0.0.1/24", "8.8.8.8", "192.0.2.1/23", "198.51.101.1", "2001:db8::1"):
        with pytest.raises(ValueError):
            netlab.check_test_address(bad)


def test_largest_gap_counts_edges() -> None:
    assert netlab.largest_gap([1.0, 1.1, 1.5, 1.6]) == pytest.approx(0.4)
    assert netlab.largest_gap([1.0, 1.1], start=0.0, end=1.2) == pytest.approx(1.0)
    assert netlab.largest_gap([1.0, 1.1], start=1.0, end=4.0) == pytest.approx(2.9)
    assert netlab.largest_gap([], start=2.0, end=5.0) == pytest.approx(3.0)


def test_wait_until_is_bounded() -> None:
    calls: list[int] = []

    def third_call() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert netlab.wait_until(third_call, 2.0, 0.001) and len(calls) == 3
    assert not netlab.wait_until(lambda: False, 0.05, 0.01)


# --------------------------------------------------------------------------- the lab


@pytest.mark.netns
def test_hosts_ping_each_other_and_link_down_cuts_them_off(lab: netlab.Lab) -> None:
    h1 = lab.add_host("h1", "192.0.2.1/24")
    h2 = lab.add_host("h2", "192.0.2.2/24")
    assert h1.addresses() == ["192.0.2.1"] and h2.addresses(with_prefix=True) == ["192.0.2.2/24"]
    assert h1.mac() != h2.mac()
    assert len(h1.ping_watch(h2.ip, duration_s=0.5)) > 20

    h2.link_down()
    assert netlab.wait_until(lambda: not h2.carrier(), 2.0)
    assert "NO-CARRIER" in h2.run(["ip", "link", "show", "eth0"]).stdout
    assert h1.ping_watch(h2.ip, duration_s=0.3) == []

    h2.link_up()
    assert netlab.wait_until(h2.carrier, 2.0)
    assert len(h1.ping_watch(h2.ip, duration_s=0.5)) > 20


@pytest.mark.netns
def test_unplug_cuts_traffic_but_keeps_carrier(lab: netlab.Lab) -> None:
    h1 = lab.add_host("h1", "192.0.2.1/24")
    h2 = lab.add_host("h2", "192.0.2.2/24")
    h2.unplug()
    assert h2.carrier() and h1.carrier()
    assert h1.ping_watch(h2.ip, duration_s=0.3) == []
    h2.plug()
    # the kernel retries a failed ARP resolution only about once a second
    watch = h1.start_ping_watch(h2.ip, duration_s=2.0)
    replies = watch.wait()
    assert len(replies) > 20 and watch.sent >= len(replies)


@pytest.mark.netns
def test_addresses_can_be_added_only_from_documentation_ranges(lab: netlab.Lab) -> None:
    h1 = lab.add_host("h1", "198.51.100.1/24")
    h1.add_address("198.51.100.200")
    assert h1.has_address("198.51.100.200") and h1.has_address("198.51.100.1/24")
    h1.del_address("198.51.100.200")
    assert not h1.has_address("198.51.100.200")
    with pytest.raises(ValueError):
        h1.add_address("10.1.1.1/32")
    with pytest.raises(ValueError):
        lab.add_host("h2", "172.16.0.1/24")
    assert "h2" not in lab.hosts


@pytest.mark.netns
@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_teardown_kills_processes_and_removes_namespaces(exc_type: type[BaseException]) -> None:
    names: list[str] = []
    pids: list[int] = []
    with pytest.raises(exc_type):
        with netlab.Lab() as lab:
            h1 = lab.add_host("h1", "192.0.2.1/24")
            names.extend(lab.namespaces())
            pids.append(h1.popen(["sleep", "60"]).pid)
            # a daemonized child escapes the process group; the lab must still find it
            h1.run(["sh", "-c", "setsid sleep 60 >/dev/null 2>&1 < /dev/null &"])
            assert netlab.wait_until(lambda: len(netlab.netns_pids(h1.netns)) >= 2, 2.0)
            pids.extend(netlab.netns_pids(h1.netns))
            # what a daemon without --statedir writes to (/run/pyucarp/netns-<inode>)
            statedir = Path(h1.run([sys.executable, "-c", "import os; from pyucarp.shell."
                                    "statefile import default_statedir as d; "
                                    "os.makedirs(d(), exist_ok=True); print(d())"]
                                   ).stdout.strip())
            assert statedir.name.startswith("netns-") and statedir.is_dir()
            raise exc_type("boom")
    assert len(names) == 2 and all(n.startswith(lab.tag) for n in names)
    assert not statedir.exists(), "a later namespace with the same inode would find it"
    assert not any((netlab.NETNS_DIR / n).exists() for n in names)
    assert netlab.wait_until(lambda: not any(netlab.pid_alive(p) for p in pids), 2.0)
    assert lab.namespaces() == []


@pytest.mark.netns
def test_cleanup_stale_removes_only_dead_creators() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"pyu{dead.pid}-abcdef-h1"
    live = f"pyu{os.getpid()}-fedcba-h1"
    try:
        subprocess.run(["ip", "netns", "add", stale], check=True)
        subprocess.run(["ip", "netns", "add", live], check=True)
        removed = netlab.cleanup_stale()
        assert stale in removed and live not in removed
        assert not (netlab.NETNS_DIR / stale).exists()
        assert (netlab.NETNS_DIR / live).exists()
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.mark.netns
def test_frame_capture_sees_frames_sent_in_the_namespace(lab: netlab.Lab) -> None:
    h1 = lab.add_host("h1", "192.0.2.1/24")
    h2 = lab.add_host("h2", "192.0.2.2/24")
    advert = _carp_frame(h1.ip)
    noise = bytes.fromhex("ffffffffffff" "020000000001" "88b5") + bytes(46)
    with h2.capture(kinds=("carp",), max_seconds=10) as on_h2, \
            h1.capture(kinds=("carp",), max_seconds=10) as on_h1, \
            lab.capture_bridge(kinds=("all",), max_seconds=10) as on_br:
        h1.send_frames([noise, advert, noise])
        assert on_h2.wait_for(lambda fr: len(fr) >= 1, 3.0)
        assert on_br.wait_for(lambda fr: len(fr) >= 3, 3.0)
    assert [f for _, f in on_h2.frames()] == [advert]  # the noise was filtered out
    assert [(r.data, r.outgoing) for r in on_h1.records()] == [(advert, True)]
    assert on_h2.records()[0].outgoing is False
    assert [f for _, f in on_br.frames()][:3] == [noise, advert, noise]


@pytest.mark.netns
def test_frame_capture_is_bounded_by_count(lab: netlab.Lab) -> None:
    h1 = lab.add_host("h1", "192.0.2.1/24")
    with h1.capture(kinds=("carp",), max_count=2, max_seconds=10) as cap:
        h1.send_frames([_carp_frame(h1.ip)] * 5)
        ended = netlab.wait_until(
            lambda: cap._proc is not None and cap._proc.poll() is not None, 3.0
        )
        assert ended
    assert len(cap.frames()) == 2


# --------------------------------------------------------------------------- vectors file


def test_vectors_file_is_well_formed() -> None:
    doc = json.loads(VECTORS.read_text())
    assert VECTORS.stat().st_size < 200_000
    assert isinstance(doc["notes"], list) and doc["notes"]
    assert doc["ucarp"].startswith("ucarp")
    vectors = doc["vectors"]
    assert len(vectors) >= 8
    assert {v["config"]["vhid"] for v in vectors} >= {1, 7, 42, 255}
    for vec in vectors:
        cfg = vec["config"]
        for key in ("vhid", "password_hex", "password_text", "vip", "srcip", "advbase",
                    "advskew", "nomcast", "group"):
            assert key in cfg, (vec["name"], key)
        password = bytes.fromhex(cfg["password_hex"])
        assert 0 < len(password) <= 19
        if cfg["password_text"] is not None:
            assert cfg["password_text"].encode() == password
        kinds = [f["kind"] for f in vec["frames"]]
        assert kinds.count("advert") >= 2 and kinds.count("arp") >= 1, vec["name"]
        for f in vec["frames"]:
            data = bytes.fromhex(f["hex"])
            if f["kind"] == "advert":
                assert len(data) == 70
                assert data[6:12] == bytes.fromhex("00005e0000") + bytes([cfg["vhid"]])
                assert data[26:30] == ipaddress.IPv4Address(cfg["srcip"]).packed
                assert data[30:34] == ipaddress.IPv4Address(cfg["group"]).packed
                carp = data[34:70]
                assert (carp[1], carp[2], carp[5]) == (cfg["vhid"], cfg["advskew"], cfg["advbase"])
                vip = ipaddress.IPv4Address(cfg["vip"])
                msg = bytes([2, 1, cfg["vhid"]]) + vip.packed + carp[8:16]
                assert carp[16:36] == hmac.new(password, msg, hashlib.sha1).digest()
            else:
                assert f["kind"] == "arp" and len(data) == 42
                assert data[6:12] == bytes.fromhex(vec["mac"].replace(":", ""))
    pair = doc["pair"]
    senders = {f["from"] for f in pair["frames"] if f["kind"] == "advert"}
    assert senders == {"pa", "pb"}
    assert set(pair["events"]) == {"b_started", "b_killed"}
