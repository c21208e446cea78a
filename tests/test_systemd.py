"""``etc/systemd/ucarp@.service`` and its helper ``ucarp-instance``; the pid file's life.

The unit is checked with ``systemd-analyze verify`` where it exists. The helper is run as
the unit runs it (``ucarp-instance NAME``), inside a namespace, with a defaults file and an
interface file like the init script's: it must exec a working daemon (the helper's pid is
the daemon's), keep the password off every command line, and leave nothing stale behind
whether the daemon is stopped, killed, refused or fails to start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pyucarp.config.interface_files import InstanceFile, load_file
from pyucarp.lab.daemons import VIP_DOWN, VIP_UP, pyucarp_env
from pyucarp.lab.netlab import Host, Lab, pid_alive, wait_until

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "etc" / "systemd" / "ucarp@.service"
HELPER = REPO / "etc" / "systemd" / "ucarp-instance"
INSTALLED_HELPER = "/usr/local/lib/pyucarp/ucarp-instance"
PASSWORD = "p4ss-w0rd"
VIP = "192.0.2.100"


def unit_settings(unit: Path = UNIT) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit (ucarp@.service by default), all values of each key."""
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_settings() -> None:
    s = unit_settings()
    assert s["Type"] == ["simple"]
    assert s["ExecStart"] == [f"{INSTALLED_HELPER} %i"]
    assert s["ExecStopPost"] == [f"{INSTALLED_HELPER} --cleanup %i"]
    assert s["Restart"] == ["on-failure"] and s["KillSignal"] == ["SIGTERM"]
    assert s["RestartPreventExitStatus"] == ["6"]
    # The daemon's -z graceful exit waits up to 30 s for the downscript.
    assert int(s["TimeoutStopSec"][0]) > 30
    assert s["WantedBy"] == ["multi-user.target"]
    assert os.access(HELPER, os.X_OK)
    assert subprocess.run(["sh", "-n", str(HELPER)]).returncode == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # The helper is verified where it is in this tree (verify checks it is executable).
    (tmp_path / UNIT.name).write_text(UNIT.read_text().replace(INSTALLED_HELPER, str(HELPER)))
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "ucarp@ucarp0.service")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ucarp@" not in proc.stderr, proc.stderr  # no warning about our unit
    # And verify really checks: a missing helper is an error.
    (tmp_path / UNIT.name).write_text(UNIT.read_text().replace(INSTALLED_HELPER, "/nonexistent/x"))
    bad = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "ucarp@ucarp0.service")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


