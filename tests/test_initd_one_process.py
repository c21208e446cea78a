"""``init.d/ucarp`` with ``UCARP_ONE_PROCESS=yes``: one ``pyucarp run`` per host, for real.

The hosts are set up as in ``test_initd.py`` (its :class:`Node`: an installed tree per lab
host, the script run with dash inside the host's network namespace and a private mount
namespace showing the tree's ``/etc/default`` and ``/run``), with the one-process setting
added to each host's defaults file. ``pyucarp run``'s pid file is then the tree's
``run/pyucarp/run.pid`` and the instances' state files sit beside it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from pyucarp.lab.netlab import Lab, pid_alive, wait_until
from pyucarp.shell.statefile import INITIAL_NETNS_INODE
from test_initd import MASTER_DOWN, Node, holders
from test_initd import pytestmark as initd_marks
from test_interface_files import RUN_MISSING

needs_run = pytest.mark.skipif(RUN_MISSING is not None, reason=RUN_MISSING or "")
pytestmark = [*initd_marks, pytest.mark.netns]

VIPS = ["192.0.2.101", "192.0.2.102", "192.0.2.103"]
ADDED_VIP = "192.0.2.104"
RUN_PIDFILE = "/run/pyucarp/run.pid"


def one_process(node: Node, **settings: str) -> None:
    """Turn the host's init script to one process (plus other defaults settings)."""
    defaults = node.root / "etc" / "default" / "ucarp"
    extra = {"UCARP_ONE_PROCESS": "yes", **settings}
    defaults.write_text(defaults.read_text() + "".join(f"{k}={v}\n" for k, v in extra.items()))


def add_file(node: Node, n: int, **changes: str | None) -> Path:
    """Interface file ucarp<n>: vhid 11+n, VIP 192.0.2.(101+n), the default pid file."""
    values: dict[str, str | None] = {
        "INSTANCE_ID": str(11 + n), "VIRTUAL_ADDRESS": f"192.0.2.{101 + n}",
        "INTERFACE": f"eth0:carp{n}" if n != 2 else "eth0",
        "SOURCE_ADDRESS": node.host.ip, "UCARP_PIDFILE": None,
    }
    values.update(changes)
    return node.add_sample(f"ucarp{n}", **values)


def state_dir(node: Node) -> Path:
    """The instances' default state directory as the daemon picks it inside the host:
    ``/run/pyucarp``, or its ``netns-<inode>`` subdirectory outside the first namespace."""
    inode = os.stat(f"/run/netns/{node.host.netns}").st_ino
    try:
        host = os.stat("/proc/1/ns/net").st_ino
    except OSError:  # pid 1 may hide it, as the daemon knows
        host = INITIAL_NETNS_INODE
    if inode == host:
        return node.run_dir / "pyucarp"
    return node.run_dir / "pyucarp" / f"netns-{inode}"


