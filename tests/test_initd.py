"""The SysV init wrapper ``init.d/ucarp`` and the classic init script, run for real.

Each lab host gets its own installed tree (``init.d/install.sh --root DIR``). The init
script is run inside the host's network namespace and a private mount namespace in which
``DIR/etc/default`` is bound over ``/etc/default`` and ``DIR/run`` over ``/run``: the script
reads the real path ``/etc/default/ucarp``, the sample's ``/var/run/ucarp0.pid`` and the
default ``/run/ucarp`` land in the host's own directory, and nothing on this machine's
``/etc`` or ``/run`` is touched. ``/etc/ucarp`` does not exist here (a bind mount needs
the directory to exist), so the test's defaults file points R_INTERFACE, UPSCRIPT and
DOWNSCRIPT into the host's tree.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyucarp.lab.netlab import Host, Lab, pid_alive, wait_until

REPO = Path(__file__).resolve().parent.parent
INIT_SCRIPT = REPO / "init.d" / "ucarp"
INSTALL = REPO / "init.d" / "install.sh"
SAMPLE = REPO / "etc" / "ucarp" / "interface" / "ucarp0"
SEED_SCRIPT = Path(__file__).resolve().parent / "seed_init_script.sh"
UCARP_EXEC = Path(sys.executable).parent / "ucarp"  # pyucarp's console script
CUCARP = "/usr/sbin/ucarp"
DASH = shutil.which("dash")

VIP = "192.0.2.100"  # the sample's address
PASSWORD = "change-me"  # the sample's password
MASTER_DOWN = 3.0  # advbase 1 x deadratio 3 + advskew 0: how long a backup waits for a dead master

# Runs "$@" with the host tree's /etc/default and /run in place of the machine's.
_IN_TREE = (
    'mount --bind "$1/etc/default" /etc/default && mount --bind "$1/run" /run'
    ' && shift && exec "$@"'
)

pytestmark = [
    pytest.mark.skipif(DASH is None, reason="dash (Debian's /bin/sh) is not installed"),
    pytest.mark.skipif(shutil.which("start-stop-daemon") is None,
                       reason="start-stop-daemon is missing"),
    pytest.mark.skipif(not os.access(UCARP_EXEC, os.X_OK), reason=f"{UCARP_EXEC} is not installed"),
]


@dataclass(frozen=True)
class Result:
    """What one run of an init script gave."""

    rc: int
    out: str
    err: str
    seconds: float


class Node:
    """A lab host with its own installed init script, defaults, scripts and run directory."""

    def __init__(self, host: Host, root: Path) -> None:
        self.host = host
        self.root = root
        subprocess.run([str(INSTALL), "--root", str(root), "--ucarp-exec", str(UCARP_EXEC)],
                       check=True, capture_output=True, text=True)
        self.run_dir = root / "run"
        self.run_dir.mkdir()
        self.interface_dir = root / "etc" / "ucarp" / "interface"
        defaults = root / "etc" / "default" / "ucarp"
        defaults.write_text(
            defaults.read_text()
            + f"R_INTERFACE={self.interface_dir}\n"
            + f"UPSCRIPT={root}/etc/ucarp/vip-up.sh\n"
            + f"DOWNSCRIPT={root}/etc/ucarp/vip-down.sh\n"
        )

    def in_tree(self, *argv: str) -> list[str]:
        """``argv`` run in a private mount namespace showing this host's tree."""
        return ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", _IN_TREE, "sh", str(self.root), *argv]

    def initd(self, *args: str, script: Path | None = None, timeout: float = 60) -> Result:
        """Run the installed init script (or ``script``) with dash inside the host."""
        script = script or self.root / "etc" / "init.d" / "ucarp"
        assert DASH is not None
        started = time.monotonic()
        proc = self.host.run(self.in_tree(DASH, str(script), *args), check=False, timeout=timeout)
        result = Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        print(f"[{self.host.name}] {' '.join(args)} -> {result.rc} in {result.seconds:.2f}s\n"
              f"{result.out}{result.err}")
        return result

    def write_file(self, name: str, text: str) -> Path:
        """Put interface file ``name`` in place (mode 0600, as it holds a password)."""
        path = self.interface_dir / name
        path.write_text(text)
        path.chmod(0o600)
        return path

    def add_sample(self, name: str = "ucarp0", **changes: str | None) -> Path:
        """The shipped sample, with variables replaced (a value of None deletes the line)."""
        return self.write_file(name, edit_vars(SAMPLE.read_text(), **changes))

    def pidfile(self, name: str = "ucarp0") -> Path:
        """Where the daemon of interface file ``name`` keeps its pid (the sample's path for
        ucarp0)."""
        return self.run_dir / ("ucarp0.pid" if name == "ucarp0" else f"ucarp/{name}.pid")

    def daemons(self) -> dict[int, list[str]]:
        """pid -> argv of every ucarp process in the host's namespace (zombies left out)."""
        out = subprocess.run(["ip", "netns", "pids", self.host.netns],
                             capture_output=True, text=True).stdout
        found = {}
        for tok in out.split():
            try:
                argv = Path(f"/proc/{tok}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            words = [os.fsdecode(w) for w in argv if w]
            if any(Path(w).name in ("ucarp", "pyucarp") for w in words[:3]) and pid_alive(int(tok)):
                found[int(tok)] = words
        return found

    def leftovers(self) -> list[str]:
        """Files left in the run directory (pid files, password files, state files)."""
        files = (p for p in self.run_dir.rglob("*") if p.is_file())
        return sorted(str(p.relative_to(self.run_dir)) for p in files)


def edit_vars(text: str, **changes: str | None) -> str:
    """``text`` (a shell fragment) with ``NAME=value`` lines replaced, appended or deleted."""
    for name, value in changes.items():
        pattern = re.compile(rf"^{name}=.*$", re.M)
        if value is None:
            text = pattern.sub("", text)
        elif pattern.search(text):
            text = pattern.sub(lambda _m, line=f"{name}={value}": line, text)
        else:
            text += f"{name}={value}\n"
    return text


def holders(*nodes: Node, vip: str = VIP) -> list[str]:
    """Names of the hosts that have ``vip`` on eth0."""
    return [n.host.name for n in nodes if n.host.has_address(vip)]


def pid_of(node: Node, name: str = "ucarp0") -> int:
    """The pid in the pid file of interface file ``name``."""
    return int(node.pidfile(name).read_text().split()[0])


@pytest.fixture
def pair(lab: Lab, tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Hosts a (192.0.2.1) and b (192.0.2.2), each with the shipped files and the sample."""
    a = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    b = Node(lab.add_host("b", "192.0.2.2/24"), tmp_path / "b")
    a.add_sample()
    b.add_sample(SOURCE_ADDRESS="192.0.2.2")
    yield a, b
    for node in (a, b):  # stop what a failing test left running, by the script itself
        if node.daemons():
            node.initd("stop")


# --------------------------------------------------------------------------- no network


def test_scripts_are_posix_sh() -> None:
    """Every shell file parses with dash; the init script carries the LSB header fields."""
    for script in (INIT_SCRIPT, INSTALL, SEED_SCRIPT, REPO / "etc/ucarp/vip-up.sh",
                   REPO / "etc/ucarp/vip-down.sh", REPO / "etc/default/ucarp", SAMPLE):
        assert DASH is not None
        proc = subprocess.run([DASH, "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
    head = INIT_SCRIPT.read_text()
    for field in ("Provides:", "Required-Start:", "Required-Stop:", "Default-Start:",
                  "Default-Stop:", "Short-Description:"):
        assert re.search(rf"^# {field}\s+\S", head, re.M), field


def test_install_into_a_root(tmp_path: Path) -> None:
    """install.sh lays the files out with their modes and keeps what the admin changed."""
    root = tmp_path / "root"
    subprocess.run([str(INSTALL), "--root", str(root), "--ucarp-exec", str(UCARP_EXEC)],
                   check=True, capture_output=True)
    etc = root / "etc"
    assert (etc / "init.d/ucarp").read_bytes() == INIT_SCRIPT.read_bytes()
    assert (etc / "init.d/ucarp").stat().st_mode & 0o777 == 0o755
    for script in ("vip-up.sh", "vip-down.sh"):
        assert (etc / "ucarp" / script).stat().st_mode & 0o777 == 0o755
    assert (etc / "ucarp/interface").is_dir()
    assert (etc / "ucarp/interface").stat().st_mode & 0o777 == 0o700
    assert not any((etc / "ucarp/interface").iterdir())  # the sample is not activated
    assert (etc / "ucarp/ucarp0.sample").stat().st_mode & 0o777 == 0o600
    defaults = (etc / "default/ucarp").read_text()
    assert f"UCARP_EXEC={UCARP_EXEC}\n" in defaults
    # A second install keeps the admin's settings and scripts.
    (etc / "default/ucarp").write_text(defaults + "OPTIONS='-z -P'\n")
    (etc / "ucarp/vip-up.sh").write_text("#!/bin/sh\n# mine\n")
    (etc / "init.d/ucarp").write_text("#!/bin/sh\n# the classic one\n")
    subprocess.run([str(INSTALL), "--prefix", str(root)], check=True, capture_output=True)
    assert (etc / "init.d/ucarp").read_bytes() == INIT_SCRIPT.read_bytes()
    assert (etc / "ucarp/ucarp.init.orig").read_text() == "#!/bin/sh\n# the classic one\n"
    assert (etc / "default/ucarp").read_text().endswith("OPTIONS='-z -P'\n")
    assert (etc / "ucarp/vip-up.sh").read_text() == "#!/bin/sh\n# mine\n"
    shipped = (REPO / "etc/ucarp/vip-up.sh").read_bytes()
    assert (etc / "ucarp/vip-up.sh.dist").read_bytes() == shipped


# --------------------------------------------------------------------------- two hosts


@pytest.mark.netns
def test_two_hosts_failover_restart_and_clean_stop(pair: tuple[Node, Node]) -> None:
    """Shipped files on two hosts: one master, fast hand-over on stop, restart, nothing left."""
    a, b = pair
    for node in (a, b):
        res = node.initd("start")
        assert res.rc == 0 and "ucarp0: started" in res.out, res
    assert wait_until(lambda: len(holders(a, b)) == 1, MASTER_DOWN + 3), holders(a, b)
    time.sleep(1.2)  # one more advert round: still exactly one master
    assert len(holders(a, b)) == 1
    for node in (a, b):
        res = node.initd("status")
        assert res.rc == 0 and "ucarp0: running" in res.out, res
        # The password went through a file that is gone now, never through the command line.
        (argv,) = node.daemons().values()
        assert "-o" in argv and "--pidfile=/var/run/ucarp0.pid" in argv and "-B" in argv
        assert not any(PASSWORD in word for word in argv)
        assert not (node.run_dir / "ucarp" / "ucarp0.pass").exists()
        assert (node.run_dir / "ucarp").stat().st_mode & 0o777 == 0o700
    master, backup = (a, b) if holders(a, b) == ["a"] else (b, a)

    # Stopping the master: the backup takes over long before the master-down time.
    assert DASH is not None
    t0 = time.monotonic()
    proc = subprocess.Popen(["ip", "netns", "exec", master.host.netns,
                             *master.in_tree(DASH, str(master.root / "etc/init.d/ucarp"), "stop")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        took_over = wait_until(lambda: backup.host.has_address(VIP), MASTER_DOWN + 3, interval=0.01)
        takeover = time.monotonic() - t0
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"VIP on the backup {takeover:.3f}s after `stop` on the master "
          f"(master-down time {MASTER_DOWN}s); stop took {time.monotonic() - t0:.2f}s")
    assert proc.returncode == 0 and "ucarp0: stopped" in out, (out, err)
    assert took_over and takeover < MASTER_DOWN
    assert holders(a, b) == [backup.host.name]
    assert master.daemons() == {} and master.leftovers() == []
    res = master.initd("status")
    assert res.rc == 3 and "ucarp0: stopped" in res.out

    # Back as backup, then a restart of the current master hands the VIP back.
    assert master.initd("start").rc == 0
    old_pid = pid_of(backup)
    res = backup.initd("restart")
    assert res.rc == 0 and "stopped" in res.out and "started" in res.out, res
    assert pid_of(backup) != old_pid and not pid_alive(old_pid)
    assert wait_until(lambda: holders(a, b) == [master.host.name], 2)
    assert a.initd("status").rc == 0 and b.initd("status").rc == 0

    for node in (a, b):
        res = node.initd("stop")
        assert res.rc == 0, res
    assert holders(a, b) == []
    for node in (a, b):
        assert node.daemons() == {}
        assert node.leftovers() == []
        assert node.initd("status").rc == 3


# --------------------------------------------------------------------------- one host


def three_files(node: Node) -> None:
    """ucarp0..ucarp2: three vhids and VIPs; the two without a pid file get the default one."""
    for n in range(3):
        node.add_sample(f"ucarp{n}", INSTANCE_ID=str(10 + n), VIRTUAL_ADDRESS=f"192.0.2.{101 + n}",
                        INTERFACE=f"eth0:carp{n}" if n < 2 else "eth0",
                        UCARP_PIDFILE="/var/run/ucarp0.pid" if n == 0 else None)


@pytest.mark.netns
def test_three_interface_files_together_and_one_by_one(lab: Lab, tmp_path: Path) -> None:
    """Three files, three daemons and VIPs; every action on all of them and on one."""
    node = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    three_files(node)
    vips = ["192.0.2.101", "192.0.2.102", "192.0.2.103"]

    res = node.initd("start")
    assert res.rc == 0 and res.out.count("started") == 3, res
    assert len(node.daemons()) == 3
    # Alone on the segment, each becomes master and its upscript configures its own VIP.
    assert wait_until(lambda: all(node.host.has_address(v) for v in vips), MASTER_DOWN + 3)
    res = node.initd("status")
    names = [line.split(":")[0] for line in res.out.splitlines()]
    assert res.rc == 0 and names == ["ucarp0", "ucarp1", "ucarp2"]
    assert res.out.count("MASTER") == 3

    res = node.initd("stop", "ucarp1")
    assert res.rc == 0 and "ucarp1: stopped" in res.out and "ucarp0" not in res.out
    assert [node.host.has_address(v) for v in vips] == [True, False, True]
    assert node.initd("status", "ucarp1").rc == 3
    assert node.initd("status", "ucarp2").rc == 0
    res = node.initd("status")
    assert res.rc == 3 and len(res.out.splitlines()) == 3  # not all running
    assert len(node.daemons()) == 2

    res = node.initd("start", "ucarp1")
    assert res.rc == 0 and res.out.count("started") == 1
    assert len(node.daemons()) == 3 and node.initd("status").rc == 0
    old = pid_of(node, "ucarp2")
    assert node.initd("restart", "ucarp2").rc == 0
    assert pid_of(node, "ucarp2") != old and pid_of(node, "ucarp0") in node.daemons()

    assert node.initd("status", "nosuchfile").rc == 4
    assert node.initd("start", "nosuchfile").rc == 6
    assert node.initd("start", "../ucarp0").rc == 2

    res = node.initd("stop")
    assert res.rc == 0 and res.out.count("stopped") == 3
    assert node.daemons() == {} and node.leftovers() == []
    assert not any(node.host.has_address(v) for v in vips)


@pytest.mark.netns
def test_broken_files_are_named_and_the_others_start(lab: Lab, tmp_path: Path) -> None:
    """Each broken file is reported by name, the good ones start, start exits non-zero."""
    node = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    good = dict(UCARP_PIDFILE=None, INTERFACE="eth0")
    node.add_sample("a-good", INSTANCE_ID="21", VIRTUAL_ADDRESS="192.0.2.121", **good)
    node.add_sample("b-novip", INSTANCE_ID="22", VIRTUAL_ADDRESS=None, **good)
    node.add_sample("c-badaddr", INSTANCE_ID="23", VIRTUAL_ADDRESS="192.0.2.300", **good)
    node.write_file("d-syntax", "INTERFACE=eth0\nPASSWORD=<password>\n")  # the seed's placeholder
    # Well-formed, but the daemon itself refuses: the source address is not on eth0.
    node.add_sample("e-nosrc", INSTANCE_ID="25", VIRTUAL_ADDRESS="192.0.2.125",
                    SOURCE_ADDRESS="192.0.2.77", **good)
    node.add_sample("f-good", INSTANCE_ID="26", VIRTUAL_ADDRESS="192.0.2.126", **good)
    # an editor's backup file
    node.add_sample("f-good~", INSTANCE_ID="27", VIRTUAL_ADDRESS="192.0.2.127", **good)

    res = node.initd("start")
    assert res.rc != 0
    assert "a-good: started" in res.out and "f-good: started" in res.out
    assert re.search(r"b-novip: .*VIRTUAL_ADDRESS is not set", res.err)
    assert re.search(r"c-badaddr: .*VIRTUAL_ADDRESS \[192\.0\.2\.300\]", res.err)
    assert re.search(r"d-syntax: not started: interface file .*/d-syntax: Syntax error", res.err)
    assert re.search(r"e-nosrc: .*192\.0\.2\.77.*not configured", res.err)
    assert "e-nosrc: failed to start" in res.err
    assert "ignoring f-good~" in res.err
    daemons = node.daemons()
    assert len(daemons) == 2
    assert sorted(a[a.index("-v") + 1] for a in daemons.values()) == ["21", "26"]
    assert not (node.run_dir / "ucarp" / "e-nosrc.pass").exists()

    res = node.initd("status")
    assert res.rc != 0 and "a-good: running" in res.out and "b-novip: stopped" in res.out
    assert node.initd("status", "a-good").rc == 0
    res = node.initd("stop")
    assert res.rc == 0 and node.daemons() == {} and node.leftovers() == []


@pytest.mark.netns
def test_double_start_stale_pidfiles_and_a_killed_daemon(lab: Lab, tmp_path: Path) -> None:
    """One daemon per file whatever happens to the pid files, the daemons and the files."""
    a = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    three_files(a)
    assert a.initd("start").rc == 0
    first = dict(a.daemons())
    for _ in range(2):
        res = a.initd("start")
        assert res.rc == 0 and res.out.count("already running") == 3
    assert a.daemons() == first  # one daemon per file, the same ones

    # A daemon killed hard while master leaves its pid file and its VIP: status says so,
    # stop cleans up after it (runs the downscript), and start works again.
    assert wait_until(lambda: a.host.has_address("192.0.2.101"), MASTER_DOWN + 3)
    pid = pid_of(a, "ucarp0")
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: pid not in a.daemons(), 5)
    res = a.initd("status", "ucarp0")
    assert res.rc == 1 and "pid file" in res.out
    res = a.initd("stop", "ucarp0")
    assert res.rc == 0 and "removed 192.0.2.101" in res.out, res
    assert not a.host.has_address("192.0.2.101") and not a.pidfile("ucarp0").exists()

    # A pid file naming a live process that is no ucarp: not running, and start replaces it
    # without touching that process.
    sleeper = a.host.popen(["sleep", "30"])
    a.pidfile("ucarp0").write_text(f"{sleeper.pid}\n")
    assert a.initd("status", "ucarp0").rc == 1
    res = a.initd("start", "ucarp0")
    assert res.rc == 0 and "started" in res.out
    assert pid_of(a, "ucarp0") != sleeper.pid and sleeper.poll() is None
    assert a.initd("stop", "ucarp0").rc == 0 and sleeper.poll() is None
    sleeper.kill()
    sleeper.wait()

    # Files edited (or broken) while their daemons run: stop still finds the daemons,
    # through the pid file each was started with.
    assert a.initd("start").rc == 0 and len(a.daemons()) == 3
    a.add_sample("ucarp1", INSTANCE_ID="11", VIRTUAL_ADDRESS="192.0.2.102", INTERFACE="eth0:carp1",
                 UCARP_PIDFILE="/var/run/elsewhere.pid")
    a.write_file("ucarp2", "if then\n")
    (a.interface_dir / "ucarp0").unlink()
    res = a.initd("status")
    assert res.rc == 0 and res.out.count(": running") == 3, res
    assert "ucarp0: running" in res.out and "ucarp0 is gone" in res.out
    assert a.initd("status", "ucarp0").rc == 0
    res = a.initd("stop")
    assert res.rc == 0 and res.out.count("stopped") == 3, res
    assert a.initd("status", "ucarp0").rc == 4
    assert a.daemons() == {} and a.leftovers() == []


@pytest.mark.netns
def test_refuses_an_executable_that_is_not_pyucarp(lab: Lab, tmp_path: Path) -> None:
    """A C ucarp or a missing UCARP_EXEC stops start (exit 5), not status; bad action: 3."""
    node = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    node.add_sample()
    defaults = node.root / "etc/default/ucarp"
    text = defaults.read_text()
    defaults.write_text(text + "UCARP_EXEC=/bin/true\n")
    res = node.initd("start")
    assert res.rc == 5 and "not pyucarp" in res.err
    defaults.write_text(text + "UCARP_EXEC=/nonexistent/ucarp\n")
    assert node.initd("start").rc == 5
    assert node.initd("status").rc == 3  # status and stop need no executable
    assert node.initd("frobnicate").rc == 3
    assert node.daemons() == {}


# --------------------------------------------------------------------------- the classic script


@pytest.mark.netns
@pytest.mark.cucarp
def test_seed_script_runs_pyucarp_beside_a_c_ucarp(lab: Lab, tmp_path: Path) -> None:
    """The page's own script, unchanged, with UCARP_EXEC set to pyucarp's console script."""
    a = Node(lab.add_host("a", "192.0.2.1/24"), tmp_path / "a")
    b = lab.add_host("b", "192.0.2.2/24")
    (a.root / "etc/default/ucarp").write_text(
        f"UCARP_EXEC={UCARP_EXEC}\nIFCONFIG=/sbin/ifconfig\nOPTIONS=\"-z\"\n"
        f"R_INTERFACE={a.interface_dir}\n")
    a.add_sample(PASSWORD="s3cret")
    clog = tmp_path / "cucarp.log"
    with clog.open("w") as out:
        cucarp = b.popen([CUCARP, "-i", "eth0", "-s", b.ip, "-v", "42", "-p", "s3cret", "-a", VIP],
                         stdout=out, stderr=subprocess.STDOUT)
    try:
        res = a.initd("start", script=SEED_SCRIPT)
        assert res.rc == 0 and "ucarp." in res.out
        assert wait_until(lambda: len(a.daemons()) == 1, 5)
        (pid, argv), = a.daemons().items()
        assert pid == pid_of(a) and "\\" in argv  # the script's stray backslash argument
        # -p's value is scrubbed from the command line once the options are parsed.
        assert wait_until(
            lambda: not any("s3cret" in w for w in a.daemons().get(pid, ["s3cret"])), 5
        )
        def states() -> tuple[str, list[str]]:
            # In /run/pyucarp, or its netns-<inode> directory outside the first namespace.
            state_file = next((a.run_dir / "pyucarp").rglob("eth0_carp0-42.json"), None)
            py = (re.search(r'"state": "(\w+)"', state_file.read_text())
                  if state_file is not None else None)
            c = re.findall(r"Switching to state: (\w+)", clog.read_text())
            return (py.group(1) if py else "?"), c

        def one_master() -> bool:
            py, c = states()
            return bool(c) and [py, c[-1]].count("MASTER") == 1 and "BACKUP" in (py, c[-1])

        assert wait_until(one_master, MASTER_DOWN + 4), (states(), clog.read_text())
        time.sleep(2.5)  # settled: still one master, and the C ucarp took pyucarp's adverts
        assert one_master(), (states(), clog.read_text())
        text = clog.read_text()
        assert "Bad digest" not in text and "Bad" not in text, text

        res = a.initd("stop", script=SEED_SCRIPT)
        assert res.rc == 0
        assert wait_until(lambda: a.daemons() == {}, 5)
        assert cucarp.poll() is None
    finally:
        if a.daemons():
            a.initd("stop", script=SEED_SCRIPT)


# --------------------------------------------------------------------------- address lists


def carried(host: Host, addresses: list[str]) -> dict[str, str]:
    """Which of ``addresses`` ``host``'s eth0 carries: address -> "prefixlen [label]" (IPv4)
    or "prefixlen [tentative]" (IPv6)."""
    out = host.run(["ip", "-j", "address", "show", "dev", host.ifname]).stdout
    wanted = {str(ipaddress.ip_address(a)): a for a in addresses}
    found = {}
    for link in json.loads(out):
        for info in link.get("addr_info", []):
            if info["local"] in wanted:
                extra = info.get("label", "") if info["family"] == "inet" else (
                    "tentative" if info.get("tentative") else "")
                found[wanted[info["local"]]] = f"{info['prefixlen']} {extra}".strip()
    return found


V4_LIST = ["192.0.2.100", "192.0.2.101"]
V6_LIST = ["2001:db8::100", "2001:db8::101"]


@pytest.mark.netns
def test_address_lists_move_together_and_are_cleaned_up(tmp_path: Path) -> None:
    """Two files with two addresses each, IPv4 on the alias label eth0:carp0 (ifconfig's
    path in the shipped scripts) and IPv6 on eth0: the master holds all four, a takeover
    moves all four, stop cleans each up after a killed daemon; a file mixing the families
    is refused in one line. Then the classic script with the same IPv4 list."""
    from conftest import lab_or_skip

    with lab_or_skip(ipv6=True) as lab:
        a = Node(lab.add_host("a", "192.0.2.1/24", addr6="2001:db8::1/64"), tmp_path / "a")
        b = Node(lab.add_host("b", "192.0.2.2/24", addr6="2001:db8::2/64"), tmp_path / "b")
        everything = V4_LIST + V6_LIST
        for node, n, skew in ((a, 1, 0), (b, 2, 50)):
            options = f'"-z -P -k {skew}"'
            node.add_sample("v4", UCARP_PIDFILE=None, OPTIONS=options,
                            SOURCE_ADDRESS=f"192.0.2.{n}",
                            VIRTUAL_ADDRESS="'{}\t {}'".format(*V4_LIST))
            node.add_sample("v6", UCARP_PIDFILE=None, OPTIONS=options, INSTANCE_ID="43",
                            INTERFACE="eth0", SOURCE_ADDRESS=f"2001:db8::{n}",
                            VIRTUAL_NETMASK=None, VIRTUAL_BROADCAST=None,
                            VIRTUAL_ADDRESS="'{}\n{}'".format(*V6_LIST))
        a.add_sample("w-mixed", UCARP_PIDFILE=None, INSTANCE_ID="44", INTERFACE="eth0",
                     VIRTUAL_ADDRESS="'192.0.2.102 2001:db8::102'")
        try:
            res = a.initd("start")
            assert res.rc == 6, res
            assert "v4: started" in res.out and "v6: started" in res.out
            assert [line for line in res.err.splitlines() if "w-mixed" in line] == [
                f"ucarp: w-mixed: not started: interface file {a.interface_dir / 'w-mixed'}: "
                "VIRTUAL_ADDRESS [192.0.2.102 2001:db8::102] mixes IPv4 and IPv6 addresses"]
            (a.interface_dir / "w-mixed").unlink()
            assert b.initd("start").rc == 0
            # One -a per address, in the file's order.
            for argv in a.daemons().values():
                vips = [argv[i + 1] for i, w in enumerate(argv) if w == "-a"]
                assert vips in (V4_LIST, V6_LIST), argv
            # The master holds all four: IPv4 with the file's netmask on the alias label,
            # IPv6 as /128 and usable at once; the backup none.
            held = {**{v: "24 eth0:carp0" for v in V4_LIST}, **{v: "128" for v in V6_LIST}}
            assert wait_until(lambda: carried(a.host, everything) == held
                              and carried(b.host, everything) == {}, MASTER_DOWN + 3), (
                carried(a.host, everything), carried(b.host, everything))
            res = a.initd("status")
            assert res.rc == 0, res
            assert res.out.splitlines() == [
                f"v4: running (pid {pid_of(a, 'v4')}, vhid 42, {' '.join(V4_LIST)} on "
                "eth0:carp0): MASTER",
                f"v6: running (pid {pid_of(a, 'v6')}, vhid 43, {' '.join(V6_LIST)} on eth0): "
                "MASTER"]

            # Both of a's daemons die without a word: b takes every address over; a keeps
            # them (a killed daemon runs no script) until stop cleans up, address by address.
            for name in ("v4", "v6"):
                os.kill(pid_of(a, name), signal.SIGKILL)
            assert wait_until(lambda: carried(b.host, everything) == held, MASTER_DOWN + 3), \
                carried(b.host, everything)
            assert carried(a.host, everything) == held
            res = a.initd("stop")
            assert res.rc == 0, res
            assert [line for line in res.out.splitlines() if "removed" in line] == [
                f"v4: removed {V4_LIST[0]} left behind by the daemon",
                f"v4: removed {V4_LIST[1]} left behind by the daemon",
                f"v6: removed {V6_LIST[0]} left behind by the daemon",
                f"v6: removed {V6_LIST[1]} left behind by the daemon"]
            assert carried(a.host, everything) == {} and a.leftovers() == []
            assert carried(b.host, everything) == held

            # The last master stops: -z, its downscripts take every address off.
            res = b.initd("stop")
            assert res.rc == 0 and "removed" not in res.out, res
            assert carried(b.host, everything) == {}
            assert b.daemons() == {} and b.leftovers() == []
        finally:
            for node in (a, b):
                if node.daemons():
                    node.initd("stop")

        # The classic script passes VIRTUAL_ADDRESS unquoted: ifconfig sets each address
        # on the alias in turn (the last one stays), and the daemon gets the first as -a and
        # the others as stray arguments, which it ignores, as ucarp does.
        for name in ("v4", "v6"):
            (a.interface_dir / name).unlink()
        (a.root / "etc/default/ucarp").write_text(
            f"UCARP_EXEC={UCARP_EXEC}\nIFCONFIG=/sbin/ifconfig\nOPTIONS=\"-z\"\n"
            f"R_INTERFACE={a.interface_dir}\n")
        a.add_sample(VIRTUAL_ADDRESS="'{} {}'".format(*V4_LIST))
        try:
            assert a.initd("start", script=SEED_SCRIPT).rc == 0
            assert wait_until(lambda: len(a.daemons()) == 1, 5)
            (argv,) = a.daemons().values()
            at = argv.index("-a")
            assert argv[at:at + 4] == ["-a", V4_LIST[0], V4_LIST[1], "-s"], argv
            if os.access("/sbin/ifconfig", os.X_OK):
                assert carried(a.host, V4_LIST) == {V4_LIST[1]: "24 eth0:carp0"}
            def vips_in_state() -> list[str] | None:
                # In /run/pyucarp/netns-<inode>: the daemon runs outside the first namespace.
                for path in (a.run_dir / "pyucarp").rglob("eth0_carp0-42.json"):
                    try:
                        return list(json.loads(path.read_text())["vips"])
                    except (OSError, ValueError, KeyError):
                        return None
                return None

            assert wait_until(lambda: vips_in_state() is not None, 5)
            assert vips_in_state() == [V4_LIST[0]]  # the first address only: the HMAC's
            assert a.initd("stop", script=SEED_SCRIPT).rc == 0
            assert wait_until(lambda: a.daemons() == {}, 5)
            assert carried(a.host, V4_LIST) == {}
        finally:
            if a.daemons():
                a.initd("stop", script=SEED_SCRIPT)