class Setup:
    """A defaults file, an interface directory and the run/state directories in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ifdir = root / "interface"
        self.ifdir.mkdir()
        self.rundir = root / "run"
        self.statedir = root / "state"
        self.record = root / "calls.txt"
        self.record.touch()
        exec_path = root / "ucarp"
        python = shutil.which("python3") or "python3"
        exec_path.write_text(f'#!/bin/sh\nexec {python} -m pyucarp "$@"\n')
        exec_path.chmod(0o755)
        scripts = {}
        for kind, target in (("up", VIP_UP), ("down", VIP_DOWN)):
            path = root / f"{kind}.sh"
            path.write_text(f'#!/bin/sh\necho "{kind} $* $VIRTUAL_NETMASK" >> "{self.record}"\n'
                            f'exec "{target}" "$@"\n')
            path.chmod(0o755)
            scripts[kind] = path
        self.defaults = root / "default-ucarp"
        self.defaults.write_text(
            f"UCARP_EXEC={exec_path}\nOPTIONS=\"-z\"\nIFCONFIG=/nonexistent/ifconfig\n"
            f"UPSCRIPT={scripts['up']}\nDOWNSCRIPT={scripts['down']}\n"
            f"R_INTERFACE={self.ifdir}\nUCARP_RUNDIR={self.rundir}\n"
            f"UCARP_STATEDIR={self.statedir}\n"
        )

    def interface_file(self, name: str, host: Host, **changes: str) -> None:
        values = {
            "INTERFACE": "eth0:carp0", "INSTANCE_ID": "42", "PASSWORD": PASSWORD,
            "VIRTUAL_ADDRESS": VIP, "VIRTUAL_NETMASK": "255.255.255.0",
            "VIRTUAL_BROADCAST": "192.0.2.255", "SOURCE_ADDRESS": host.ip,
            "UCARP_BASE": "1",
            # -B would detach from systemd: the helper must drop it.
            "OPTIONS": '"-r 1 -B -f none"',
        }
        values.update(changes)
        (self.ifdir / name).write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    @property
    def pidfile(self) -> Path:
        return self.rundir / "ucarp0.pid"

    @property
    def statefile(self) -> Path:
        return self.statedir / "eth0_carp0-42.json"

    def env(self) -> dict[str, str]:
        env = pyucarp_env()
        env["UCARP_DEFAULTS"] = str(self.defaults)
        return env

    def start(self, host: Host, name: str = "ucarp0") -> subprocess.Popen[Any]:
        log = open(self.root / f"{name}.log", "ab")
        try:
            return host.popen(["sh", str(HELPER), name], stdout=log, stderr=subprocess.STDOUT,
                              env=self.env(), cwd="/")
        finally:
            log.close()

    def run(self, host: Host, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", host.netns, "sh", str(HELPER), *args],
                              capture_output=True, text=True, env=self.env(), timeout=30,
                              stdin=subprocess.DEVNULL)

    def log(self, name: str = "ucarp0") -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def pid_in_file(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def _vip_cidrs(host: Host) -> list[str]:
    return [a for a in host.addresses(with_prefix=True) if a.startswith(VIP + "/")]


@pytest.mark.netns
def test_helper_runs_the_daemon_and_nothing_goes_stale(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("a", "192.0.2.1/24")
    setup = Setup(tmp_path)
    setup.interface_file("ucarp0", host)

    # Started as systemd would: the helper execs, so its pid is the daemon's.
    first = setup.start(host)
    assert wait_until(lambda: setup.pid_in_file() == first.pid, 10), setup.log()
    assert wait_until(lambda: _vip_cidrs(host) == [f"{VIP}/24"], 10), setup.log()
    cmdline = Path(f"/proc/{first.pid}/cmdline").read_bytes().split(b"\0")
    assert PASSWORD.encode() not in b" ".join(cmdline)
    assert b"-o" in cmdline and b"/dev/fd/3" in cmdline and b"-z" in cmdline
    assert b"-B" not in cmdline and f"--pidfile={setup.pidfile}".encode() in cmdline
    assert "ignoring -B in OPTIONS" in setup.log()
    assert wait_until(setup.statefile.exists, 5)
    calls = setup.record.read_text().splitlines()
    assert calls[-1] == f"up eth0:carp0 {VIP} 255.255.255.0"  # the file's variables reach it

    # A second start beside the live daemon is refused; the pid file stays the live one's.
    refused = setup.run(host, "ucarp0")
    assert refused.returncode == 1 and f"Already running with pid {first.pid}" in refused.stderr
    assert setup.pid_in_file() == first.pid and pid_alive(first.pid)

    # SIGKILL: the pid file is left stale; the next start sees it is stale and starts.
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=5)
    assert setup.pid_in_file() == first.pid
    second = setup.start(host)
    assert wait_until(lambda: setup.pid_in_file() == second.pid, 10), setup.log()
    assert wait_until(lambda: [c.split()[0] for c in setup.record.read_text().splitlines()]
                      == ["down", "up", "down", "up"], 10), setup.record.read_text()

    # SIGTERM (systemctl stop): downscript, exit 0, no pid file, no state file, no VIP.
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=15) == 0, setup.log()
    assert setup.record.read_text().splitlines()[-1].startswith("down eth0:carp0")
    assert not setup.pidfile.exists() and not setup.statefile.exists()
    assert _vip_cidrs(host) == []
    assert setup.run(host, "--cleanup", "ucarp0").returncode == 0  # nothing left to do

    # A failed start leaves no pid file either.
    setup.interface_file("ucarp0", host, SOURCE_ADDRESS="192.0.2.77")
    failed = setup.run(host, "ucarp0")
    assert failed.returncode == 1 and "192.0.2.77" in failed.stderr
    assert not setup.pidfile.exists() and not setup.statefile.exists()

    # Killed while MASTER: ExecStopPost's --cleanup removes the pid file, state file and
    # VIPs, each address of a list (the downscript once per address, in order).
    second_vip = "192.0.2.101"
    setup.interface_file("ucarp0", host, VIRTUAL_ADDRESS=f"'{VIP}  {second_vip}'")
    third = setup.start(host)
    assert wait_until(lambda: setup.pid_in_file() == third.pid and bool(_vip_cidrs(host))
                      and host.has_address(second_vip), 10), setup.log()
    assert wait_until(setup.statefile.exists, 5)
    third.send_signal(signal.SIGKILL)
    third.wait(timeout=5)
    before = setup.record.read_text().splitlines()
    cleanup = setup.run(host, "--cleanup", "ucarp0")
    assert cleanup.returncode == 0, cleanup.stderr
    assert cleanup.stderr.splitlines() == [f"ucarp@ucarp0: removed {VIP} left behind by the daemon",
                                           f"ucarp@ucarp0: removed {second_vip} left behind by "
                                           "the daemon"]
    added = setup.record.read_text().splitlines()[len(before):]
    assert [c.split()[:3] for c in added] == [["down", "eth0:carp0", VIP],
                                              ["down", "eth0:carp0", second_vip]]
    assert not setup.pidfile.exists() and not setup.statefile.exists()
    assert _vip_cidrs(host) == [] and not host.has_address(second_vip)


def test_helper_configuration_errors(tmp_path: Path) -> None:
    # No namespace needed: the helper stops before it starts anything.
    setup = Setup(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(HELPER), *args], capture_output=True, text=True,
                              env=setup.env(), timeout=30, stdin=subprocess.DEVNULL)

    missing = run("nofile")
    assert missing.returncode == 6 and "no readable interface file" in missing.stderr
    (setup.ifdir / "broken").write_text("INTERFACE=eth0\nPASSWORD='unterminated\n")
    broken = run("broken")
    assert broken.returncode == 6 and "cannot read" in broken.stderr
    (setup.ifdir / "partial").write_text("INTERFACE=eth0\nINSTANCE_ID=3\n")
    partial = run("partial")
    assert partial.returncode == 6
    assert "does not set: PASSWORD VIRTUAL_ADDRESS SOURCE_ADDRESS" in partial.stderr
    assert run("../etc").returncode == 2 and run().returncode == 2
    # The caller's environment cannot supply a file's variables.
    env = setup.env() | {"PASSWORD": "x", "VIRTUAL_ADDRESS": VIP, "SOURCE_ADDRESS": "192.0.2.1"}
    leaked = subprocess.run(["sh", str(HELPER), "partial"], capture_output=True, text=True,
                            env=env, timeout=30)
    assert leaked.returncode == 6
    setup.defaults.write_text(setup.defaults.read_text() + "run_ucarp=0\n")
    (setup.ifdir / "ok").write_text(f"INTERFACE=eth0\nINSTANCE_ID=3\nPASSWORD=x\n"
                                    f"VIRTUAL_ADDRESS={VIP}\nSOURCE_ADDRESS=192.0.2.1\n")
    disabled = run("ok")
    assert disabled.returncode == 0 and "disabled" in disabled.stderr
    # An address list of two families, or of blanks only: not configured (6, no retry).
    setup.defaults.write_text(setup.defaults.read_text().replace("run_ucarp=0\n", ""))
    (setup.ifdir / "mixed").write_text(
        "INTERFACE=eth0\nINSTANCE_ID=3\nPASSWORD=x\nSOURCE_ADDRESS=192.0.2.1\n"
        f"VIRTUAL_ADDRESS='{VIP}\n  2001:db8::100'\n")
    mixed = run("mixed")
    assert mixed.returncode == 6, mixed.stderr
    assert mixed.stderr == (f"ucarp@mixed: VIRTUAL_ADDRESS [{VIP} 2001:db8::100] mixes IPv4 "
                            "and IPv6 addresses\n")
    (setup.ifdir / "blank").write_text(
        "INTERFACE=eth0\nINSTANCE_ID=3\nPASSWORD=x\nSOURCE_ADDRESS=192.0.2.1\n"
        "VIRTUAL_ADDRESS=' '\n")
    blank = run("blank")
    assert blank.returncode == 6 and "does not set: VIRTUAL_ADDRESS" in blank.stderr


def _started_and_built(setup: Setup, record: Path,
                       name: str) -> tuple[list[str], list[str], InstanceFile]:
    """The helper run on file ``name``: the argv its daemon got (``record``), the argv
    ``pyucarp run`` builds for the file with what the helper adds (-z, the pid file, -o
    /dev/fd/3), and the loaded file."""
    proc = subprocess.run(["sh", str(HELPER), name], capture_output=True, text=True,
                          env=setup.env(), timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    argv = [os.fsdecode(w) for w in record.read_bytes().split(b"\0")[:-1]]
    item = load_file(str(setup.ifdir / name), str(setup.defaults))
    assert isinstance(item, InstanceFile), item
    expected = list(item.argv)
    expected[expected.index("-o") + 1] = "/dev/fd/3"
    at = expected.index("-b")
    expected[at:at] = ["-z", f"--pidfile={setup.pidfile.parent / (name + '.pid')}"]
    return argv, expected, item


def test_helper_passes_what_the_init_script_passes(tmp_path: Path) -> None:
    """The daemon's arguments are those ``pyucarp run`` (and so the init script, see
    test_interface_files) builds for the file, but -z, the pid file and -o /dev/fd/3:
    OPTIONS split with the file's IFS, -B dropped, every health variable, a check with
    blanks and quotes as ONE word."""
    setup = Setup(tmp_path)
    record = tmp_path / "argv"
    recorder = tmp_path / "recorder"
    recorder.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {record}\n")
    recorder.chmod(0o755)
    setup.defaults.write_text(setup.defaults.read_text() + f"UCARP_EXEC={recorder}\n")
    check = """curl -fsS "http://127.0.0.1/h?a=1&b=2" | grep -q 'ok' # $HOME /tmp/*"""
    (setup.ifdir / "h").write_text(
        f"INTERFACE=eth0\nINSTANCE_ID=3\nPASSWORD={PASSWORD}\nVIRTUAL_ADDRESS={VIP}\n"
        "SOURCE_ADDRESS=192.0.2.1\nIFS=:\nOPTIONS=-n:-B:-k:5\n"
        "TRACK_SCRIPT='" + check.replace("'", "'\\''") + "'\n"
        "TRACK_SCRIPT_2='test -d /tmp/*'\nTRACK_INTERVAL=0.5\nTRACK_TIMEOUT=0.25\n"
        "TRACK_FALL=3\nTRACK_RISE=4\nTRACK_INTERFACE=' eth1\teth2\n dummy*'\n"
        "TRACK_WEIGHT=20\nNOTIFY=/bin/true\n")
    argv, expected, item = _started_and_built(setup, record, "h")
    expected.remove("-B")
    assert argv == expected
    assert argv[:3] == ["-n", "-k", "5"] and f"--track-script={check}" in argv
    assert item.config.track_interfaces == ("eth1", "eth2", "dummy*")
    # An address list: one -a per address, in order, split at blanks whatever the IFS.
    (setup.ifdir / "list").write_text(
        f"INTERFACE=eth0\nINSTANCE_ID=4\nPASSWORD={PASSWORD}\nIFS=:\n"
        f"VIRTUAL_ADDRESS='{VIP}\t198.51.100.7\n 192.0.2.101'\nSOURCE_ADDRESS=192.0.2.1\n")
    argv, expected, _item = _started_and_built(setup, record, "list")
    assert argv == expected
    assert [argv[i + 1] for i, w in enumerate(argv) if w == "-a"] == [
        VIP, "198.51.100.7", "192.0.2.101"]


