"""``pyucarp status``, ``demote``/``promote`` and ``metrics``.

Unit tests read hand-made state files (written from :class:`InstanceStatus`, as the daemon
writes them); the namespace test runs a two-host cluster, each host with its own
--statedir, through a graceful hand-off, a restart in maintenance, a promotion and a
failover, reading everything through the commands themselves. ``test_admin_run.py`` does
the same for the instances of one ``pyucarp run`` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyucarp.lab.daemons import Daemon, pyucarp_env, start_node
from pyucarp.lab.netlab import Host, Lab, wait_until
from pyucarp.ops import admin, metrics
from pyucarp.shell.statefile import (
    CheckRecord,
    InstanceStatus,
    MasterRecord,
    ScriptRecord,
    StateFile,
)

prometheus_parser = pytest.importorskip("prometheus_client.parser")

REPO = Path(__file__).resolve().parent.parent
VIP = "192.0.2.100"
VHID = 7
NAME = f"eth0-{VHID}"


def run_cmd(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """``python -m pyucarp ARGS`` from this work tree (root namespace: files only)."""
    return subprocess.run(
        [sys.executable, "-m", "pyucarp", *args], capture_output=True, text=True,
        timeout=timeout, env=pyucarp_env(), cwd=REPO, stdin=subprocess.DEVNULL,
    )


def status_json(statedir: Path) -> list[dict[str, Any]]:
    """``pyucarp status --json`` parsed."""
    proc = run_cmd("status", "--statedir", str(statedir), "--json")
    assert proc.returncode in (0, 1, 3), proc.stderr
    doc: list[dict[str, Any]] = json.loads(proc.stdout)
    return doc


def one(statedir: Path) -> dict[str, Any]:
    """The single instance of a host's statedir."""
    doc = status_json(statedir)
    assert len(doc) == 1, doc
    return doc[0]


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, keyed by (sample name, labels), through prometheus_client's parser."""
    samples = {}
    for family in prometheus_parser.text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def by_name(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
            **labels: str) -> list[float]:
    """Values of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]


# --------------------------------------------------------------------------- hand-made files


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A live process whose command line says pyucarp (status checks for that)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pyucarp-fake"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def script(kind: str, returncode: int | None, *, timed_out: bool = False,
           error: str | None = None) -> ScriptRecord:
    """How a script ended, as the state file records it."""
    return ScriptRecord(kind, (f"/x/{kind}", "eth0", VIP), returncode, None, 0.012,
                        timed_out, error)


def snapshot(pid: int, **changes: Any) -> InstanceStatus:
    """An instance's status as the daemon writes it."""
    now = time.time()
    return InstanceStatus(
        pid=pid, name=NAME, interface="eth0", vhid=VHID, vip=VIP, srcip="192.0.2.1",
        advbase=1, advskew=0, state="MASTER", since=now - 192.4, updated=now, transitions=2,
        master=MasterRecord("192.0.2.1", 1, 0), maintenance=False, link_up=True,
        adverts_sent=193, adverts_received=4, send_errors=0,
        dropped={"bad_digest": 3, "replay": 1}, replay_window=2,
        last_script=script("up", 0),
    )._replace(**changes)


def write_state(statedir: Path, name: str, status: InstanceStatus) -> None:
    """Write ``status`` as instance ``name``'s state file, as the daemon does."""
    statedir.mkdir(exist_ok=True)
    StateFile(str(statedir / f"{name}.json")).write(status._replace(name=name))


def test_human_ago() -> None:
    assert admin.human_ago(5.9) == "5s ago"
    assert admin.human_ago(192) == "3m12s ago"
    assert admin.human_ago(3 * 3600 + 5 * 60 + 9) == "3h05m ago"
    assert admin.human_ago(2 * 86400 + 4 * 3600) == "2d04h ago"
    assert admin.human_ago(-3) == "0s ago"


