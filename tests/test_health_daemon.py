"""Service health end to end: tracked checks and interfaces, FAULT, notify, in namespace labs.

The master is pyucarp with a check that reads a control file the test switches (``ok``,
anything else fails, ``hang`` hangs); the check logs the wall-clock time and outcome of
every run, so "the first failed check" is read from the check itself. Backups are pyucarp
or the C ucarp. Up and down scripts are the shipped ``vip-up.sh``/``vip-down.sh`` behind
wrappers that bracket them: the upscript's record is written *before* the address is
added, the downscript's *after* it is removed, so "the backup added the address after the
master had removed it" is proved by the records, not guessed from sampling. A watcher
samples both hosts' addresses as well.

Addresses are 192.0.2.0/24 only, inside the lab's namespaces; every wait is bounded.
Figures (time to takeover, largest advert gap) are printed (``pytest -s``) and recorded
as test properties.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pyucarp.core.codec import ADVERT_LEN
from pyucarp.core.health import HealthJudge
from pyucarp.lab.daemons import (
    Daemon,
    describe,
    pyucarp_env,
    start_pyucarp,
    start_ucarp,
    ucarp_args,
    vip_scripts,
)
from pyucarp.lab.netlab import Host, Lab, largest_gap, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

VIP = "192.0.2.100"
VHID = 7
MASTER_DOWN = 3.0  # advbase 1 x deadratio 3 (+ skew/256): how long a backup waits
INTERVAL = 0.5
RecordProperty = Callable[[str, object], None]


# --------------------------------------------------------------------------- the check


class Control:
    """A check the test switches through a file: ``ok`` passes, ``hang`` sleeps 30 s, any
    other word fails (exit 1, its last output line says which). Every run appends
    ``<wall time> ok|fail|hang`` to a log before it decides."""

    def __init__(self, directory: Path, word: str = "ok") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "control"
        self.log = directory / "checks.log"
        self.log.touch()
        self.set(word)
        ctl, log = shlex.quote(str(self.path)), shlex.quote(str(self.log))
        # Quotes, a pipe-free case and $(...): it reaches /bin/sh -c as one word.
        self.command = (
            f't=$(date +%s.%N); s=$(cat {ctl}); case "$s" in '
            f'ok) echo "$t ok" >> {log} ;; '
            f'hang) echo "$t hang" >> {log}; exec sleep 30 ;; '
            f'*) echo "$t fail" >> {log}; echo "service says: $s"; exit 1 ;; esac'
        )

    def set(self, word: str) -> float:
        """Switch the check (atomically: a run never reads half a file); the wall time."""
        tmp = self.path.with_suffix(".new")
        tmp.write_text(word + "\n")
        os.replace(tmp, self.path)
        return time.time()

    def runs(self, since: float = 0.0) -> list[tuple[float, str]]:
        """(wall time, outcome) of every run that started after ``since``."""
        out = []
        for line in self.log.read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and float(fields[0]) >= since:
                out.append((float(fields[0]), fields[1]))
        return out

    def first(self, outcome: str, since: float) -> float | None:
        """When the first run with ``outcome`` after ``since`` started."""
        return next((t for t, o in self.runs(since) if o == outcome), None)

    def options(self, *, interval: float = INTERVAL, timeout: float | None = None,
                fall: int = 2, rise: int = 2) -> list[str]:
        """pyucarp's options for this check."""
        opts = [f"--track-script={self.command}", f"--track-interval={interval}",
                f"--track-fall={fall}", f"--track-rise={rise}"]
        if timeout is not None:
            opts.append(f"--track-timeout={timeout}")
        return opts


# --------------------------------------------------------------------------- nodes


