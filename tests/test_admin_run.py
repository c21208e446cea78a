"""``pyucarp status``, ``demote``/``promote`` and ``metrics`` on the instances of one
``pyucarp run`` process, for real.

A lone lab host runs ``pyucarp run`` over three interface files (vhids 1 to 3 on eth0, one
virtual address each): three instances, three state files, one pid. The commands must
see them exactly as three single daemons: one row, one verdict and one label set each;
``demote`` of one instance hands over that one only, although the control signal reaches
the whole process; ``promote`` brings it back; killing the process leaves three stale files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pyucarp.lab.daemons import Daemon, start_pyucarp, write_recording_scripts
from pyucarp.lab.netlab import Host, Lab, wait_until
from test_admin import by_name, parse_metrics, run_cmd, status_json

pytestmark = pytest.mark.netns

VIPS = {"eth0-1": "192.0.2.101", "eth0-2": "192.0.2.102", "eth0-3": "192.0.2.103"}
NAMES = sorted(VIPS)
DEADRATIO = 2  # master down after 2 s (advbase 1, advskew 0)


def write_config(tmp_path: Path, host: Host) -> tuple[Path, Path]:
    """A defaults file and three interface files; eth0-3's upscript reports a failure."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    up, down = write_recording_scripts(scripts, scripts / "calls.txt")
    failing = scripts / "up-fails.sh"
    failing.write_text(f'#!/bin/sh\n"{up}" "$@"\nexit 1\n')  # the VIP is added all the same
    failing.chmod(0o755)
    defaults = tmp_path / "default-ucarp"
    defaults.write_text(f'OPTIONS="-z -r {DEADRATIO}"\nUPSCRIPT={up}\nDOWNSCRIPT={down}\n')
    config_dir = tmp_path / "interface"
    config_dir.mkdir()
    for vhid in (1, 2, 3):
        text = (f"INTERFACE=eth0\nINSTANCE_ID={vhid}\nPASSWORD=s3cret\n"
                f"VIRTUAL_ADDRESS={VIPS[f'eth0-{vhid}']}\nSOURCE_ADDRESS={host.ip}\n")
        if vhid == 3:
            text += f"UPSCRIPT={failing}\n"
        path = config_dir / f"ucarp{vhid}"
        path.write_text(text)
        path.chmod(0o600)
    return config_dir, defaults


def by_instance(statedir: Path) -> dict[str, dict[str, Any]]:
    """``pyucarp status --json``, keyed by instance name."""
    return {doc["name"]: doc for doc in status_json(statedir)}


def states(statedir: Path) -> dict[str, str | None]:
    """The state of every running instance."""
    return {name: doc.get("state") for name, doc in by_instance(statedir).items()
            if doc["running"]}