def test_status_table_and_json(tmp_path: Path, live_pid: int) -> None:
    write_state(tmp_path, NAME, snapshot(live_pid))
    proc = run_cmd("status", "--statedir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "INTERFACE", "VHID", "VIP", "STATE"]
    for cell in (NAME, "eth0", VIP, "MASTER", "3m12s ago", "192.0.2.1 1/0 (self)",
                 "up exit 0", "ok"):
        assert cell in row, (cell, row)
    assert row.split()[-2] == "4"  # dropped: 3 + 1
    doc = json.loads(run_cmd("status", "--statedir", str(tmp_path), "--json").stdout)
    assert doc[0]["name"] == NAME and doc[0]["healthy"] is True and doc[0]["problems"] == []
    assert doc[0]["adverts_sent"] == 193 and doc[0]["running"] is True


@pytest.mark.parametrize(
    "case, changes, problem",
    [
        ("link", {"link_up": False}, "link-down"),
        ("exit", {"last_script": script("down", 1)}, "script-failed"),
        ("timeout", {"last_script": script("up", None, timed_out=True)}, "script-failed"),
        ("spawn", {"last_script": script("up", None, error="No such file")}, "script-failed"),
        ("hung", {"updated": time.time() - 3600}, "hung"),
        ("fault", {"state": "FAULT", "health": "unhealthy"}, "service-unhealthy"),
        # With --track-weight an unhealthy node is not FAULT, but its service is still down.
        ("weighted", {"state": "BACKUP", "health": "unhealthy"}, "service-unhealthy"),
    ],
)
def test_status_unhealthy(tmp_path: Path, live_pid: int, case: str, changes: dict[str, Any],
                          problem: str) -> None:
    write_state(tmp_path, NAME, snapshot(live_pid, **changes))
    write_state(tmp_path, "eth1-9", snapshot(live_pid, interface="eth1", vhid=9))
    proc = run_cmd("status", "--statedir", str(tmp_path))
    assert proc.returncode == 1
    assert problem in proc.stdout
    doc = status_json(tmp_path)
    assert [d["healthy"] for d in doc] == [False, True]
    assert doc[0]["problems"] == [problem]


def test_status_stale_file_is_dead(tmp_path: Path, dead_pid: int) -> None:
    write_state(tmp_path, NAME, snapshot(dead_pid))
    proc = run_cmd("status", "--statedir", str(tmp_path))
    assert proc.returncode == 1
    assert "DEAD (was MASTER)" in proc.stdout
    assert f"stale file, pid {dead_pid} not running" in proc.stdout
    assert status_json(tmp_path)[0]["problems"] == ["dead"]


def test_status_unreadable_and_none(tmp_path: Path) -> None:
    proc = run_cmd("status", "--statedir", str(tmp_path / "missing"))
    assert proc.returncode == 3 and "no pyucarp instance" in proc.stdout
    proc = run_cmd("status", "--statedir", str(tmp_path / "missing"), "--json")
    assert proc.stdout.strip() == "[]"
    (tmp_path / "eth0-3.json").write_text("{half")
    (tmp_path / ".eth0-3.json.123.tmp").write_text("{}")  # an atomic write in progress
    proc = run_cmd("status", "--statedir", str(tmp_path))
    assert proc.returncode == 1 and "unreadable" in proc.stdout
    assert len(proc.stdout.splitlines()) == 2


def test_flag_only_instance_does_not_count(tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.maintenance").write_text("")
    proc = run_cmd("status", "--statedir", str(tmp_path))
    assert proc.returncode == 3  # no daemon at all
    assert "STOPPED" in proc.stdout and "flag" in proc.stdout


def test_demote_promote_without_daemon(tmp_path: Path, dead_pid: int) -> None:
    write_state(tmp_path, NAME, snapshot(dead_pid))
    flag = tmp_path / f"{NAME}.maintenance"
    proc = run_cmd("demote", VIP, "--statedir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert flag.exists() and "not running; maintenance flag set" in proc.stdout
    proc = run_cmd("promote", "eth0", "--statedir", str(tmp_path))
    assert proc.returncode == 0 and not flag.exists()
    # A stem with no instance yet: the flag waits for the daemon's first start.
    proc = run_cmd("demote", "eth2-40", "--statedir", str(tmp_path))
    assert proc.returncode == 0 and (tmp_path / "eth2-40.maintenance").exists()
    proc = run_cmd("promote", "--all", "--statedir", str(tmp_path))
    assert proc.returncode == 0 and not (tmp_path / "eth2-40.maintenance").exists()
    # Anything else that matches nothing is an error, and so is NAME with --all.
    assert run_cmd("demote", "eth9", "--statedir", str(tmp_path)).returncode == 2
    assert run_cmd("demote", "--all", NAME, "--statedir", str(tmp_path)).returncode == 2
    assert run_cmd("promote", "--statedir", str(tmp_path)).returncode == 2


def test_demote_reports_a_daemon_that_does_not_confirm(tmp_path: Path) -> None:
    # A live "daemon" that ignores the control signal: demote must give up and say so.
    proc = subprocess.Popen([sys.executable, "-c",
                             "import signal, time\n"
                             "signal.signal(signal.SIGRTMIN + 1, signal.SIG_IGN)\n"
                             "print('ready', flush=True)\n"
                             "time.sleep(60)", "pyucarp-fake"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        write_state(tmp_path, NAME, snapshot(proc.pid))
        t0 = time.monotonic()
        out = run_cmd("demote", NAME, "--statedir", str(tmp_path), "--timeout", "0.5")
        assert out.returncode == 1 and "did not confirm within 0.5s" in out.stdout
        assert time.monotonic() - t0 < 10
        assert (tmp_path / f"{NAME}.maintenance").exists()
    finally:
        proc.kill()
        proc.wait()


def test_status_json_is_the_state_document_plus_conclusions(tmp_path: Path,
                                                            live_pid: int) -> None:
    status = snapshot(live_pid, maintenance=True)
    write_state(tmp_path, NAME, status)
    (tmp_path / f"{NAME}.maintenance").write_text("")
    (doc,) = status_json(tmp_path)
    conclusions = {"statefile", "running", "healthy", "problems", "maintenance_flag"}
    assert set(doc) == set(InstanceStatus._fields) | conclusions
    assert {k: v for k, v in doc.items() if k not in conclusions} == status.to_json()
    assert InstanceStatus.from_json(doc) == status
    assert (doc["statefile"], doc["running"], doc["healthy"], doc["problems"],
            doc["maintenance_flag"]) == (str(tmp_path / f"{NAME}.json"), True, True, [], True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"vip": 100}, "field 'vip' has the wrong type"),
        ({"updated": None}, "field 'updated' has the wrong type"),
        ({"last_script": {"kind": "up"}}, "field 'argv' is missing"),
        ({"state": ...}, "field 'state' is missing"),
    ],
)
def test_a_file_that_is_no_state_document_is_unreadable_with_the_reason(
    tmp_path: Path, live_pid: int, change: dict[str, Any], reason: str
) -> None:
    doc = snapshot(live_pid).to_json()
    for key, value in change.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    (tmp_path / f"{NAME}.json").write_text(json.dumps(doc))
    proc = run_cmd("status", "--statedir", str(tmp_path))
    assert proc.returncode == 1
    assert f"unreadable (not a pyucarp state file: {reason})" in proc.stdout, proc.stdout
    (entry,) = status_json(tmp_path)
    assert entry["problems"] == ["unreadable"] and entry["running"] is False
    assert entry["error"] == f"not a pyucarp state file: {reason}"
    assert "pid" not in entry  # nothing of a half-understood document is passed on
    assert by_name(parse_metrics(run_cmd("metrics", "--statedir", str(tmp_path)).stdout),
                   "ucarp_up") == []


def test_instances_of_one_process_are_judged_each_on_its_own(tmp_path: Path,
                                                            live_pid: int) -> None:
    # Three instances of one `pyucarp run` process: one pid, three files, three verdicts.
    for vhid in (1, 2, 3):
        changes: dict[str, Any] = {"vhid": vhid, "vip": f"192.0.2.{100 + vhid}"}
        if vhid == 2:
            changes["updated"] = time.time() - 2 * admin.HUNG_AFTER_SECONDS
        write_state(tmp_path, f"eth0-{vhid}", snapshot(live_pid, **changes))
    proc = run_cmd("status", "--statedir", str(tmp_path))
    assert proc.returncode == 1
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert sorted(rows) == ["eth0-1", "eth0-2", "eth0-3"]
    assert rows["eth0-2"].endswith("hung") and rows["eth0-1"].endswith("ok")
    doc = status_json(tmp_path)
    assert [d["pid"] for d in doc] == [live_pid] * 3
    assert [d["problems"] for d in doc] == [[], ["hung"], []]
    s = parse_metrics(run_cmd("metrics", "--statedir", str(tmp_path)).stdout)
    assert [by_name(s, "ucarp_healthy", instance=f"eth0-{v}") for v in (1, 2, 3)] == [[1], [0], [1]]
    assert sorted(by_name(s, "ucarp_up")) == [1, 1, 1]


def test_one_signal_per_process_and_each_instance_confirms_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = 4242  # never signalled for real: the process below stands in for `pyucarp run`
    for vhid in (1, 2, 3):
        write_state(tmp_path, f"eth0-{vhid}",
                    snapshot(pid, vhid=vhid, vip=f"192.0.2.{100 + vhid}"))
    sent: list[tuple[int, int]] = []

    def process(target: int, signum: int) -> None:
        # What the process does on the control signal: every instance reads its own flag.
        sent.append((target, signum))
        for vhid in (1, 2, 3):
            sf = StateFile(str(tmp_path / f"eth0-{vhid}.json"))
            on = sf.maintenance_requested()
            status = sf.read()
            sf.write(status._replace(maintenance=on, state="BACKUP" if on else status.state))

    monkeypatch.setattr(admin.os, "kill", process)

    def switch(names: list[str], on: bool) -> list[str]:
        lines: list[str] = []
        targets = admin.select(admin.scan(str(tmp_path), lambda _pid: True), names,
                               all_=False, statedir=str(tmp_path), demote=on)
        code = admin.switch_maintenance(str(tmp_path), targets, on, 2.0,
                                        alive=lambda _pid: True, out=lines.append)
        assert code == 0, lines
        return lines

    def maintenance() -> list[bool]:
        return [StateFile(str(tmp_path / f"eth0-{v}.json")).read().maintenance for v in (1, 2, 3)]

    demoted = switch(["eth0-2"], True)
    assert demoted == ["eth0-2: maintenance on, BACKUP, master 192.0.2.1 1/0 (self)"]
    assert sent == [(pid, admin.CONTROL_SIGNAL)] and maintenance() == [False, True, False]
    lines = switch(["eth0"], True)  # the interface: all three, still one signal
    assert sorted(line.split(":")[0] for line in lines) == ["eth0-1", "eth0-2", "eth0-3"]
    assert len(sent) == 2 and maintenance() == [True, True, True]
    assert switch(["192.0.2.101", "eth0-3"], False)[0].startswith("eth0-1: maintenance off")
    assert len(sent) == 3 and maintenance() == [False, True, False]


# --------------------------------------------------------------------------- service health


def check(ok: bool, returncode: int | None, *, output: str = "", duration: float = 0.012,
          timed_out: bool = False, error: str | None = None) -> CheckRecord:
    """How the last tracked check ended, as the state file records it."""
    return CheckRecord("curl -fsS http://127.0.0.1/", ok, returncode, duration, timed_out,
                       output, error)


def health_cluster(statedir: Path, pid: int) -> None:
    """Four instances of one host: healthy, FAULT, undecided, untracked."""
    long_line = "connection refused by 127.0.0.1 port 80 after three attempts"
    write_state(statedir, "eth0-1", snapshot(
        pid, vhid=1, vip="192.0.2.101", health="healthy",
        last_check=check(True, 0, output="200 OK"), tracked_interfaces={"dummy0": True}))
    write_state(statedir, "eth0-2", snapshot(
        pid, vhid=2, vip="192.0.2.102", state="FAULT", master=None, health="unhealthy",
        last_check=check(False, 7, output=long_line, duration=0.031),
        tracked_interfaces={"dummy0": True, "eth9": False}))
    write_state(statedir, "eth0-3", snapshot(
        pid, vhid=3, vip="192.0.2.103", state="BACKUP", health="unknown",
        tracked_interfaces={"dummy0": None}))
    write_state(statedir, "eth0-4", snapshot(pid, vhid=4, vip="192.0.2.104"))


def test_status_shows_service_health(tmp_path: Path, live_pid: int) -> None:
    health_cluster(tmp_path, live_pid)
    proc = run_cmd("status", "--statedir", str(tmp_path))
    assert proc.returncode == 1, proc.stdout  # the FAULT instance's service needs a person
    header, *lines = proc.stdout.splitlines()
    assert "  SERVICE  " in header and "  LAST CHECK  " in header
    assert header.index("LAST CHECK") < header.index("DROPPED") < header.index("HEALTH")
    rows = {line.split()[0]: line for line in lines}
    assert "healthy (dummy0 up)" in rows["eth0-1"] and "ok (0.01s): 200 OK" in rows["eth0-1"]
    assert rows["eth0-1"].endswith("  ok")
    fault = rows["eth0-2"]
    assert "FAULT" in fault and "unhealthy (dummy0 up, eth9 down)" in fault
    assert "exit 7 (0.03s): connection refused by 127.0.0.1 port ...  " in fault  # 40 chars
    assert fault.endswith("service-unhealthy")
    # Not decided yet: no problem (it lasts until the first check ends).
    assert "unknown (dummy0 ?)" in rows["eth0-3"] and rows["eth0-3"].endswith("  ok")
    assert rows["eth0-4"].split()[-3:] == ["-", "4", "ok"]  # untracked: no service, no check
    doc = {d["name"]: d for d in status_json(tmp_path)}
    assert [doc[f"eth0-{v}"]["problems"] for v in (1, 2, 3, 4)] == \
        [[], ["service-unhealthy"], [], []]
    assert [doc[f"eth0-{v}"]["health"] for v in (1, 2, 3, 4)] == \
        ["healthy", "unhealthy", "unknown", "untracked"]
    assert doc["eth0-2"]["last_check"] == {
        "command": "curl -fsS http://127.0.0.1/", "ok": False, "returncode": 7,
        "duration": 0.031, "timed_out": False, "error": None,
        "output": "connection refused by 127.0.0.1 port 80 after three attempts"}
    assert doc["eth0-2"]["tracked_interfaces"] == {"dummy0": True, "eth9": False}
    assert doc["eth0-3"]["last_check"] is None and doc["eth0-4"]["tracked_interfaces"] == {}


def test_status_without_tracked_instances_has_no_service_columns(tmp_path: Path,
                                                                 live_pid: int) -> None:
    write_state(tmp_path, NAME, snapshot(live_pid))
    header = run_cmd("status", "--statedir", str(tmp_path)).stdout.splitlines()[0]
    assert "SERVICE" not in header and "LAST CHECK" not in header


def test_describe_check() -> None:
    assert admin.describe_check(None) == "-"
    assert admin.describe_check(check(True, 0)) == "ok (0.01s)"
    assert admin.describe_check(check(False, None, timed_out=True, duration=1.0004)) == \
        "timed out (1.00s)"
    assert admin.describe_check(check(False, None, duration=0.2)) == "killed (0.20s)"
    assert admin.describe_check(check(False, None, error="No such file or directory")) == \
        "not started: No such file or directory"
    assert admin.describe_check(check(False, 1, output="x" * 50), width=10) == \
        "exit 1 (0.01s): xxxxxxx..."
    assert admin.describe_service(snapshot(1)) == "-"
    assert admin.describe_service(snapshot(1, health="unhealthy")) == "unhealthy"


def test_metrics_service_health(tmp_path: Path, live_pid: int) -> None:
    health_cluster(tmp_path, live_pid)
    write_state(tmp_path, "eth0-5", snapshot(
        live_pid, vhid=5, vip="192.0.2.105", state="FAULT", health="unhealthy",
        last_check=check(False, None, timed_out=True, duration=1.0)))
    text = run_cmd("metrics", "--statedir", str(tmp_path)).stdout
    assert "ucarp_service_healthy{" in text and " NaN\n" in text  # the exposition's spelling
    s = parse_metrics(text)

    def one_value(name: str, **labels: str) -> float | None:
        values = by_name(s, name, **labels)
        assert len(values) <= 1, (name, labels, values)
        return values[0] if values else None

    assert [one_value("ucarp_state", instance=f"eth0-{v}") for v in (1, 2, 3, 4, 5)] == \
        [2, 3, 1, 2, 3]
    assert one_value("ucarp_master", instance="eth0-2") == 0
    assert [one_value("ucarp_healthy", instance=f"eth0-{v}") for v in (1, 2, 3, 4, 5)] == \
        [1, 0, 1, 1, 0]
    healthy = [one_value("ucarp_service_healthy", instance=f"eth0-{v}") for v in (1, 2, 3, 4, 5)]
    assert healthy[:2] == [1, 0] and healthy[2] != healthy[2] and healthy[3:] == [None, 0]
    assert [one_value("ucarp_check_ok", instance=f"eth0-{v}") for v in (1, 2, 3, 4, 5)] == \
        [1, 0, None, None, 0]
    assert one_value("ucarp_check_duration_seconds", instance="eth0-2") == 0.031
    assert [one_value("ucarp_check_timed_out", instance=f"eth0-{v}") for v in (1, 2, 5)] == \
        [0, 0, 1]
    assert one_value("ucarp_tracked_interface_up", instance="eth0-2",
                     tracked_interface="eth9") == 0
    assert one_value("ucarp_tracked_interface_up", instance="eth0-2",
                     tracked_interface="dummy0") == 1
    unseen = one_value("ucarp_tracked_interface_up", instance="eth0-3")
    assert unseen is not None and unseen != unseen
    assert by_name(s, "ucarp_tracked_interface_up", instance="eth0-4") == []


# --------------------------------------------------------------------------- metrics (files)


def test_metrics_parse_with_escaped_labels(tmp_path: Path, live_pid: int, dead_pid: int) -> None:
    odd = 'eth0:"x\\y\nz'  # every character the text format must escape
    write_state(tmp_path, NAME, snapshot(live_pid, maintenance=True, link_up=False))
    write_state(tmp_path, "odd-5", snapshot(live_pid, interface=odd, vhid=5, state="BACKUP",
                                            last_script=script("down", None, timed_out=True)))
    write_state(tmp_path, "eth3-8", snapshot(dead_pid, interface="eth3", vhid=8))
    text = run_cmd("metrics", "--statedir", str(tmp_path)).stdout
    for fam in metrics.FAMILIES:
        assert f"# HELP {fam.name} " in text and f"# TYPE {fam.name} {fam.kind}" in text
    s = parse_metrics(text)
    assert by_name(s, "ucarp_state", instance=NAME, interface="eth0", vhid="7", vip=VIP) == [2]
    assert by_name(s, "ucarp_master", instance=NAME) == [1]
    assert by_name(s, "ucarp_maintenance", instance=NAME) == [1]
    assert by_name(s, "ucarp_link_up", instance=NAME) == [0]
    assert by_name(s, "ucarp_healthy", instance=NAME) == [0]
    assert by_name(s, "ucarp_transitions_total", instance=NAME) == [2]
    assert by_name(s, "ucarp_adverts_sent_total", instance=NAME) == [193]
    assert by_name(s, "ucarp_adverts_received_total", instance=NAME) == [4]
    assert by_name(s, "ucarp_dropped_packets_total", instance=NAME, reason="bad_digest") == [3]
    assert by_name(s, "ucarp_dropped_packets_total", instance=NAME, reason="replay") == [1]
    assert by_name(s, "ucarp_last_script_exit_code", instance=NAME) == [0]
    since = by_name(s, "ucarp_since_seconds", instance=NAME)[0]
    assert abs(time.time() - 192.4 - since) < 5
    # The odd interface name comes back unchanged through the parser.
    assert by_name(s, "ucarp_state", instance="odd-5", interface=odd) == [1]
    assert by_name(s, "ucarp_master", instance="odd-5") == [0]
    assert by_name(s, "ucarp_last_script_exit_code", instance="odd-5") == [-1]
    # A stale file: only ucarp_up 0, no state that would claim a MASTER.
    assert by_name(s, "ucarp_up", instance="eth3-8") == [0]
    assert by_name(s, "ucarp_up", instance=NAME) == [1]
    assert by_name(s, "ucarp_state", instance="eth3-8") == []


def test_metrics_textfile_and_interval(tmp_path: Path, live_pid: int) -> None:
    statedir = tmp_path / "state"
    write_state(statedir, NAME, snapshot(live_pid))
    prom = tmp_path / "collector" / "ucarp.prom"
    proc = run_cmd("metrics", "--statedir", str(statedir), "--textfile", str(prom))
    assert proc.returncode == 0 and proc.stdout == ""
    assert by_name(parse_metrics(prom.read_text()), "ucarp_adverts_sent_total") == [193]
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
    loop = subprocess.Popen(
        [sys.executable, "-m", "pyucarp", "metrics", "--statedir", str(statedir),
         "--textfile", str(prom), "--interval", "0.2"], env=pyucarp_env(), cwd=REPO)
    try:
        write_state(statedir, NAME, snapshot(live_pid, adverts_sent=500))
        assert wait_until(lambda: by_name(parse_metrics(prom.read_text()),
                                          "ucarp_adverts_sent_total") == [500], 10)
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(timeout=10) == 0
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    assert sorted(os.listdir(prom.parent)) == ["ucarp.prom"]  # no temporary file left
    assert run_cmd("metrics", "--interval", "1").returncode == 2  # needs --textfile


# --------------------------------------------------------------------------- a real cluster


def _start(host: Host, tmp_path: Path, label: str, skew: int) -> Daemon:
    statedir = tmp_path / f"state-{host.name}"
    return start_node(host, tmp_path, name=label, vhid=VHID, vip=VIP, advskew=skew,
                      deadratio=2, preempt=True, shutdown=True, pidfile=True,
                      extra=["--statedir", str(statedir)])


def _metrics(statedir: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    proc = run_cmd("metrics", "--statedir", str(statedir))
    assert proc.returncode == 0, proc.stderr
    return parse_metrics(proc.stdout)


@pytest.mark.netns
def test_cluster_status_handoff_maintenance_restart_failover(lab: Lab, tmp_path: Path) -> None:
    ha = lab.add_host("a", "192.0.2.1/24")
    hb = lab.add_host("b", "192.0.2.2/24")
    sa, sb = tmp_path / "state-a", tmp_path / "state-b"
    a = _start(ha, tmp_path, "a1", skew=0)
    b = _start(hb, tmp_path, "b1", skew=100)

    def state(statedir: Path) -> str | None:
        doc = status_json(statedir)
        return doc[0].get("state") if len(doc) == 1 and doc[0]["running"] else None

    # Converged: a MASTER, b BACKUP following a; both healthy; metrics agree.
    converged = wait_until(lambda: state(sa) == "MASTER" and state(sb) == "BACKUP", 10)
    assert converged, (a.log(), b.log())
    assert wait_until(lambda: ha.has_address(VIP), 5)
    # b learns of its master from the first advert; the file shows it within its 5 s refresh.
    master_a = {"address": ha.ip, "advbase": 1, "advskew": 0}
    assert wait_until(lambda: one(sb).get("master") == master_a, 7)
    da, db = one(sa), one(sb)
    assert da["master"] == master_a
    assert (da["transitions"], db["transitions"]) == (2, 1)  # INIT>BACKUP>MASTER, INIT>BACKUP
    assert da["healthy"] and db["healthy"] and da["pid"] == a.proc.pid
    table = run_cmd("status", "--statedir", str(sa))
    assert table.returncode == 0 and "MASTER" in table.stdout and "(self)" in table.stdout
    ma = _metrics(sa)
    assert by_name(ma, "ucarp_state", instance=NAME, vip=VIP) == [2]
    assert by_name(ma, "ucarp_adverts_sent_total")[0] >= 1
    assert wait_until(lambda: by_name(_metrics(sb), "ucarp_adverts_received_total")[0] >= 1, 8)
    assert by_name(_metrics(sb), "ucarp_master") == [0]

    # Graceful hand-off by VIP name: a leaves at once, b takes over well before its
    # master-down time (2 s + 100/256) would have elapsed.
    t0 = time.monotonic()
    out = run_cmd("demote", VIP, "--statedir", str(sa))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(f"{NAME}: maintenance on, BACKUP"), out.stdout
    assert (sa / f"{NAME}.maintenance").exists()
    assert wait_until(lambda: state(sb) == "MASTER", 5)
    assert time.monotonic() - t0 < 2.0
    assert wait_until(lambda: hb.has_address(VIP) and not ha.has_address(VIP), 5)
    assert wait_until(lambda: (one(sa).get("master") or {}).get("address") == hb.ip, 5)
    da, db = one(sa), one(sb)
    assert da["maintenance"] is True and da["state"] == "BACKUP"
    assert (da["transitions"], db["transitions"]) == (3, 2)
    assert by_name(_metrics(sa), "ucarp_maintenance") == [1]

    # Restart the demoted daemon: it comes back in maintenance and stays BACKUP although it
    # has -P and the better skew.
    assert a.stop() == 0
    assert not a.pidfile.exists() and not (sa / f"{NAME}.json").exists()  # type: ignore[union-attr]
    a = _start(ha, tmp_path, "a2", skew=0)
    assert wait_until(lambda: state(sa) == "BACKUP", 5)
    time.sleep(3.0)  # longer than a's master-down time
    da = one(sa)
    assert da["state"] == "BACKUP" and da["maintenance"] is True and state(sb) == "MASTER"
    assert hb.has_address(VIP) and not ha.has_address(VIP)

    # Promote by instance name: a preempts again and gets the VIP back.
    out = run_cmd("promote", NAME, "--statedir", str(sa))
    assert out.returncode == 0 and "maintenance off" in out.stdout, out.stdout + out.stderr
    assert not (sa / f"{NAME}.maintenance").exists()
    assert wait_until(lambda: state(sa) == "MASTER" and state(sb) == "BACKUP", 5)
    assert wait_until(lambda: ha.has_address(VIP) and not hb.has_address(VIP), 5)
    transitions_b = one(sb)["transitions"]

    # Failover: a is killed hard. Its state file stays behind, stale: status says dead.
    a.kill()
    assert wait_until(lambda: state(sb) == "MASTER", 6)
    db = one(sb)
    assert db["transitions"] == transitions_b + 1 and db["master"]["address"] == hb.ip
    stale = run_cmd("status", "--statedir", str(sa))
    assert stale.returncode == 1 and "DEAD (was MASTER)" in stale.stdout
    assert one(sa)["problems"] == ["dead"]
    assert by_name(_metrics(sa), "ucarp_up") == [0] and by_name(_metrics(sa), "ucarp_state") == []
    assert run_cmd("status", "--statedir", str(sb)).returncode == 0