def bracketing_scripts(nodedir: Path) -> tuple[Path, Path]:
    """up.sh records, then adds the address; down.sh removes it, then records.

    Lines go to ``nodedir/calls.txt`` as ``<kind> <wall time> <args>`` (what
    :meth:`Daemon.calls` reads): an upscript's time is before the address exists, a
    downscript's after it is gone.
    """
    real_up, real_down = vip_scripts(nodedir)
    record = nodedir / "calls.txt"
    up, down = nodedir / "up.sh", nodedir / "down.sh"
    up.write_text(f'#!/bin/sh\necho "up $(date +%s.%N) $*" >> "{record}"\n'
                  f'exec "{real_up}" "$@"\n')
    down.write_text(f'#!/bin/sh\n"{real_down}" "$@"\nrc=$?\n'
                    f'echo "down $(date +%s.%N) $*" >> "{record}"\nexit $rc\n')
    for path in (up, down):
        path.chmod(0o755)
    return up, down


def node(host: Host, work: Path, name: str, *, impl: str = "py", skew: int = 0,
         preempt: bool = False, deadratio: int | None = None, shutdown: bool = True,
         extra: Sequence[str] = ()) -> Daemon:
    """A node for VIP/VHID with bracketing scripts and -z, pyucarp or the C ucarp."""
    nodedir = work / name
    nodedir.mkdir(parents=True)
    up, down = bracketing_scripts(nodedir)
    args = ucarp_args(host, vhid=VHID, vip=VIP, advskew=skew, preempt=preempt,
                      deadratio=deadratio, shutdown=shutdown, upscript=up, downscript=down,
                      extra=list(extra))
    return start_ucarp(host, work, args, impl="c" if impl == "c" else "py", name=name,
                       vip=VIP)


def state(daemon: Daemon) -> dict[str, Any]:
    """The instance's state file, freshly written (the control signal makes it so)."""
    doc = daemon.statefile(VHID, refresh=True)
    assert doc is not None, describe([daemon])
    return doc


