"""``pyucarp run``: many instances in one process, in namespace labs, beside the C ucarp.

Each host gets a config directory of interface files and a defaults file, written the way an
admin writes them for /etc/init.d/ucarp; ``pyucarp run`` reads them. The address of every
instance is moved by the shipped vip-up.sh/vip-down.sh behind recording wrappers, so "who
holds 192.0.2.1xx" is read from the hosts themselves, and the adverts from a capture on the
bridge.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from pyucarp.core.codec import ADVERT_LEN
from pyucarp.lab.daemons import Daemon, start_pyucarp, start_ucarp, write_recording_scripts
from pyucarp.lab.netlab import Host, Lab, largest_gap, wait_until

pytestmark = pytest.mark.netns

PASSWORD = "s3cret"
MASTER_DOWN = 3 + 50 / 256  # advbase 1, dead ratio 3: a backup of advskew 50 takes over


def vip(vhid: int) -> str:
    return f"192.0.2.{100 + vhid}"


def write_files(confdir: Path, host: Host, vhids: Iterable[int], *, skew: int | dict[int, int],
                options: str = "-z -P", interface: str = "eth0",
                source: str | None = None) -> None:
    """One interface file per vhid, ``ucarpNN``, as the sample file in etc/ucarp shows."""
    confdir.mkdir(parents=True, exist_ok=True)
    for v in vhids:
        k = skew if isinstance(skew, int) else skew[v]
        (confdir / f"ucarp{v:02d}").write_text(
            f"INTERFACE={interface}\nINSTANCE_ID={v}\nPASSWORD='{PASSWORD}'\n"
            f"VIRTUAL_ADDRESS={vip(v)}\nVIRTUAL_NETMASK=255.255.255.0\n"
            f"SOURCE_ADDRESS={source or host.ip}\nOPTIONS=\"{options} -k {k}\"\n"
        )
        (confdir / f"ucarp{v:02d}").chmod(0o600)


def moved_by(expected: dict[int, str], host: str) -> set[int]:
    return {v for v, h in expected.items() if h == host}


def write_defaults(workdir: Path, up: Path, down: Path) -> Path:
    defaults = workdir / "default-ucarp"
    defaults.write_text(
        f"UPSCRIPT={up}\nDOWNSCRIPT={down}\nUCARP_RUNDIR={workdir / 'rundir'}\n"
    )
    return defaults


def start_run(host: Host, workdir: Path, confdir: Path, defaults: Path) -> Daemon:
    state = workdir / "state"
    return start_pyucarp(
        host, workdir,
        ["run", "--config-dir", str(confdir), "--defaults", str(defaults),
         "--statedir", str(state), "-f", "none"],
        name="run", statedir=state,
    )


def status(daemon: Daemon, vhid: int, iface: str = "eth0") -> dict[str, object] | None:
    assert daemon.statedir is not None
    try:
        doc: dict[str, object] = json.loads((daemon.statedir / f"{iface}-{vhid}.json").read_text())
    except (OSError, ValueError):
        return None
    return doc


def holders(hosts: Iterable[Host], address: str) -> list[str]:
    return [h.name for h in hosts if h.has_address(address)]


def carp_vhid(frame: bytes) -> int | None:
    if len(frame) < ADVERT_LEN or frame[12:14] != b"\x08\x00" or frame[23] != 112:
        return None
    return frame[14 + (frame[14] & 0x0F) * 4 + 1]


def advert_times(frames: list[tuple[float, bytes]], vhid: int,
                 src: str | None = None) -> list[float]:
    packed = bytes(int(x) for x in src.split(".")) if src else None
    return [t for t, f in frames
            if carp_vhid(f) == vhid and (packed is None or f[26:30] == packed)]


@pytest.mark.cucarp
def test_three_hosts_with_twenty_instances_each_and_c_ucarp_peers(lab: Lab, tmp_path: Path) -> None:
    """Three ``pyucarp run`` processes with 20 instances each elect one master per address,
    each where the skews say; on two vhids a C ucarp takes part, once as the preferred
    master and once as a backup; killing one process moves exactly its addresses."""
    hosts = [lab.add_host(n, f"192.0.2.{i}/24") for i, n in enumerate(("a", "b", "c"), 1)]
    cnode = lab.add_host("d", "192.0.2.4/24")
    vhids = range(1, 21)
    preferred = {v: hosts[v % 3] for v in vhids}
    runs: dict[str, Daemon] = {}
    for host in hosts:
        work = tmp_path / host.name
        work.mkdir()
        up, down = write_recording_scripts(work, work / "calls.txt")
        skews = {v: 10 if preferred[v] is host else 50 + 10 * hosts.index(host) for v in vhids}
        write_files(work / "interface", host, vhids, skew=skews)
        runs[host.name] = start_run(host, work, work / "interface", write_defaults(work, up, down))
    # The C ucarp: preferred master on vhid 19 (skew 0), backup on vhid 20 (skew 200).
    cwork = tmp_path / "d"
    cwork.mkdir()
    cup, cdown = write_recording_scripts(cwork, cwork / "calls.txt")
    cucarps = [
        start_ucarp(cnode, cwork, ["-i", "eth0", "-s", cnode.ip, "-v", str(v), "-p", PASSWORD,
                                   "-a", vip(v), "-k", str(k), "-P", "-z",
                                   "-u", str(cup), "-d", str(cdown)],
                    impl="c", name=f"c{v}")
        for v, k in ((19, 0), (20, 200))
    ]
    everyone = [*hosts, cnode]
    expected = {v: preferred[v].name for v in vhids}
    expected[19] = "d"

    def settled() -> bool:
        return all(holders(everyone, vip(v)) == [expected[v]] for v in vhids)

    assert wait_until(settled, 20), {v: holders(everyone, vip(v)) for v in vhids}
    # The C ucarp reads adverts in ~1 s batches and may claim its vhid once at start (a
    # known ucarp start-up race, docs/compat.md §9): judge stability only after it.
    time.sleep(4.0)
    assert settled(), {v: holders(everyone, vip(v)) for v in vhids}
    # One process per host, whatever the number of instances.
    for host in hosts:
        pids = {status(runs[host.name], v)["pid"] for v in vhids}  # type: ignore[index]
        assert pids == {runs[host.name].pid}
    assert all(d.alive() for d in cucarps)
    # Host b's process dies without a word: exactly its addresses move, each to the host
    # with the next lower skew; no other address moves.
    before = {(h.name, v): status(runs[h.name], v)
              for h in (hosts[0], hosts[2]) for v in vhids if v not in moved_by(expected, "b")}
    runs["b"].kill()
    moved = {v for v in vhids if expected[v] == "b"}
    survivors = [hosts[0], hosts[2], cnode]
    # b's addresses stay on b (a killed daemon runs no script): who took over is read from
    # the survivors; a has skew 50 against c's 70.
    after_kill = {v: "a" if v in moved else expected[v] for v in vhids}
    assert wait_until(lambda: all(holders(survivors, vip(v)) == [after_kill[v]]
                                  for v in vhids), 10), \
        {v: holders(survivors, vip(v)) for v in vhids}
    after = {key: status(runs[key[0]], key[1]) for key in before}
    changed = {key: (before[key], after[key]) for key in before
               if (before[key] or {}).get("transitions") != (after[key] or {}).get("transitions")}
    assert changed == {}


def _add_second_interface(lab: Lab, host: Host, address: str) -> None:
    """Plug ``eth1`` of ``host`` into the lab's bridge too (both ends made in namespaces)."""
    port = f"{host.name}1p"
    for argv in (
        ["ip", "-n", lab.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth1",
         "netns", host.netns],
        ["ip", "-n", lab.bridge_ns, "link", "set", port, "master", "br0", "up"],
        ["ip", "-n", host.netns, "addr", "add", address, "dev", "eth1"],
        ["ip", "-n", host.netns, "link", "set", "eth1", "up"],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=10)