@pytest.mark.netns
def test_cleanup_finds_the_state_file_in_the_namespaces_directory(lab: Lab,
                                                                 tmp_path: Path) -> None:
    """Without UCARP_STATEDIR the daemon writes /run/pyucarp/netns-<inode> outside the
    host's network namespace: --cleanup removes a stale file there (and only there)."""
    host = lab.add_host("a", "192.0.2.1/24")
    setup = Setup(tmp_path)
    setup.defaults.write_text(setup.defaults.read_text().replace(
        f"UCARP_STATEDIR={setup.statedir}\n", ""))
    setup.interface_file("ucarp0", host)
    inode = os.stat(f"/run/netns/{host.netns}").st_ino
    statedir = Path(f"/run/pyucarp/netns-{inode}")
    statefile = statedir / "eth0_carp0-42.json"
    dead = subprocess.Popen(["true"])
    dead.wait()
    tmp = statedir / f".{statefile.name}.{dead.pid}.tmp"  # a daemon killed mid-write's
    made = not statedir.exists()
    statedir.mkdir(parents=True, exist_ok=True)
    try:
        statefile.write_text(json.dumps({"pid": dead.pid, "state": "MASTER"}, indent=1))
        tmp.write_text("{")
        done = setup.run(host, "--cleanup", "ucarp0")
        assert done.returncode == 0, done.stderr
        assert not statefile.exists() and not tmp.exists()
    finally:
        statefile.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        if made:
            statedir.rmdir()


