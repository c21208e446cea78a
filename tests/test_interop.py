"""pyucarp beside the real C ucarp (/usr/sbin/ucarp) on one bridge: mixed clusters must work.

The C ucarp hands received adverts over in ~1 s batches and checks its timers once per
poll, so every wait here gives it about a second of slack on top of the protocol times.
Both sides run with ucarp's default deadratio 3, advbase 1; the intended master has
advskew 0, the backup 100 (master-down time 3 + 100/256 = 3.39 s).
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from daemons import Impl, Node, describe, holders, start_node, wait_converged
from netlab import Host, Lab, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.cucarp, pytest.mark.timeout(120)]

A_IP = "192.0.2.1/24"
B_IP = "192.0.2.2/24"
B_SKEW = 100
C_SLACK = 1.2  # the C ucarp's receive batching plus its poll granularity
RecordProperty = Callable[[str, object], None]


def _hosts(lab: Lab) -> tuple[Host, Host]:
    return lab.add_host("a", A_IP), lab.add_host("b", B_IP)


def _mixed_pair(
    lab: Lab, tmp_path: Path, master: Impl, backup: Impl, shutdown: bool = False
) -> tuple[Node, Node]:
    """The intended master on ``a`` first, until it holds the VIP, then the backup on ``b``."""
    ha, hb = _hosts(lab)
    nm = start_node(ha, tmp_path, impl=master, advskew=0, shutdown=shutdown)
    assert nm.wait_state("MASTER", 3 + 2 * C_SLACK), describe([nm])
    assert wait_until(nm.holds_vip, 3), describe([nm])
    nb = start_node(hb, tmp_path, impl=backup, advskew=B_SKEW, shutdown=shutdown)
    nodes = [nm, nb]
    assert nb.wait_state("BACKUP", 3), describe(nodes)
    # one master, and it stays so for longer than a batching period and an advert interval
    assert wait_converged(nodes, 6, settle=1.5 + C_SLACK) is nm, describe(nodes)
    assert nb.states() == ["BACKUP"], describe(nodes)
    return nm, nb


PAIRS = [("c", "py"), ("py", "c")]
PAIR_IDS = ["C-master+py-backup", "py-master+C-backup"]


@pytest.mark.parametrize("master, backup", PAIRS, ids=PAIR_IDS)
def test_mixed_pair_failover_on_link_loss(
    lab: Lab, tmp_path: Path, master: Impl, backup: Impl, record_property: RecordProperty
) -> None:
    nm, nb = _mixed_pair(lab, tmp_path, master, backup)
    nodes = [nm, nb]
    t_down = time.time()
    nm.host.link_down()
    assert nb.wait_calls("up", 3.4 + 2 * C_SLACK + 1, since=t_down), describe(nodes)
    took = nb.calls("up", since=t_down)[0].t - t_down
    record_property("takeover_s", round(took, 3))
    # master-down 3.39 s after the master's last advert (at most 1 s before the link went)
    assert 1.5 <= took <= 3.4 + C_SLACK + 0.5, f"takeover after {took:.2f} s\n{describe(nodes)}"
    assert wait_until(nb.holds_vip, 3), describe(nodes)
    # the old master saw its carrier go: BACKUP, downscript, VIP removed
    assert nm.wait_state("BACKUP", 1 + C_SLACK + 1), describe(nodes)
    assert nm.wait_calls("down", 2, since=t_down), describe(nodes)
    assert wait_until(lambda: not nm.holds_vip(), 3), describe(nodes)

    nm.host.link_up()
    # back without -P: the old master stays BACKUP past its own master-down time
    time.sleep(3 + C_SLACK)
    assert nm.state() == "BACKUP", describe(nodes)
    assert nb.state() == "MASTER" and holders(nodes) == [nb], describe(nodes)


def test_graceful_exit_of_pyucarp_master_hands_over_to_c_at_once(
    lab: Lab, tmp_path: Path, record_property: RecordProperty
) -> None:
    npy, nc = _mixed_pair(lab, tmp_path, "py", "c", shutdown=True)
    nodes = [npy, nc]
    t_term = time.time()
    npy.send_signal(signal.SIGTERM)
    assert npy.wait_exit(10) == 0, describe(nodes)
    assert [c.kind for c in npy.calls(since=t_term)] == ["down"], describe(nodes)
    assert nc.wait_calls("up", 6, since=t_term), describe(nodes)
    took = nc.calls("up", since=t_term)[0].t - t_term
    record_property("takeover_s", round(took, 3))
    # the leave advert (255/255) makes the C backup's "going to time out" rule fire on
    # its next batch, instead of after its 3.39 s master-down time
    assert took < 2.0, f"C ucarp took over after {took:.2f} s\n{describe(nodes)}"
    assert nc.count(r"Putting MASTER DOWN \(going to time out\)") >= 1, describe(nodes)
    assert wait_until(nc.holds_vip, 2) and not npy.holds_vip(), describe(nodes)


def test_graceful_exit_of_c_master_hands_over_to_pyucarp_after_master_down(
    lab: Lab, tmp_path: Path, record_property: RecordProperty
) -> None:
    nc, npy = _mixed_pair(lab, tmp_path, "c", "py", shutdown=True)
    nodes = [nc, npy]
    t_term = time.time()
    nc.send_signal(signal.SIGTERM)
    assert nc.wait_exit(10) == 0, describe(nodes)
    assert [c.kind for c in nc.calls(since=t_term)] == ["down"], describe(nodes)
    assert npy.wait_calls("up", 6, since=t_term), describe(nodes)
    took = npy.calls("up", since=t_term)[0].t - t_term
    record_property("takeover_s", round(took, 3))
    # ucarp leaves silently: the backup waits its master-down time (3.39 s after the
    # last advert, which went out at most 1 s before the signal)
    assert 2.0 <= took <= 4.5, f"pyucarp took over after {took:.2f} s\n{describe(nodes)}"
    assert wait_until(npy.holds_vip, 2) and not nc.holds_vip(), describe(nodes)


def test_wrong_password_refused_both_ways(lab: Lab, tmp_path: Path) -> None:
    ha, hb = _hosts(lab)
    hc = lab.add_host("c", "192.0.2.3/24")  # replays the C node's adverts
    with lab.capture_bridge(kinds=("carp",), max_seconds=60) as cap:
        npy = start_node(ha, tmp_path, impl="py", password="alpha", advskew=0, deadratio=1)
        nc = start_node(hb, tmp_path, impl="c", password="bravo", advskew=B_SKEW, deadratio=1)
        nodes = [npy, nc]
        # neither accepts the other's adverts: a misconfigured pair has two masters
        assert npy.wait_state("MASTER", 4) and nc.wait_state("MASTER", 4 + C_SLACK), describe(nodes)
        assert npy.wait_log(r"\[WARNING\] Bad digest", 4), describe(nodes)
        assert nc.wait_log(r"Bad digest", 4 + C_SLACK), describe(nodes)
        assert wait_until(lambda: holders(nodes) == nodes, 3), describe(nodes)

        c_adverts = [f for _, f in cap.frames() if f[26:30] == bytes([192, 0, 2, 2])]
        assert c_adverts
        # a flood of the C node's (authentic, but wrong-key) adverts from a third host
        hc.send_frames([c_adverts[-1]] * 40, interval_s=0.005)
        time.sleep(1.0)
    # the bridge saw the C node's own adverts and the replayed copies alike
    received = sum(1 for _, f in cap.frames() if f[26:30] == bytes([192, 0, 2, 2]))
    assert received >= 40
    warned = npy.count(r"\[WARNING\] Bad digest")
    # rate-limited: a short burst of lines, not one per refused advert
    assert warned <= 10 and warned * 4 < received, (
        f"{warned} warnings for {received} refused adverts\n{describe(nodes)}"
    )
    assert npy.alive() and nc.alive()
    assert npy.state() == "MASTER" and nc.state() == "MASTER", describe(nodes)


@pytest.mark.parametrize("on_a", ["c", "py"], ids=["C-on-.1", "py-on-.1"])
def test_simultaneous_start_with_preempt_converges(lab: Lab, tmp_path: Path, on_a: Impl) -> None:
    ha, hb = _hosts(lab)
    on_b: Impl = "py" if on_a == "c" else "c"
    na = start_node(ha, tmp_path, impl=on_a, advskew=0, preempt=True)
    nb = start_node(hb, tmp_path, impl=on_b, advskew=0, preempt=True)
    nodes = [na, nb]
    # equal (advbase, advskew): between two masters, ucarp's tie-break keeps the smaller
    # native-endian s_addr; these two differ only in the last octet, so 192.0.2.1 wins
    # in either byte order
    # The one that times out first may be heard by the other before its own timer fires:
    # that one then stays BACKUP (-P needs a strictly better pair). When both became
    # MASTER, the tie-break must have kept 192.0.2.1.
    winner = wait_converged(nodes, 6 + 2 * C_SLACK, settle=1.5 + C_SLACK)
    assert winner is not None, describe(nodes)
    loser = nb if winner is na else na
    assert loser.state() == "BACKUP", describe(nodes)
    if "MASTER" in loser.states():
        assert winner is na, describe(nodes)
        assert loser.count("Preferred master advertised: going back to BACKUP state") >= 1


def _tie_key(address: str) -> int:
    """ucarp's tie-break key: the address's network-order bytes read as a native integer."""
    return int.from_bytes(ipaddress.IPv4Address(address).packed, sys.byteorder)


@pytest.mark.parametrize("winner_impl", ["c", "py"], ids=["C-wins", "py-wins"])
def test_split_brain_heals_by_the_address_tie_break(
    lab: Lab, tmp_path: Path, winner_impl: Impl
) -> None:
    # Two addresses whose order differs between network and native byte order, so both
    # implementations must use ucarp's exact tie-break to agree (on x86 the last octet
    # is the most significant: 198.51.100.10 beats 192.0.2.20).
    first, second = "192.0.2.20", "198.51.100.10"
    win_ip, lose_ip = (first, second) if _tie_key(first) < _tie_key(second) else (second, first)
    hw = lab.add_host("w", f"{win_ip}/24")
    hl = lab.add_host("l", f"{lose_ip}/24")
    lose_impl: Impl = "py" if winner_impl == "c" else "c"
    # cut off from each other (carrier stays), both become MASTER with equal priorities
    hw.unplug()
    hl.unplug()
    nw = start_node(hw, tmp_path, impl=winner_impl, advskew=0)
    nl = start_node(hl, tmp_path, impl=lose_impl, advskew=0)
    nodes = [nw, nl]
    assert wait_until(lambda: nw.state() == nl.state() == "MASTER", 3 + 2 * C_SLACK), describe(nodes)
    hw.plug()
    hl.plug()
    assert wait_converged(nodes, 3 + 2 * C_SLACK, settle=1.5 + C_SLACK) is nw, describe(nodes)
    assert nl.count("Preferred master advertised: going back to BACKUP state") >= 1, describe(nodes)
    assert nl.states() == ["BACKUP", "MASTER", "BACKUP"], describe(nodes)
    assert nw.states() == ["BACKUP", "MASTER"], describe(nodes)