def metrics(statedir: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    proc = run_cmd("metrics", "--statedir", str(statedir))
    assert proc.returncode == 0, proc.stderr
    return parse_metrics(proc.stdout)


def per_instance(samples: dict[tuple[str, frozenset[tuple[str, str]]], float],
                 name: str) -> dict[str, float]:
    """One value of the metric ``name`` per instance label."""
    values = {dict(labels)["instance"]: v for (n, labels), v in samples.items() if n == name}
    assert len(values) == len([n for (n, _labels) in samples if n == name])  # one each
    return values


def untouched(docs: dict[str, dict[str, Any]], before: dict[str, tuple[float, int]]) -> bool:
    """No state change since ``before`` (``since`` is written to the millisecond from two
    clocks, so it may move by one or two)."""
    return all(docs[n]["transitions"] == transitions and abs(docs[n]["since"] - since) < 0.05
               for n, (since, transitions) in before.items())


def test_one_run_process_three_instances(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("a", "192.0.2.1/24")
    config_dir, defaults = write_config(tmp_path, host)
    statedir = tmp_path / "state"
    run: Daemon = start_pyucarp(
        host, tmp_path,
        ["run", "--config-dir", str(config_dir), "--defaults", str(defaults),
         "--statedir", str(statedir), "-f", "none"],
        name="run", statedir=statedir,
    )

    # Alone on the segment, every instance becomes MASTER after its master-down time.
    all_master = dict.fromkeys(NAMES, "MASTER")
    assert wait_until(lambda: states(statedir) == all_master, DEADRATIO + 10), run.log()
    assert wait_until(lambda: all(host.has_address(v) for v in VIPS.values()), 5), run.log()
    assert wait_until(lambda: by_instance(statedir)["eth0-3"]["problems"] == ["script-failed"],
                      5)

    # One pid, three instances, each judged on its own: eth0-3's failed upscript makes
    # `status` exit 1 without touching the verdict of the other two.
    docs = by_instance(statedir)
    assert sorted(docs) == NAMES
    assert {d["pid"] for d in docs.values()} == {run.proc.pid}
    assert {n: d["vip"] for n, d in docs.items()} == VIPS
    assert {n: d["problems"] for n, d in docs.items()} == {
        "eth0-1": [], "eth0-2": [], "eth0-3": ["script-failed"]}
    table = run_cmd("status", "--statedir", str(statedir))
    assert table.returncode == 1, table.stdout + table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert sorted(rows) == NAMES
    assert rows["eth0-1"].endswith("ok") and rows["eth0-2"].endswith("ok")
    assert rows["eth0-3"].endswith("script-failed") and "up exit 1" in rows["eth0-3"]
    samples = metrics(statedir)
    assert per_instance(samples, "ucarp_state") == dict.fromkeys(NAMES, 2)
    assert per_instance(samples, "ucarp_healthy") == {"eth0-1": 1, "eth0-2": 1, "eth0-3": 0}
    assert by_name(samples, "ucarp_up", instance="eth0-2", interface="eth0", vhid="2",
                   vip=VIPS["eth0-2"]) == [1]
    others = ("eth0-1", "eth0-3")
    before = {n: (docs[n]["since"], docs[n]["transitions"]) for n in others}

    # Demote one instance: the control signal reaches the whole process, but only eth0-2's
    # flag is set, so only eth0-2 hands over; the other two stay MASTER, untouched.
    out = run_cmd("demote", "eth0-2", "--statedir", str(statedir))
    assert out.returncode == 0, out.stdout + out.stderr
    (line,) = out.stdout.splitlines()
    assert line.startswith("eth0-2: maintenance on, BACKUP"), line
    assert sorted(p.name for p in statedir.glob("*.maintenance")) == ["eth0-2.maintenance"]
    assert wait_until(lambda: not host.has_address(VIPS["eth0-2"]), 5)
    time.sleep(DEADRATIO + 1.0)  # past the master-down time: maintenance holds it BACKUP
    docs = by_instance(statedir)
    assert {n: (d["state"], d["maintenance"]) for n, d in docs.items()} == {
        "eth0-1": ("MASTER", False), "eth0-2": ("BACKUP", True), "eth0-3": ("MASTER", False)}
    assert untouched(docs, before)
    assert host.has_address(VIPS["eth0-1"]) and host.has_address(VIPS["eth0-3"])
    assert not host.has_address(VIPS["eth0-2"])
    assert {d["pid"] for d in docs.values()} == {run.proc.pid}
    rows = {line.split()[0]: line.split() for line in
            run_cmd("status", "--statedir", str(statedir)).stdout.splitlines()[1:]}
    assert {n: cells[4] for n, cells in rows.items()} == {
        "eth0-1": "MASTER", "eth0-2": "BACKUP", "eth0-3": "MASTER"}
    samples = metrics(statedir)
    assert per_instance(samples, "ucarp_maintenance") == {"eth0-1": 0, "eth0-2": 1, "eth0-3": 0}
    assert per_instance(samples, "ucarp_master") == {"eth0-1": 1, "eth0-2": 0, "eth0-3": 1}

    # Promote it: eth0-2 takes part in elections again and, alone, becomes MASTER.
    out = run_cmd("promote", "eth0-2", "--statedir", str(statedir))
    assert out.returncode == 0, out.stdout + out.stderr
    (line,) = out.stdout.splitlines()
    assert line.startswith("eth0-2: maintenance off"), line
    assert list(statedir.glob("*.maintenance")) == []
    assert wait_until(lambda: states(statedir) == all_master, DEADRATIO + 5), run.log()
    assert wait_until(lambda: host.has_address(VIPS["eth0-2"]), 5)
    docs = by_instance(statedir)
    assert untouched(docs, before)
    assert not any(d["maintenance"] for d in docs.values())
    assert per_instance(metrics(statedir), "ucarp_master") == dict.fromkeys(NAMES, 1)

    # The process is killed: its three files stay behind, each one stale.
    run.kill()
    stale = run_cmd("status", "--statedir", str(statedir))
    assert stale.returncode == 1
    assert stale.stdout.count("DEAD (was MASTER)") == 3, stale.stdout
    assert {n: d["problems"] for n, d in by_instance(statedir).items()} == dict.fromkeys(
        NAMES, ["dead"])
    samples = metrics(statedir)
    assert per_instance(samples, "ucarp_up") == dict.fromkeys(NAMES, 0)
    assert by_name(samples, "ucarp_state") == []