def test_a_hung_script_and_a_vanished_interface_stay_in_their_instance(
    lab: Lab, tmp_path: Path
) -> None:
    """One process, six instances on a lone host: vhid 1's upscript hangs, eth1 (vhid 6)
    is deleted. The other instances' adverts stay on time (advbase 1: no gap over 1.05 s),
    and so do vhid 1's own."""
    host = lab.add_host("a", "192.0.2.1/24")
    _add_second_interface(lab, host, "198.51.100.1/24")
    work = tmp_path / "a"
    work.mkdir()
    up, down = write_recording_scripts(work, work / "calls.txt")
    hang = work / "hang-up.sh"
    hang.write_text(f'#!/bin/sh\necho "hang $*" >> "{work / "calls.txt"}"\nexec sleep 40\n')
    hang.chmod(0o755)
    confdir = work / "interface"
    write_files(confdir, host, range(1, 6), skew=0)
    # vhid 1: its own upscript, which never ends; vhid 6 on eth1.
    with (confdir / "ucarp01").open("a") as f:
        f.write(f"UPSCRIPT={hang}\n")
    write_files(confdir, host, [6], skew=0, interface="eth1", source="198.51.100.1")
    (confdir / "ucarp06").write_text(
        (confdir / "ucarp06").read_text().replace(vip(6), "198.51.100.106"))
    run = start_run(host, work, confdir, write_defaults(work, up, down))
    assert wait_until(lambda: all((status(run, v) or {}).get("state") == "MASTER"
                                  for v in range(1, 6)), 10), run.log()
    assert wait_until(lambda: (status(run, 6, "eth1") or {}).get("state") == "MASTER", 5)
    with lab.capture_bridge(kinds=("carp",), max_seconds=30) as cap:
        time.sleep(2.0)
        t_del = time.monotonic()
        host.run(["ip", "link", "del", "eth1"])
        time.sleep(4.0)
        t_end = time.monotonic()
        frames = cap.frames()
    assert "hang eth0 " + vip(1) in (work / "calls.txt").read_text()
    assert run.wait_log(r"Interface \[eth1\] has disappeared", 5), run.log()
    start = t_del - 2.0
    for v in range(1, 6):
        times = advert_times(frames, v)
        assert len(times) >= 5, (v, len(times))
        assert largest_gap(times, start + 0.2, t_end) <= 1.05, (v, largest_gap(times))
    assert advert_times(frames, 6) and max(advert_times(frames, 6)) < t_del + 0.05
    assert run.alive()
    # The hung script is still the only thing vhid 1 waits for; the others' scripts ran.
    calls = (work / "calls.txt").read_text()
    for v in range(2, 6):
        assert re.search(rf"^up \S+ eth0 {re.escape(vip(v))}$", calls, re.M), calls