# --------------------------------------------------------------------------- pyucarp.service

RUN_UNIT = REPO / "etc" / "systemd" / "pyucarp.service"
INSTALLED_PYUCARP = "/usr/local/bin/pyucarp"


def test_run_unit_settings() -> None:
    s = unit_settings(RUN_UNIT)
    # `pyucarp run` stays in the foreground and does not notify.
    assert s["Type"] == ["exec"]
    assert s["ExecStart"] == [f"{INSTALLED_PYUCARP} run"]
    assert "-B" not in s["ExecStart"][0].split()
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["KillSignal"] == ["SIGTERM"] and s["KillMode"] == ["mixed"]
    assert int(s["TimeoutStopSec"][0]) > 30  # a downscript may take 30 s
    assert s["Restart"] == ["on-failure"] and s["WantedBy"] == ["multi-user.target"]
    caps = set(s["CapabilityBoundingSet"][0].split())
    assert {"CAP_NET_RAW", "CAP_NET_ADMIN"} <= caps and "CAP_SYS_ADMIN" not in caps
    assert s["NoNewPrivileges"] == ["yes"]
    families = set(s["RestrictAddressFamilies"][0].split())
    assert {"AF_PACKET", "AF_NETLINK", "AF_INET", "AF_UNIX"} <= families


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing")
def test_run_unit_systemd_analyze_verify(tmp_path: Path) -> None:
    # Verified with a pyucarp that exists here (verify checks ExecStart's executable).
    here = Path(shutil.which("pyucarp") or "/nonexistent/pyucarp")
    if not os.access(here, os.X_OK):
        here = tmp_path / "pyucarp"
        here.write_text("#!/bin/sh\nexit 0\n")
        here.chmod(0o755)
    unit = tmp_path / RUN_UNIT.name
    unit.write_text(RUN_UNIT.read_text().replace(INSTALLED_PYUCARP, str(here)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pyucarp.service" not in proc.stderr, proc.stderr  # no warning about our unit
    unit.write_text(RUN_UNIT.read_text().replace(INSTALLED_PYUCARP, "/nonexistent/pyucarp"))
    bad = subprocess.run(["systemd-analyze", "verify", str(unit)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


def test_install_sh_installs_the_run_unit(tmp_path: Path) -> None:
    install = REPO / "init.d" / "install.sh"
    subprocess.run([str(install), "--root", str(tmp_path), "--ucarp-exec", "/opt/venv/bin/ucarp"],
                   check=True, capture_output=True)
    installed = (tmp_path / "etc/systemd/system/pyucarp.service").read_text()
    assert installed == RUN_UNIT.read_text().replace(
        f"ExecStart={INSTALLED_PYUCARP} run", "ExecStart=/opt/venv/bin/pyucarp run")