def state(node: Node, stem: str) -> dict[str, Any] | None:
    """The state document of instance ``stem`` (``eth0_carp0-11``), None when absent."""
    try:
        return json.loads((state_dir(node) / f"{stem}.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def run_pid(node: Node) -> int | None:
    try:
        return int((node.run_dir / "pyucarp" / "run.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def status_lines(node: Node) -> dict[str, str]:
    res = node.initd("status")
    return {line.split(":", 1)[0]: line for line in res.out.splitlines()}


def one_holder_each(nodes: tuple[Node, ...], vips: list[str]) -> bool:
    return all(len(holders(*nodes, vip=v)) == 1 for v in vips)


@pytest.fixture
def hosts(lab: Lab, tmp_path: Path) -> Any:
    a = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    b = Node(lab.add_host("b", "192.0.2.2/24"), tmp_path / "b")
    for node in (a, b):
        one_process(node)
        for n in range(3):
            add_file(node, n)
    yield a, b
    for node in (a, b):  # what a failing test left running, stopped by the script itself
        if node.daemons():
            node.initd("stop")


@needs_run
def test_two_hosts_one_process_each_reload_and_stop(hosts: tuple[Node, Node]) -> None:
    a, b = hosts
    for node in (a, b):
        res = node.initd("start")
        assert res.rc == 0 and "started pyucarp run" in res.out, res
        # One process for the three files (the -B fork's first child may still be exiting).
        assert wait_until(lambda n=node: len(n.daemons()) == 1, 5), node.daemons()
        (argv,) = node.daemons().values()
        assert "run" in argv and f"--pidfile={RUN_PIDFILE}" in argv and "-B" in argv
        assert not any("change-me" in word for word in argv)
    assert wait_until(lambda: one_holder_each((a, b), VIPS), MASTER_DOWN + 3), \
        [holders(a, b, vip=v) for v in VIPS]
    time.sleep(1.2)  # one more advert round: still one master per vhid
    assert one_holder_each((a, b), VIPS)

    states: dict[str, list[str]] = {}
    for node in (a, b):
        res = node.initd("status")
        assert res.rc == 0, res
        lines = res.out.splitlines()
        assert [line.split(":")[0] for line in lines] == ["ucarp0", "ucarp1", "ucarp2"]
        for line in lines:
            assert f": running (pid {run_pid(node)}, " in line, line
            states.setdefault(line.split(":")[0], []).append(line.rsplit(": ", 1)[1])
    assert all(sorted(s) == ["BACKUP", "MASTER"] for s in states.values()), states

    # Reload after adding ucarp3 and removing ucarp2: the untouched instances go on as
    # they were (same process, same state since the same moment, no new transition).
    kept = ("eth0_carp0-11", "eth0_carp1-12")
    before = {node.host.name: {stem: state(node, stem) for stem in kept} for node in (a, b)}
    pids = {node.host.name: run_pid(node) for node in (a, b)}
    for node in (a, b):
        add_file(node, 3)
        (node.interface_dir / "ucarp2").unlink()
        res = node.initd("reload")
        assert res.rc == 0 and "reloads" in res.out, res
    assert wait_until(lambda: one_holder_each((a, b), [ADDED_VIP])
                      and holders(a, b, vip=VIPS[2]) == [], MASTER_DOWN + 3)
    for node in (a, b):
        assert wait_until(lambda n=node: state(n, "eth0-13") is None
                          and state(n, "eth0_carp3-14") is not None, 5), node.leftovers()
        assert run_pid(node) == pids[node.host.name] and len(node.daemons()) == 1
        for stem in kept:
            old, new = before[node.host.name][stem], state(node, stem)
            assert old is not None and new is not None
            assert (new["pid"], new["state"], new["since"], new["transitions"]) == \
                (old["pid"], old["state"], old["since"], old["transitions"]), (stem, old, new)
        lines = status_lines(node)
        assert sorted(lines) == ["ucarp0", "ucarp1", "ucarp3"]
        assert all(": running (" in line for line in lines.values()), lines

    # Stopping one host: every VIP it held moves to the other, at once (-z: leave adverts).
    vips = [VIPS[0], VIPS[1], ADDED_VIP]
    stopping, other = (a, b) if a.host.has_address(VIPS[0]) else (b, a)
    res = stopping.initd("stop")
    assert res.rc == 0 and "stopped pyucarp run" in res.out, res
    assert wait_until(lambda: all(holders(a, b, vip=v) == [other.host.name] for v in vips),
                      MASTER_DOWN), [holders(a, b, vip=v) for v in vips]
    assert stopping.daemons() == {} and stopping.leftovers() == []
    res = stopping.initd("status")
    assert res.rc == 3 and res.out.count(": stopped") == 3, res

    res = other.initd("stop")
    assert res.rc == 0, res
    assert all(holders(a, b, vip=v) == [] for v in vips)
    assert other.daemons() == {} and other.leftovers() == []


@needs_run
def test_bad_file_single_file_actions_and_a_killed_daemon(lab: Lab, tmp_path: Path) -> None:
    node = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    one_process(node)
    add_file(node, 0)
    add_file(node, 1, INSTANCE_ID="300")

    res = node.initd("start")
    assert res.rc == 6 and "started pyucarp run" in res.out, res
    assert "ucarp1: INSTANCE_ID [300] is not a number from 1 to 255" in res.err
    assert wait_until(lambda: node.host.has_address(VIPS[0]), MASTER_DOWN + 3)
    res = node.initd("status")
    assert res.rc == 3, res
    lines = {line.split(":")[0]: line for line in res.out.splitlines()}
    assert ": running (" in lines["ucarp0"] and "MASTER" in lines["ucarp0"]
    assert "not running in pyucarp run" in lines["ucarp1"]
    assert "INSTANCE_ID [300]" in lines["ucarp1"]
    assert node.initd("status", "ucarp0").rc == 0
    assert node.initd("status", "nosuchfile").rc == 4
    res = node.initd("stop", "ucarp0")  # one file at a time: not in this mode
    assert res.rc == 3 and "every interface file" in res.err
    assert node.initd("reload").rc == 6  # reloaded, the broken file named again

    # Fixed, then reloaded: the instance starts inside the same process.
    add_file(node, 1)
    pid = run_pid(node)
    assert node.initd("reload").rc == 0
    assert wait_until(lambda: node.host.has_address(VIPS[1]), MASTER_DOWN + 3)
    assert node.initd("status").rc == 0 and run_pid(node) == pid

    # Killed hard while MASTER: status says so; stop removes what it left.
    assert pid is not None
    node.host.run(["kill", "-KILL", str(pid)], check=False)
    assert wait_until(lambda: not pid_alive(pid), 5)
    res = node.initd("status")
    assert res.rc == 1 and "pid file /run/pyucarp/run.pid exists" in res.out, res
    assert node.host.has_address(VIPS[0]) and node.host.has_address(VIPS[1])
    res = node.initd("stop")
    assert res.rc == 0 and "pyucarp run not running" in res.out, res
    assert f"removed {VIPS[0]} left behind" in res.out
    assert f"removed {VIPS[1]} left behind" in res.out
    assert not node.host.has_address(VIPS[0]) and not node.host.has_address(VIPS[1])
    assert node.leftovers() == []
    assert node.initd("reload").rc == 7  # not running


@needs_run
def test_switching_modes_with_restart(lab: Lab, tmp_path: Path) -> None:
    node = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    for n in range(3):
        add_file(node, n)
    defaults = node.root / "etc" / "default" / "ucarp"
    per_file = defaults.read_text()
    try:
        res = node.initd("start")
        assert res.rc == 0 and res.out.count("started") == 3, res
        assert wait_until(lambda: all(node.host.has_address(v) for v in VIPS), MASTER_DOWN + 3)

        one_process(node)
        res = node.initd("start")  # the per-file daemons hold the instances
        assert res.rc == 1 and "use restart" in res.err, res
        assert len(node.daemons()) == 3
        res = node.initd("restart")
        assert res.rc == 0, res
        assert res.out.count(": stopped (pid") == 3 and "started pyucarp run" in res.out
        assert wait_until(lambda: len(node.daemons()) == 1, 5), node.daemons()
        (argv,) = node.daemons().values()
        assert "run" in argv
        assert wait_until(lambda: all(node.host.has_address(v) for v in VIPS), MASTER_DOWN + 3)
        assert node.initd("status").rc == 0

        defaults.write_text(per_file)  # back to one daemon per file
        res = node.initd("start")
        assert res.rc == 1 and "use restart" in res.err, res
        res = node.initd("restart")
        assert res.rc == 0 and "stopped pyucarp run" in res.out, res
        assert res.out.count("started") == 3, res
        assert wait_until(lambda: len(node.daemons()) == 3, 5), node.daemons()
        assert wait_until(lambda: all(node.host.has_address(v) for v in VIPS), MASTER_DOWN + 3)
    finally:
        defaults.write_text(per_file)
        node.initd("stop")
        one_process(node)
        node.initd("stop")
    assert node.daemons() == {} and node.leftovers() == []
    assert not any(node.host.has_address(v) for v in VIPS)


def test_one_process_needs_a_pyucarp_with_run(lab: Lab, tmp_path: Path) -> None:
    node = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    old = tmp_path / "old-pyucarp"
    old.write_text("#!/bin/sh\necho 'pyucarp 0.0 (no run command)'\n")
    old.chmod(0o755)
    one_process(node, PYUCARP_EXEC=str(old))
    add_file(node, 0)
    res = node.initd("start")
    assert res.rc == 5 and "has no `run' command" in res.err, res
    one_process(node, PYUCARP_EXEC=str(tmp_path / "missing"))
    res = node.initd("start")
    assert res.rc == 5 and "is not executable" in res.err, res
    assert node.daemons() == {}
    res = node.initd("status")
    assert res.rc == 3 and "ucarp0: stopped" in res.out
    res = node.initd("restart", "ucarp0")
    assert res.rc == 3
    assert node.initd("bogus").rc == 3