def test_reload_keeps_adds_removes_restarts_and_skips_a_broken_file(
    lab: Lab, tmp_path: Path
) -> None:
    a, b = lab.add_host("a", "192.0.2.1/24"), lab.add_host("b", "192.0.2.2/24")
    runs: dict[str, Daemon] = {}
    dirs: dict[str, Path] = {}
    for host, skew in ((a, 0), (b, 100)):
        work = tmp_path / host.name
        work.mkdir()
        up, down = write_recording_scripts(work, work / "calls.txt")
        dirs[host.name] = work / "interface"
        write_files(dirs[host.name], host, range(1, 5), skew=skew)
        runs[host.name] = start_run(host, work, dirs[host.name], write_defaults(work, up, down))
    ra = runs["a"]
    assert wait_until(lambda: all(holders((a, b), vip(v)) == ["a"] for v in range(1, 5)), 10)
    time.sleep(0.5)
    kept = {v: status(ra, v) for v in (1, 4)}
    conf = dirs["a"]
    (conf / "ucarp03").unlink()  # removed: leaves, b takes 3 at once
    write_files(conf, a, [5], skew=0)  # added: b has no vhid 5
    (conf / "ucarp02").write_text((conf / "ucarp02").read_text().replace("-k 0", "-k 5"))
    (conf / "ucarp04").write_text("INSTANCE_ID=$(\n")  # broken: 4 keeps running as it was
    with lab.capture_bridge(kinds=("carp",), max_seconds=30) as cap:
        time.sleep(1.2)
        t_hup = time.monotonic()
        ra.send_signal(signal.SIGHUP)
        assert ra.wait_log(r"Reloaded: 1 kept, 1 added, 1 removed, 1 restarted, 1 bad", 5), \
            ra.log()
        assert wait_until(lambda: holders((a, b), vip(3)) == ["b"], 1.0)
        assert wait_until(lambda: holders((a, b), vip(5)) == ["a"], 6)
        assert wait_until(lambda: holders((a, b), vip(2)) == ["a"], 6)
        t_end = time.monotonic()
        frames = cap.frames()
    assert re.search(r"ucarp04: .*\(its instance keeps running as it was\)", ra.log())
    for v in (1, 4):  # untouched: the same state change, no new transition
        now = status(ra, v)
        assert now is not None and kept[v] is not None
        assert (now["state"], now["since"], now["transitions"]) == (
            kept[v]["state"], kept[v]["since"], kept[v]["transitions"])
    # ... and their adverts went on at their pace through the reload.
    for v in (1, 4):
        times = advert_times(frames, v, a.ip)
        assert largest_gap(times, t_hup - 1.0, t_end) <= 1.05, (v, times)
    assert status(ra, 3) is None  # its state file went with it
    assert (status(ra, 2) or {}).get("advskew") == 5