class HolderWatch:
    """Samples which hosts carry the VIP, round robin, until stopped."""

    def __init__(self, hosts: Sequence[Host]) -> None:
        self.hosts = list(hosts)
        self.samples: list[tuple[float, int, bool]] = []  # (wall time, host index, holds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 90  # bounded even if never stopped
        while not self._stop.is_set() and time.monotonic() < deadline:
            for i, host in enumerate(self.hosts):
                self.samples.append((time.time(), i, host.has_address(VIP)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def first_seen(self, index: int, since: float) -> float | None:
        """The first sample after ``since`` in which host ``index`` carries the VIP."""
        return next((t for t, i, held in self.samples if i == index and held and t >= since),
                    None)

    def both(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Times at which one host was seen with the VIP while the other had it both just
        before and just after (so held it throughout): two holders at once."""
        found = []
        samples = [s for s in self.samples if since <= s[0] <= until]
        for k, (t, i, held) in enumerate(samples):
            if not held:
                continue
            before = next((h for _t, j, h in reversed(samples[:k]) if j != i), False)
            after = next((h for _t, j, h in samples[k + 1:] if j != i), False)
            if before and after:
                found.append(t)
        return found


@pytest.fixture
def watches() -> Iterator[list[HolderWatch]]:
    """Watches started by a test, stopped at its end whatever happens."""
    started: list[HolderWatch] = []
    yield started
    for watch in started:
        watch.stop()


def sleeps_in(host: Host) -> int:
    """Live ``sleep 30`` processes (hung checks) in the host's namespace."""
    count = 0
    for pid in host.pids():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0030\x00":
                count += 1
        except OSError:
            pass
    return count


def advert_times(frames: list[tuple[float, bytes]], src: str) -> list[float]:
    """Monotonic times of the CARP adverts from ``src`` (leave adverts included)."""
    packed = bytes(int(x) for x in src.split("."))
    return [t for t, f in frames
            if len(f) >= ADVERT_LEN and f[12:14] == b"\x08\x00" and f[23] == 112
            and f[26:30] == packed]


def write_notify(directory: Path) -> tuple[Path, Path]:
    """A notify program that appends ``<wall time> <args>`` to a log; (program, log)."""
    log = directory / "notify.log"
    log.touch()
    program = directory / "notify.sh"
    program.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $*" >> "{log}"\n')
    program.chmod(0o755)
    return program, log


def notified(log: Path) -> list[list[str]]:
    """The notify program's calls, arguments only, in order."""
    return [line.split()[1:] for line in log.read_text().splitlines()]


# --------------------------------------------------------------------------- failover


@pytest.mark.parametrize("impl", ["py", pytest.param("c", marks=pytest.mark.cucarp)])
def test_failing_check_hands_over_and_recovers(lab: Lab, tmp_path: Path, impl: str,
                                               watches: list[HolderWatch],
                                               record_property: RecordProperty) -> None:
    """fall 2 at interval 0.5: the backup holds the VIP within 1.5 s (pyucarp) or 3 s (C
    ucarp, which takes over on the leave advert) of the first failed check, never together
    with the master; rise 2 with -P: the master has it back within 1.5 s + master-down of
    the first good check."""
    a, b = lab.add_host("a", "192.0.2.1/24"), lab.add_host("b", "192.0.2.2/24")
    check = Control(tmp_path / "check")
    master = node(a, tmp_path, "master", skew=0, preempt=True, extra=check.options())
    assert wait_until(master.holds_vip, MASTER_DOWN + 3), describe([master])
    backup = node(b, tmp_path, f"backup-{impl}", impl=impl, skew=100)
    nodes = [master, backup]
    time.sleep(MASTER_DOWN + 0.5)  # the backup has heard the master and stays BACKUP
    assert [d.holds_vip() for d in nodes] == [True, False], describe(nodes)
    watch = HolderWatch([a, b])
    watches.append(watch)

    flipped = check.set("down")
    assert wait_until(backup.holds_vip, 6, interval=0.01), describe(nodes)
    first_fail = check.first("fail", flipped)
    assert wait_until(lambda: watch.first_seen(1, flipped) is not None, 2)
    seen = watch.first_seen(1, flipped)
    assert first_fail is not None and seen is not None
    takeover = seen - first_fail
    bound = 1.5 if impl == "py" else 3.0
    print(f"[{impl} backup] VIP on the backup {takeover:.3f}s after the first failed check "
          f"({seen - flipped:.3f}s after the switch)")
    record_property(f"takeover_{impl}_s", round(takeover, 3))
    assert takeover <= bound, describe(nodes)
    assert wait_until(lambda: master.state() == "FAULT", 2), describe(nodes)
    doc = state(master)
    assert (doc["state"], doc["health"]) == ("FAULT", "unhealthy")
    assert doc["last_check"]["ok"] is False and doc["last_check"]["returncode"] == 1
    assert doc["last_check"]["output"] == "service says: down"
    assert doc["last_check"]["command"] == check.command  # one word, as given
    # The records prove the order: the master's downscript had removed the VIP before the
    # backup's upscript began to add it.
    (down,) = master.calls("down", since=flipped)
    (up,) = backup.calls("up", since=flipped)
    assert down.t < up.t, describe(nodes)
    time.sleep(1.5)  # FAULT holds: the backup stays master, the master silent
    assert [d.holds_vip() for d in nodes] == [False, True]

    healed = check.set("ok")
    assert wait_until(master.holds_vip, 1.5 + MASTER_DOWN + 3, interval=0.01), describe(nodes)
    first_ok = check.first("ok", healed)
    assert wait_until(lambda: watch.first_seen(0, healed) is not None, 2)
    back = watch.first_seen(0, healed)
    assert first_ok is not None and back is not None
    recovery = back - first_ok
    print(f"[{impl} backup] VIP back on the preferred node {recovery:.3f}s after the first "
          "good check")
    record_property(f"recovery_{impl}_s", round(recovery, 3))
    assert recovery <= 1.5 + MASTER_DOWN, describe(nodes)
    assert wait_until(lambda: not backup.holds_vip(), 3), describe(nodes)
    watch.stop()
    assert watch.both(until=healed) == [], describe(nodes)  # hand-over: never two holders
    assert [s for s in master.states() if s != "BACKUP"] == ["MASTER", "FAULT", "MASTER"]
    assert state(master)["health"] == "healthy"


# --------------------------------------------------------------------------- a hung check


def test_hanging_check_is_killed_at_its_timeout_and_adverts_stay_on_time(
        lab: Lab, tmp_path: Path, record_property: RecordProperty) -> None:
    """A check that hangs (sleep 30, timeout 1) fails after 1 s and is killed with what it
    started; meanwhile the master (fall 100: it stays MASTER) advertises every second."""
    a = lab.add_host("a", "192.0.2.1/24")
    check = Control(tmp_path / "check")
    master = node(a, tmp_path, "master", deadratio=1,
                  extra=check.options(timeout=1.0, fall=100))
    assert wait_until(master.holds_vip, 5), describe([master])
    with lab.capture_bridge(kinds=("carp",), max_seconds=40) as cap:
        time.sleep(1.5)
        hung = time.monotonic()
        check.set("hang")
        most = 0
        end = hung + 6.0
        while time.monotonic() < end:
            most = max(most, sleeps_in(a))
            time.sleep(0.1)
        stopped_at = time.monotonic()
        doc = state(master)
        check.set("ok")
        assert wait_until(lambda: sleeps_in(a) == 0, 3), "a hung check outlived its timeout"
        time.sleep(1.2)
        frames = cap.frames()
    adverts = advert_times(frames, "192.0.2.1")
    gap = largest_gap(adverts, hung, stopped_at)
    print(f"largest advert gap while checks hang: {gap:.3f}s ({len(adverts)} adverts)")
    record_property("largest_gap_hanging_check_s", round(gap, 3))
    assert gap <= 1.05, describe([master])
    assert 1 <= most <= 1  # one hung run at a time: never a pile-up
    assert doc["state"] == "MASTER" and doc["health"] == "healthy"
    last = doc["last_check"]
    assert last["timed_out"] is True and last["ok"] is False and last["returncode"] is None
    assert 0.95 <= last["duration"] <= 1.5, last
    assert master.count(r"Check \[.*\] failed \(timed out\)") >= 1
    assert master.state() == "MASTER" and master.holds_vip()
    assert master.stop() == 0
    assert sleeps_in(a) == 0


@pytest.mark.parametrize("how", ["fails", "hangs"])
def test_fault_at_start_never_masters(lab: Lab, tmp_path: Path, how: str) -> None:
    """A lone node whose check fails (or hangs past its timeout) from the start: FAULT,
    never MASTER, its upscript never run; status says so and exits 1."""
    a = lab.add_host("a", "192.0.2.1/24")
    check = Control(tmp_path / "check", "down" if how == "fails" else "hang")
    lone = node(a, tmp_path, "lone", deadratio=1, extra=check.options(timeout=1.0))
    deadline = time.monotonic() + 5.0  # master-down is 1 s: it would have taken over
    seen_vip = False
    while time.monotonic() < deadline:
        seen_vip = seen_vip or lone.holds_vip()
        time.sleep(0.1)
    assert not seen_vip and lone.calls("up") == [], describe([lone])
    assert lone.states() == ["BACKUP", "FAULT"], describe([lone])
    if how == "hangs":  # undecided until the first run times out, a second later
        assert lone.count(r"failed \(timed out\)") >= 1
    doc = state(lone)
    assert (doc["state"], doc["health"]) == ("FAULT", "unhealthy")
    assert doc["adverts_sent"] == 0
    assert lone.statedir is not None
    proc = subprocess.run([sys.executable, "-m", "pyucarp", "status", "--statedir",
                           str(lone.statedir)], capture_output=True, text=True, timeout=30,
                          env=pyucarp_env())
    assert proc.returncode == 1, proc.stdout
    assert "FAULT" in proc.stdout and "service-unhealthy" in proc.stdout
    assert lone.stop() == 0
    assert lone.calls("up") == [] and sleeps_in(a) == 0


# --------------------------------------------------------------------------- hysteresis


def test_flapping_check_moves_the_address_a_bounded_number_of_times(
        lab: Lab, tmp_path: Path, record_property: RecordProperty) -> None:
    """A check that flips every 0.3 s, run every 0.5 s, fall = rise = 3: the verdict changes
    only after three results in a row, so the daemon's FAULT entries are exactly what the
    hysteresis predicts from the results it got (fewer than without it), and the address
    moves at most twice per three runs."""
    a, b = lab.add_host("a", "192.0.2.1/24"), lab.add_host("b", "192.0.2.2/24")
    check = Control(tmp_path / "check")
    interval = INTERVAL
    master = node(a, tmp_path, "master", preempt=True,
                  extra=check.options(interval=interval, fall=3, rise=3))
    assert wait_until(master.holds_vip, MASTER_DOWN + 3), describe([master])
    backup = node(b, tmp_path, "backup", skew=100)
    time.sleep(2.0)
    began = time.time()
    flips = 0
    holder_changes = 0
    last = master.holds_vip()
    word = "ok"
    end = time.monotonic() + 10.0
    next_flip = time.monotonic()
    while time.monotonic() < end:
        if time.monotonic() >= next_flip:
            word = "down" if word == "ok" else "ok"
            check.set(word)
            flips += 1
            next_flip += 0.3
        now_holds = master.holds_vip()
        holder_changes += now_holds != last
        last = now_holds
        time.sleep(0.02)
    check.set("ok")
    ended = time.time()
    results = [o == "ok" for t, o in check.runs(began) if t < ended]
    # The daemon's verdicts, replayed from the very results it got (same rules).
    judge = HealthJudge(1, (), fall=3, rise=3)
    judge.check_result(0, True)  # healthy when the window began
    predicted = 0
    verdict: bool | None = True
    for ok in results:
        new = judge.check_result(0, ok)
        predicted += new is False and verdict is not False
        verdict = new
    # Without hysteresis every failure after a success would be a FAULT.
    naive = sum(1 for before, now in zip([True, *results[:-1]], results, strict=True)
                if before and not now)
    faults = master.states().count("FAULT")
    print(f"{flips} flips, {len(results)} check runs: {faults} FAULT entries (predicted "
          f"{predicted}; {naive} without hysteresis), {holder_changes} changes of the "
          "master's VIP")
    record_property("flapping_faults", faults)
    assert flips >= 30 and len(results) >= 18
    assert abs(faults - predicted) <= 1, describe([master, backup])
    assert faults <= len(results) // 3 and predicted <= naive
    assert holder_changes <= 2 * faults + 1
    assert wait_until(master.holds_vip, 1.5 + MASTER_DOWN + 3), describe([master, backup])


# --------------------------------------------------------------------------- interfaces


def _ip(host: Host, *args: str) -> None:
    subprocess.run(["ip", "-n", host.netns, *args], check=True, capture_output=True,
                   timeout=10)


def test_tracked_interface_down_or_gone_is_fault_at_once(lab: Lab, tmp_path: Path,
                                                          record_property: RecordProperty
                                                          ) -> None:
    """--track-interface=trk0 (a veth pair inside the host, no traffic): its peer down
    (no carrier), trk0 down, trk0 deleted each make the master FAULT at once and the
    backup take over; each repair makes the preferred master take the VIP back."""
    a, b = lab.add_host("a", "192.0.2.1/24"), lab.add_host("b", "192.0.2.2/24")
    _ip(a, "link", "add", "trk0", "type", "veth", "peer", "name", "trk1")
    _ip(a, "link", "set", "trk0", "up")
    _ip(a, "link", "set", "trk1", "up")
    master = node(a, tmp_path, "master", preempt=True, extra=["--track-interface=trk0"])
    assert wait_until(master.holds_vip, MASTER_DOWN + 3), describe([master])
    backup = node(b, tmp_path, "backup", skew=100)
    nodes = [master, backup]
    time.sleep(MASTER_DOWN + 0.5)
    assert state(master)["tracked_interfaces"] == {"trk0": True}

    breaks = {
        "no carrier": (("link", "set", "trk1", "down"), ("link", "set", "trk1", "up")),
        "down": (("link", "set", "trk0", "down"), ("link", "set", "trk0", "up")),
        "deleted": (("link", "del", "trk0"),
                    ("link", "add", "trk0", "type", "veth", "peer", "name", "trk1")),
    }
    for what, (breaking, repairing) in breaks.items():
        t0 = time.time()
        _ip(a, *breaking)
        assert wait_until(backup.holds_vip, 3, interval=0.01), (what, describe(nodes))
        took = time.time() - t0
        print(f"tracked interface {what}: VIP on the backup after {took:.3f}s")
        record_property(f"tracked_interface_{what.replace(' ', '_')}_s", round(took, 3))
        assert took < 1.0, what  # no check interval, no fall: at once
        doc = state(master)
        assert (doc["state"], doc["health"]) == ("FAULT", "unhealthy"), what
        assert doc["tracked_interfaces"] == {"trk0": False}, what
        assert not master.holds_vip()
        _ip(a, *repairing)
        if what == "deleted":
            _ip(a, "link", "set", "trk0", "up")
            _ip(a, "link", "set", "trk1", "up")
        assert wait_until(master.holds_vip, MASTER_DOWN + 3, interval=0.05), \
            (what, describe(nodes))
        assert wait_until(lambda: not backup.holds_vip(), 3), (what, describe(nodes))
        assert state(master)["tracked_interfaces"] == {"trk0": True}, what
    assert master.states().count("FAULT") == 3


# --------------------------------------------------------------------------- notify


def test_notify_arguments_and_order(lab: Lab, tmp_path: Path) -> None:
    """--notify gets STATE IFACE VIP VHID on every change, in order, STOP at a -z exit."""
    a = lab.add_host("a", "192.0.2.1/24")
    check = Control(tmp_path / "check")
    program, log = write_notify(tmp_path)
    lone = node(a, tmp_path, "lone", deadratio=1, extra=[*check.options(),
                                                           f"--notify={program}"])
    assert wait_until(lone.holds_vip, 4), describe([lone])
    check.set("down")
    assert wait_until(lambda: lone.state() == "FAULT", 3), describe([lone])
    assert wait_until(lambda: not lone.holds_vip(), 3), describe([lone])
    check.set("ok")
    assert wait_until(lambda: lone.state() == "MASTER", 5), describe([lone])
    assert wait_until(lone.holds_vip, 3), describe([lone])
    assert lone.stop() == 0
    assert wait_until(lambda: len(notified(log)) >= 7, 3), log.read_text()
    calls = notified(log)
    assert [c[0] for c in calls] == ["BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER",
                                     "BACKUP", "STOP"], log.read_text()
    assert all(c[1:] == ["eth0", VIP, str(VHID)] for c in calls), calls
    times = [float(line.split()[0]) for line in log.read_text().splitlines()]
    assert times == sorted(times)


# --------------------------------------------------------------------------- configuration


def _file_text(host: Host, vhid: int, extra: str = "") -> str:
    return (f"INTERFACE=eth0\nINSTANCE_ID={vhid}\nPASSWORD='s3cret'\n"
            f"VIRTUAL_ADDRESS=192.0.2.{100 + vhid}\nSOURCE_ADDRESS={host.ip}\n"
            f'OPTIONS="-z -r 1"\n{extra}')


def test_track_variables_through_pyucarp_run(lab: Lab, tmp_path: Path) -> None:
    """TRACK_* and NOTIFY in an interface file reach the instance of `pyucarp run`: the
    check (quotes, $(...), blanks) as one command; the untracked instance beside it is
    not touched by the other's FAULT."""
    a = lab.add_host("a", "192.0.2.1/24")
    check = Control(tmp_path / "check")
    program, log = write_notify(tmp_path)
    up, down = bracketing_scripts(tmp_path)
    confdir = tmp_path / "interface"
    confdir.mkdir()
    (confdir / "tracked").write_text(_file_text(a, 1, (
        f"TRACK_SCRIPT={shlex.quote(check.command)}\nTRACK_INTERVAL=0.5\nTRACK_TIMEOUT=1\n"
        f"TRACK_FALL=2\nTRACK_RISE=2\nNOTIFY={program}\n")))
    (confdir / "plain").write_text(_file_text(a, 2))
    defaults = tmp_path / "default-ucarp"
    defaults.write_text(f"UPSCRIPT={up}\nDOWNSCRIPT={down}\nUCARP_RUNDIR={tmp_path}/rundir\n")
    statedir = tmp_path / "state"
    run = start_pyucarp(a, tmp_path, ["run", "--config-dir", str(confdir), "--defaults",
                                      str(defaults), "--statedir", str(statedir), "-f", "none"],
                        name="run", statedir=statedir)
    try:
        vips = ("192.0.2.101", "192.0.2.102")
        assert wait_until(lambda: all(a.has_address(v) for v in vips), 5), run.log()
        doc = json.loads((statedir / "eth0-1.json").read_text())
        assert doc["health"] == "healthy" and doc["last_check"]["command"] == check.command
        assert json.loads((statedir / "eth0-2.json").read_text())["health"] == "untracked"
        check.set("down")
        assert wait_until(lambda: not a.has_address(vips[0]), 3), run.log()
        assert a.has_address(vips[1])
        doc = json.loads((statedir / "eth0-1.json").read_text())
        assert (doc["state"], doc["health"]) == ("FAULT", "unhealthy")
        assert json.loads((statedir / "eth0-2.json").read_text())["state"] == "MASTER"
        check.set("ok")
        assert wait_until(lambda: a.has_address(vips[0]), 5), run.log()
        assert [c[0] for c in notified(log)][:4] == ["BACKUP", "MASTER", "FAULT", "BACKUP"]
        assert all(c[1:] == ["eth0", vips[0], "1"] for c in notified(log))
    finally:
        assert run.stop() == 0, run.log()
    assert not any(a.has_address(v) for v in ("192.0.2.101", "192.0.2.102"))


def _initd_problem() -> str | None:
    try:
        import test_initd  # the init script's namespace harness
    except ImportError as exc:  # pragma: no cover - the tests directory is on the path
        return str(exc)
    if test_initd.DASH is None:
        return "dash is not installed"
    if not os.access(test_initd.UCARP_EXEC, os.X_OK):
        return f"{test_initd.UCARP_EXEC} is not installed"
    if subprocess.run(["sh", "-c", "command -v start-stop-daemon"],
                      capture_output=True).returncode != 0:
        return "start-stop-daemon is missing"
    return None


@pytest.mark.skipif(_initd_problem() is not None, reason=_initd_problem() or "")
def test_track_variables_through_the_init_script(lab: Lab, tmp_path: Path) -> None:
    """The sample with TRACK_SCRIPT (quotes, blanks, $(...)) through /etc/init.d/ucarp: the
    daemon gets it as one argument, FAULT shows in `status`, stop leaves nothing behind."""
    import test_initd

    host = lab.add_host("a", "192.0.2.1/24")
    init = test_initd.Node(host, tmp_path / "a")
    check = Control(tmp_path / "check", "down")
    init.add_sample(SOURCE_ADDRESS=host.ip, OPTIONS='"-z -r 1"',
                    TRACK_SCRIPT=shlex.quote(check.command), TRACK_INTERVAL="0.5",
                    TRACK_FALL="2", TRACK_RISE="2", TRACK_INTERFACE='"eth0 lo"')
    try:
        res = init.initd("start")
        assert res.rc == 0 and "ucarp0: started" in res.out, res
        (argv,) = init.daemons().values()
        assert f"--track-script={check.command}" in argv
        assert [w for w in argv if w.startswith("--track-interface=")] == [
            "--track-interface=eth0", "--track-interface=lo"]
        assert wait_until(lambda: ": FAULT" in init.initd("status").out, 5)
        assert not host.has_address(test_initd.VIP)
        check.set("ok")
        assert wait_until(lambda: host.has_address(test_initd.VIP), 5)
        status = init.initd("status")
        assert status.rc == 0 and ": MASTER" in status.out, status
        # The daemon's state file is in the namespace's directory, where stop looks; what a
        # daemon killed mid-write would leave beside it goes too.
        inode = os.stat(f"/run/netns/{host.netns}").st_ino
        statedir = init.run_dir / "pyucarp" / f"netns-{inode}"
        assert (statedir / "eth0_carp0-42.json").exists()
        gone = subprocess.Popen(["true"])
        gone.wait()
        (statedir / f".eth0_carp0-42.json.{gone.pid}.tmp").write_text("{")
    finally:
        res = init.initd("stop")
    assert res.rc == 0 and "ucarp0: stopped" in res.out, res
    assert init.daemons() == {} and init.leftovers() == []
    assert not host.has_address(test_initd.VIP)


def test_sigterm_ends_a_hung_check_with_the_daemon(lab: Lab, tmp_path: Path) -> None:
    """A -z exit while a check hangs: the check is killed, the daemon exits at once."""
    a = lab.add_host("a", "192.0.2.1/24")
    check = Control(tmp_path / "check")
    lone = node(a, tmp_path, "lone", deadratio=1, extra=check.options(timeout=20.0, fall=100))
    assert wait_until(lone.holds_vip, 4), describe([lone])
    check.set("hang")
    assert wait_until(lambda: sleeps_in(a) == 1, 3)
    t0 = time.monotonic()
    lone.send_signal(signal.SIGTERM)
    assert lone.wait_exit(10) == 0, describe([lone])
    assert time.monotonic() - t0 < 3
    assert wait_until(lambda: sleeps_in(a) == 0, 2)
    assert not lone.holds_vip()


def test_sigusr1_does_not_call_a_fault_instance_master(lab: Lab, tmp_path: Path) -> None:
    """SIGUSR1's one-line report of an instance in FAULT must not claim MASTER."""
    a = lab.add_host("a", "192.0.2.1/24")
    check = Control(tmp_path / "check", "down")
    lone = node(a, tmp_path, "lone", deadratio=1, extra=check.options())
    assert wait_until(lambda: lone.state() == "FAULT", 3), describe([lone])
    lone.send_signal(signal.SIGUSR1)
    assert wait_until(lambda: lone.count(rf" on eth0 id {VHID}$") >= 1, 3), describe([lone])
    assert lone.count(rf"MASTER on eth0 id {VHID}$") == 0, describe([lone])


def test_exit_without_z_ends_a_hung_check_too(lab: Lab, tmp_path: Path) -> None:
    """SIGTERM without -z (ucarp's way: die of the signal): no check may outlive the daemon."""
    a = lab.add_host("a", "192.0.2.1/24")
    check = Control(tmp_path / "check")
    lone = node(a, tmp_path, "lone", deadratio=1, shutdown=False,
                extra=check.options(timeout=20.0, fall=100))
    assert wait_until(lone.holds_vip, 4), describe([lone])
    check.set("hang")
    assert wait_until(lambda: sleeps_in(a) == 1, 3)
    lone.send_signal(signal.SIGTERM)
    assert lone.wait_exit(10) is not None, describe([lone])
    assert wait_until(lambda: sleeps_in(a) == 0, 2), "the hung check outlived the daemon"