def test_check_and_run_refuse_nothing_half_started(tmp_path: Path, lab: Lab) -> None:
    """A directory with one broken file: --check names it and fails; run starts the good one."""
    host = lab.add_host("a", "192.0.2.1/24")
    work = tmp_path / "a"
    work.mkdir()
    up, down = write_recording_scripts(work, work / "calls.txt")
    confdir = work / "interface"
    write_files(confdir, host, [1, 2], skew=0)
    (confdir / "ucarp02").write_text((confdir / "ucarp02").read_text().replace(
        f"SOURCE_ADDRESS={host.ip}", "SOURCE_ADDRESS=192.0.2.77"))
    defaults = write_defaults(work, up, down)
    done = host.run(["python3", "-m", "pyucarp", "run", "--check", "--config-dir", str(confdir),
                     "--defaults", str(defaults)], check=False)
    assert done.returncode == 0, done.stderr  # sourcing and checking the command line pass
    run = start_run(host, work, confdir, defaults)
    assert run.wait_log(r"ucarp02: Source address \[192\.0\.2\.77\] is not configured", 5), \
        run.log()
    assert wait_until(lambda: (status(run, 1) or {}).get("state") == "MASTER", 6), run.log()
    assert status(run, 2) is None
    os.kill(run.pid, signal.SIGTERM)
    assert run.wait_exit(10) == 0


def carried(host: Host, addresses: list[str]) -> dict[str, int]:
    """Which of ``addresses`` ``host``'s eth0 carries, usable (not tentative): address ->
    prefix length."""
    out = host.run(["ip", "-j", "address", "show", "dev", host.ifname]).stdout
    return {info["local"]: info["prefixlen"] for link in json.loads(out)
            for info in link.get("addr_info", [])
            if info["local"] in addresses and not info.get("tentative")}


def test_address_lists_in_files_move_together(tmp_path: Path) -> None:
    """``pyucarp run`` with two files, each listing two addresses (IPv4 with a prefix length
    for VIRTUAL_NETMASK, IPv6 without one), moved by the shipped scripts: the master holds
    all four, the scripts run once per address in the file's order, and when the master's
    process dies the backup takes all four; stopped, it takes them off."""
    from conftest import lab_or_skip

    v4 = ["192.0.2.101", "198.51.100.101"]
    v6 = ["2001:db8::101", "2001:db8::102"]
    everything = v4 + v6
    with lab_or_skip(ipv6=True) as lab:
        hosts = [lab.add_host(name, f"192.0.2.{n}/24", addr6=f"2001:db8::{n}/64")
                 for n, name in ((1, "a"), (2, "b"))]
        runs = []
        for n, (host, skew) in enumerate(zip(hosts, (0, 50), strict=True), 1):
            work = tmp_path / host.name
            work.mkdir()
            up, down = write_recording_scripts(work, work / "calls.txt")
            confdir = work / "interface"
            confdir.mkdir()
            common = f"INTERFACE=eth0\nPASSWORD='{PASSWORD}'\nOPTIONS=\"-z -P -k {skew}\"\n"
            (confdir / "ucarp01").write_text(
                common + f"INSTANCE_ID=1\nVIRTUAL_ADDRESS='{v4[0]}\n\t{v4[1]}'\n"
                f"VIRTUAL_NETMASK=24\nSOURCE_ADDRESS={host.ip}\n")
            (confdir / "ucarp02").write_text(
                common + f"INSTANCE_ID=2\nVIRTUAL_ADDRESS='{v6[0]} {v6[1]}'\n"
                f"SOURCE_ADDRESS=2001:db8::{n}\n")
            defaults = write_defaults(work, up, down)
            check = host.run(["python3", "-m", "pyucarp", "run", "--check", "--config-dir",
                              str(confdir), "--defaults", str(defaults)], check=False)
            assert check.returncode == 0, check.stderr
            run = start_run(host, work, confdir, defaults)
            run.record_path = work / "calls.txt"
            runs.append(run)
        a, b = hosts
        held = {v4[0]: 24, v4[1]: 24, v6[0]: 128, v6[1]: 128}
        assert wait_until(lambda: carried(a, everything) == held and not carried(b, everything),
                          MASTER_DOWN + 3), (carried(a, everything), carried(b, everything),
                                             runs[0].log())
        # Each instance runs its scripts in its list's order (the two instances' may
        # interleave: each has its own queue).
        ups = [c.args for c in runs[0].calls("up")]
        for vips in (v4, v6):
            assert [args for args in ups if args[1] in vips] == [("eth0", v) for v in vips], ups
        state = status(runs[0], 1)
        assert state is not None and state["vips"] == v4, state

        runs[0].kill()
        assert wait_until(lambda: carried(b, everything) == held, MASTER_DOWN + 3), \
            (carried(b, everything), runs[1].log())
        os.kill(runs[1].pid, signal.SIGTERM)
        assert runs[1].wait_exit(10) == 0
        assert carried(b, everything) == {}
        downs = [c.args for c in runs[1].calls("down")]
        for vips in (v4, v6):
            assert [args for args in downs if args[1] in vips][-2:] == [("eth0", v) for v in vips]
