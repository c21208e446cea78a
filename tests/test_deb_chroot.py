"""The Debian package in a clean Debian root: it replaces the C ucarp in place, and back.

Marked ``chroot`` and deselected by default: ``sudo ./run deb-test`` builds the package
(``./run deb``) and runs these with ``PYUCARP_DEB`` naming it.

The root is made once with debootstrap (bookworm, minbase, plus procps and psmisc for
``ps`` and ``killall``) in ``CACHE/base``, with every package the tests install downloaded
into its apt cache, and reused by later runs (``PYUCARP_CHROOT_CACHE``, default
/var/tmp/pyucarp-deb/chroot; delete it to start afresh). Only making it touches the
network. Each test gets its own copy-on-write view of it on a lab host: a holder process,
pid 1 of a new pid and mount namespace inside the host's network namespace, mounts an
overlay of the base, then /proc, /sys and a /run inside it. So nothing is mounted in the
machine's own mount namespace, ``pidof``, ``ps -C`` and ``killall`` in the root see its
processes only, daemons run in the lab's namespace only, and when the holder ends
everything it held ends with it: processes, mounts, the view (its files are deleted).
Commands run as ``ip netns exec NS nsenter -t HOLDER --pid --mount chroot ROOT sh -c ...``.

The configuration is the one of the French ucarp page (tests/seed_init_script.sh is its
init script, verbatim): /etc/default/ucarp, /etc/ucarp/interface/ucarp0 (documentation
addresses), the hand-written /etc/init.d/ucarp.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from pyucarp.lab.daemons import start_node
from pyucarp.lab.netlab import Host, Lab, wait_until

# Not marked netns: `-m netns` must not pick these up. The lab fixture skips them where
# namespaces cannot be made.
pytestmark = [pytest.mark.chroot, pytest.mark.timeout(900)]

TESTS = Path(__file__).resolve().parent
SEED_SCRIPT = TESTS / "seed_init_script.sh"
CACHE = Path(os.environ.get("PYUCARP_CHROOT_CACHE", "/var/tmp/pyucarp-deb/chroot"))
DEB_DIR = Path("/var/tmp/pyucarp-deb/src")  # where ./run deb puts it
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = "procps,psmisc"
# Bump when the recipe of the cached root changes: an older cache is then made anew.
RECIPE = f"1 {SUITE} minbase {BASE_PACKAGES}"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SRCIP = "192.0.2.1"
PEER_IP = "192.0.2.2"
VIP = "192.0.2.100"
PASSWORD = "s3cret"
MASTER_DOWN = 3.0  # advbase 1 x deadratio 3: how long a backup waits for a silent master

# The page's /etc/default/ucarp, as published.
SEED_DEFAULTS = """\
# Location of the ucarp executable
UCARP_EXEC=/usr/sbin/ucarp
IFCONFIG=/sbin/ifconfig

#
# ucarp options
# -z run shudown script on exit
# -P force perferred master
#OPTIONS="-z -B"
OPTIONS="-z"
"""

# The page's /etc/ucarp/interface/ucarp0, with documentation addresses and a password.
SEED_INTERFACE = f"""\
#
# Location of the ucarp pid file
UCARP_PIDFILE=/var/run/ucarp0.pid

#
# ucarp base, lower number will be perfered master
# set to same to have master stay alive as long as possible
UCARP_BASE=1

#
# Interface for Ipaddress
INTERFACE=eth0:carp0

#
# Instance id
# any number from 1 to 255
# Master and Backup need to be the same
INSTANCE_ID=42

#
# Password so servers can trust who they are talking to
PASSWORD={PASSWORD}

#
# The Application Address that will failover
VIRTUAL_ADDRESS={VIP}
VIRTUAL_BROADCAST=192.0.2.255
VIRTUAL_NETMASK=255.255.255.0

#
# The Maintanence Address of the local machine
SOURCE_ADDRESS={SRCIP}
"""

# pid 1 of the root's pid and mount namespaces (run by this machine's Python, outside the
# root): mount the view, say "ready", reap orphans until stdin closes or the time limit,
# then kill what is left and unmount.
HOLDER = r"""
import os, select, signal, subprocess, sys, time
base, upper, work, root, limit = sys.argv[1:6]
mounts = []
def mount(*args):
    subprocess.run(["mount", *args], check=True)
    mounts.append(args[-1])
mount("-t", "overlay", "-o", f"lowerdir={base},upperdir={upper},workdir={work}", "overlay", root)
mount("-t", "proc", "proc", root + "/proc")
mount("-t", "sysfs", "-o", "ro", "sysfs", root + "/sys")
mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", root + "/run")
print("ready", flush=True)
deadline = time.monotonic() + float(limit)
while time.monotonic() < deadline:
    ready, _, _ = select.select([0], [], [], 0.2)
    if ready and not os.read(0, 4096):
        break
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
try:
    os.kill(-1, signal.SIGKILL)  # pid 1: every other process of this pid namespace
except ProcessLookupError:
    pass
end = time.monotonic() + 5
while time.monotonic() < end:
    try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
            time.sleep(0.05)
    except ChildProcessError:
        break
for point in reversed(mounts):
    subprocess.run(["umount", point])
"""


# --------------------------------------------------------------------------- the package


def package() -> Path:
    """The .deb under test: $PYUCARP_DEB, else the newest one ./run deb built."""
    named = os.environ.get("PYUCARP_DEB")
    if named:
        return Path(named)
    found = sorted(DEB_DIR.glob("pyucarp_*.deb"), key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.skip("no pyucarp .deb: run `sudo ./run deb` first (`sudo ./run deb-test` does both)")
    return found[-1]


# --------------------------------------------------------------------------- the cached root


def _run(argv: list[str], timeout: float, what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                           f"\n{proc.stderr[-3000:]}")


def _apt_download(base: Path, *targets: str) -> None:
    """Fill the base's apt cache with ``targets`` and what they need (nothing installed)."""
    _run(["chroot", str(base), "env", "-i", f"PATH={ROOT_PATH}", "DEBIAN_FRONTEND=noninteractive",
          "apt-get", "install", "--download-only", "-y", "-q", *targets], 600,
         f"apt-get --download-only {' '.join(targets)}")


def cached_base(deb: Path) -> Path:
    """The debootstrapped root, made on first use; its apt cache holds ucarp and the .deb's
    dependencies. Made and topped up under a lock: parallel runs share it read-only."""
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is missing (sudo ./run deb-test installs it)")
    CACHE.mkdir(parents=True, exist_ok=True)
    base = CACHE / "base"
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = base / ".pyucarp-recipe"
        if not marker.exists() or marker.read_text() != RECIPE:
            fresh = CACHE / "base.new"
            shutil.rmtree(fresh, ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)
            _run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
                  SUITE, str(fresh), MIRROR], 1200, "debootstrap")
            fresh.joinpath(".pyucarp-recipe").write_text(RECIPE)
            fresh.rename(base)
        # What the tests install, for a root that has no network: the C ucarp, then the
        # package's dependencies (two runs: the package conflicts with ucarp).
        _apt_download(base, "ucarp")
        staged = base / "tmp" / deb.name
        shutil.copyfile(deb, staged)
        try:
            _apt_download(base, f"/tmp/{deb.name}")
        finally:
            staged.unlink()
    return base


# --------------------------------------------------------------------------- a root on a host


class DebRoot:
    """A copy-on-write view of the cached root, live on ``host`` (see the module's docstring)."""

    def __init__(self, host: Host, base: Path, scratch: Path, limit_s: float = 900) -> None:
        self.host = host
        self.base = base
        self.scratch = scratch
        self.dir = scratch / "root"
        self.limit_s = limit_s
        self.holder: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    def __enter__(self) -> DebRoot:
        for name in ("upper", "work", "root"):
            (self.scratch / name).mkdir(parents=True)
        self.holder = self.host.popen(
            ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
             sys.executable, "-I", "-c", HOLDER, str(self.base), str(self.scratch / "upper"),
             str(self.scratch / "work"), str(self.dir), str(self.limit_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        assert self.holder is not None and self.holder.stdout is not None
        ready, _, _ = select.select([self.holder.stdout], [], [], timeout)
        line = self.holder.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            err = self.holder.stderr.read() if self.holder.poll() is not None and \
                self.holder.stderr else b""
            raise RuntimeError(f"the root's holder did not start: {line!r} {err!r}")
        children = Path(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children")
        self.pid1 = int(children.read_text().split()[0])

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.holder is not None:
            if self.holder.stdin is not None:
                self.holder.stdin.close()  # the holder kills the rest and unmounts
            try:
                self.holder.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.holder.kill()  # --kill-child: pid 1 dies, and with it the namespaces
                self.holder.wait(timeout=10)
        assert not _mounted_here(self.dir), f"{self.dir} is mounted in this namespace"
        shutil.rmtree(self.scratch, ignore_errors=True)

    # ---------------------------------------------------------------- running things

    def argv(self, script: str, env: dict[str, str] | None = None) -> list[str]:
        """Argv running ``sh -c script`` as root in the root, with a clean environment."""
        envs = [f"PATH={ROOT_PATH}", "HOME=/root", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive",
                *(f"{k}={v}" for k, v in (env or {}).items())]
        return ["ip", "netns", "exec", self.host.netns, "nsenter", "-t", str(self.pid1),
                "--pid", "--mount", "--", "chroot", str(self.dir), "env", "-i", *envs,
                "/bin/sh", "-c", script]

    def sh(self, script: str, check: bool = True, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``script`` to its end (stdin /dev/null: no one answers a prompt)."""
        proc = subprocess.run(self.argv(script, env), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"[{script}] exited {proc.returncode}:\n{proc.stdout}\n"
                                 f"{proc.stderr}")
        return proc

    def put(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write a file in the root."""
        raw = data.encode() if isinstance(data, str) else data
        subprocess.run(self.argv(f'mkdir -p "$(dirname {path})" && cat > {path} && '
                                 f'chmod {mode:o} {path}'),
                       input=raw, check=True, capture_output=True, timeout=60)

    def md5(self, *paths: str) -> dict[str, str]:
        """md5sum and mode of each file (missing ones left out)."""
        out = self.sh(f"for f in {' '.join(paths)}; do [ -e $f ] && "
                      "echo $f $(md5sum < $f | cut -c1-32) $(stat -c %a $f); done",
                      check=False).stdout
        return {line.split(" ", 1)[0]: line.split(" ", 1)[1]
                for line in out.splitlines() if line.strip()}

    def exists(self, path: str) -> bool:
        return self.sh(f"test -e {path}", check=False).returncode == 0

    def pidof(self, name: str = "ucarp") -> list[int]:
        """``pidof NAME`` in the root (its pid namespace: the root's processes only)."""
        return [int(p) for p in self.sh(f"pidof {name}", check=False).stdout.split()]

    def exe(self, pid: int) -> str:
        return self.sh(f"readlink /proc/{pid}/exe", check=False).stdout.strip()

    def apt(self, args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """apt-get as an unattended upgrade runs it: -y, no terminal, no dpkg --force-conf*."""
        return self.sh(f"apt-get -q -y -o Acquire::Retries=0 {args}", check=False,
                       timeout=timeout)

    def initd(self, action: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.sh(f"/etc/init.d/ucarp {action}", check=False, timeout=timeout)


def _mounted_here(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as info:
        return any(line.split()[4] == target for line in info)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base() -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("unshare", "nsenter", "chroot"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing")
    return cached_base(package())


@pytest.fixture
def deb_root(lab: Lab, base: Path, tmp_path: Path) -> Iterator[DebRoot]:
    """A fresh root on lab host ``deb`` (192.0.2.1/24) with the C ucarp installed from apt
    and the page's configuration: its defaults, interface file and init script."""
    host = lab.add_host("deb", f"{SRCIP}/24")
    with DebRoot(host, base, tmp_path / "root") as root:
        allow_init_actions(root)
        res = root.apt("install --no-install-recommends ucarp")
        assert res.returncode == 0, res.stdout + res.stderr
        root.sh("mkdir -p /etc/ucarp/interface")  # as the page says
        root.put("/etc/default/ucarp", SEED_DEFAULTS)
        root.put("/etc/ucarp/interface/ucarp0", SEED_INTERFACE)
        root.put("/etc/init.d/ucarp", SEED_SCRIPT.read_bytes(), mode=0o744)
        yield root


def allow_init_actions(root: DebRoot) -> None:
    """The root runs no init system, so invoke-rc.d would do nothing. A policy-rc.d that
    allows every action stands in for one: the package's scripts act as on a booted host."""
    root.put("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 0\n", mode=0o755)


def install_package(root: DebRoot, running: list[int] | None = None
                    ) -> subprocess.CompletedProcess[str]:
    """Install the .deb as an unattended upgrade would: apt-get -y, stdin closed. It starts
    and stops nothing: the daemons ``running`` before are the ones running after."""
    deb = package()
    root.put(f"/tmp/{deb.name}", deb.read_bytes())
    res = root.apt(f"install --no-install-recommends /tmp/{deb.name}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert root.pidof() == (running or []), "installing starts and stops nothing"
    return res


def one_daemon_after_two_starts(root: DebRoot, exe: str) -> int:
    """Run `start` twice, the second once the first daemon runs: one daemon must be left."""
    res = root.initd("start")
    assert res.returncode == 0, res.stdout + res.stderr
    assert wait_until(lambda: len(root.pidof()) == 1 and root.exe(root.pidof()[0]) == exe, 10), \
        (root.pidof(), root.sh("ps -ef", check=False).stdout)
    (first,) = root.pidof()
    res = root.initd("start")
    assert res.returncode == 0, res.stdout + res.stderr
    time.sleep(2)  # a second daemon would be up by now
    assert root.pidof() == [first], root.sh("ps -ef", check=False).stdout
    return first


# --------------------------------------------------------------------------- the tests


def test_package_replaces_the_c_ucarp_and_the_seed_setup_keeps_working(deb_root: DebRoot) -> None:
    root = deb_root
    # The C ucarp with the page's script: a second start finds the first daemon.
    c_pid = one_daemon_after_two_starts(root, "/usr/sbin/ucarp")
    config = ["/etc/default/ucarp", "/etc/ucarp/interface/ucarp0", "/etc/init.d/ucarp"]
    before = root.md5(*config)
    assert len(before) == 3

    res = install_package(root, running=[c_pid])
    out = res.stdout + res.stderr
    # The C daemon was left running (its program is gone), and the admin is told.
    assert root.pidof() == [c_pid] and root.exe(c_pid) == "/usr/sbin/ucarp (deleted)"
    assert "1 ucarp daemon(s) still run the replaced program" in out, out
    res = root.initd("stop")
    assert res.returncode == 0 and wait_until(lambda: not root.pidof(), 10), res.stdout
    assert "Configuration file" not in out and "conffile prompt" not in out, out
    assert "Removing ucarp" in out, out
    assert "pyucarp: kept your /etc/init.d/ucarp" in out, out
    assert "pyucarp: kept your /etc/default/ucarp" in out, out
    status = root.sh("dpkg-query -W -f='${Package} ${Status}\\n' ucarp pyucarp",
                     check=False).stdout
    assert "pyucarp install ok installed" in status and "ucarp install ok" not in \
        status.replace("pyucarp install ok", ""), status
    # The admin's files are untouched and in use; the package's versions lie beside them.
    assert root.md5(*config) == before
    assert root.exists("/etc/init.d/ucarp.dpkg-dist")
    assert root.exists("/etc/default/ucarp.dpkg-dist")
    assert root.sh("stat -c %a /etc/init.d/ucarp").stdout.strip() == "744"
    # Registered for boot, and /usr/sbin/ucarp is the native launcher.
    assert root.sh("ls /etc/rc2.d/ | grep -c 'S..ucarp'", check=False).stdout.strip() == "1"
    assert root.sh("head -c 4 /usr/sbin/ucarp").stdout == "\x7fELF"
    assert root.sh("/usr/sbin/ucarp --help | head -n 1").stdout.startswith("pyucarp ")
    assert root.sh("man -w ucarp 2>/dev/null || ls /usr/share/man/man8/ucarp.8.gz",
                   check=False).returncode == 0

    # The page's script, verbatim, now with pyucarp: still one daemon after two starts,
    # and the usual tools find it by name.
    pid = one_daemon_after_two_starts(root, "/usr/sbin/ucarp")
    assert root.sh("ps -C ucarp -o pid=").stdout.split() == [str(pid)]
    assert root.sh("killall -0 ucarp", check=False).returncode == 0
    cmdline = root.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    assert cmdline.startswith("/usr/sbin/ucarp ") and PASSWORD not in cmdline, cmdline
    assert root.sh("cat /var/run/ucarp0.pid").stdout.strip() == str(pid)
    # (Not `restart`: the page's stop does not wait for the daemon to exit, and the start
    # right behind it finds the old one still there; see docs/init.md.)
    res = root.initd("stop")
    assert res.returncode == 0 and wait_until(lambda: not root.pidof(), 10), res.stdout
    one_daemon_after_two_starts(root, "/usr/sbin/ucarp")
    res = root.initd("stop")
    assert res.returncode == 0 and wait_until(lambda: not root.pidof(), 10), res.stdout


def test_packaged_init_script_with_the_seed_configuration(deb_root: DebRoot) -> None:
    root = deb_root
    install_package(root)
    old = one_daemon_after_two_starts(root, "/usr/sbin/ucarp")  # by the page's script
    # Switching scripts as README.Debian says; restart takes over the old script's daemon.
    root.sh("mv /etc/init.d/ucarp /etc/ucarp/ucarp.init.orig && "
            "mv /etc/init.d/ucarp.dpkg-dist /etc/init.d/ucarp")
    res = root.initd("restart")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(root.pidof()) == 1 and root.pidof() != [old]
    res = root.initd("stop")
    assert res.returncode == 0 and wait_until(lambda: not root.pidof(), 5), res.stdout
    assert not root.host.has_address(VIP)  # the page's script had put it up by ifconfig
    res = root.initd("status")
    assert res.returncode == 3 and "ucarp0: stopped" in res.stdout, res.stdout + res.stderr
    res = root.initd("start")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(root.pidof()) == 1
    (pid,) = root.pidof()
    assert root.exe(pid) == "/usr/sbin/ucarp"
    assert root.sh("cat /var/run/ucarp0.pid").stdout.strip() == str(pid)
    # Alone on its segment, it becomes master and puts the address on eth0:carp0.
    assert wait_until(lambda: "MASTER" in root.initd("status").stdout, MASTER_DOWN + 5), \
        root.initd("status").stdout
    res = root.initd("status")
    assert res.returncode == 0 and f"ucarp0: running (pid {pid}" in res.stdout, res.stdout
    assert wait_until(lambda: root.host.has_address(VIP), 5)
    res = root.initd("start")
    assert res.returncode == 0 and root.pidof() == [pid], res.stdout + res.stderr
    res = root.initd("restart")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(root.pidof()) == 1 and root.pidof() != [pid]
    res = root.initd("stop")
    assert res.returncode == 0 and wait_until(lambda: not root.pidof(), 5), res.stdout + res.stderr
    assert not root.host.has_address(VIP)
    res = root.initd("status")
    assert res.returncode == 3, res.stdout


def test_removing_it_and_installing_ucarp_gives_the_original_back(deb_root: DebRoot) -> None:
    root = deb_root
    files = ["/usr/sbin/ucarp", "/etc/network/if-up.d/ucarp", "/etc/init.d/ucarp",
             "/etc/default/ucarp", "/etc/ucarp/interface/ucarp0"]
    before = root.md5(*files)
    assert len(before) == len(files)
    install_package(root)
    assert root.md5("/usr/sbin/ucarp") != {"/usr/sbin/ucarp": before["/usr/sbin/ucarp"]}
    assert root.md5("/etc/network/if-up.d/ucarp") != {
        "/etc/network/if-up.d/ucarp": before["/etc/network/if-up.d/ucarp"]}  # taken over
    # The admin switches to the packaged script and runs it.
    root.sh("mv /etc/init.d/ucarp /etc/ucarp/ucarp.init.orig && "
            "mv /etc/init.d/ucarp.dpkg-dist /etc/init.d/ucarp")
    assert root.initd("start").returncode == 0 and len(root.pidof()) == 1

    res = root.apt("remove pyucarp")
    assert res.returncode == 0, res.stdout + res.stderr
    assert wait_until(lambda: not root.pidof(), 5), "removal must stop the daemons"
    assert "put /etc/ucarp/ucarp.init.orig back as /etc/init.d/ucarp" in res.stderr + res.stdout
    res = root.apt("install --no-install-recommends ucarp")
    assert res.returncode == 0, res.stdout + res.stderr
    assert root.md5(*files) == before, "the C ucarp, its hook and the admin's files"
    one_daemon_after_two_starts(root, "/usr/sbin/ucarp")  # the C one, with the page's script
    assert root.initd("stop").returncode == 0 and wait_until(lambda: not root.pidof(), 10)

    # Purging pyucarp deletes its conffiles, and gives the admin's ones back.
    res = root.apt("purge pyucarp")
    assert res.returncode == 0, res.stdout + res.stderr
    assert root.md5(*files) == before, res.stdout + res.stderr
    assert not root.exists("/var/lib/pyucarp")


def test_purge_gives_back_the_files_it_kept(deb_root: DebRoot) -> None:
    root = deb_root
    # An up script of the admin's own, as ucarp's examples suggest, and a pip-era default.
    root.put("/etc/ucarp/vip-up.sh", "#!/bin/sh\nexec ip address add \"$2\"/32 dev \"$1\"\n",
             mode=0o750)
    root.sh("echo UCARP_EXEC=/usr/local/bin/ucarp >> /etc/default/ucarp")
    files = ["/etc/init.d/ucarp", "/etc/default/ucarp", "/etc/ucarp/interface/ucarp0",
             "/etc/ucarp/vip-up.sh"]
    before = root.md5(*files)
    out = install_package(root)
    assert "kept your /etc/ucarp/vip-up.sh" in out.stderr + out.stdout
    assert "sets UCARP_EXEC=/usr/local/bin/ucarp" in out.stderr + out.stdout
    assert root.md5(*files) == before
    assert root.exists("/etc/ucarp/vip-up.sh.dpkg-dist") and root.exists("/etc/ucarp/vip-down.sh")
    res = root.apt("purge pyucarp")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "restored your /etc/init.d/ucarp" in res.stdout + res.stderr
    assert root.md5(*files) == before
    assert not root.exists("/etc/ucarp/vip-down.sh")  # the package's own: purged
    assert not root.exists("/etc/init.d/ucarp.dpkg-dist")
    assert not root.exists("/usr/sbin/ucarp")


def newer_package(deb: Path, workdir: Path, tag: str) -> Path:
    """The package as version VERSION+TAG, its init script changed (a last line "# TAG"):
    the upgrade an admin who kept their own script meets sooner or later."""
    tree = workdir / tag
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True, timeout=60)
    control = tree / "DEBIAN" / "control"
    text = control.read_text()
    version = re.search(r"^Version: (.+)$", text, re.M)
    assert version is not None
    control.write_text(text.replace(version.group(0), f"Version: {version.group(1)}+{tag}"))
    for script in (tree / "etc/init.d/ucarp",
                   tree / "usr/share/pyucarp/conffiles/etc/init.d/ucarp"):
        script.write_text(script.read_text() + f"# {tag}\n")
    out = workdir / f"pyucarp_{tag}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)],
                   check=True, capture_output=True, timeout=120)
    return out


def test_later_versions_keep_the_admins_files_without_a_prompt(deb_root: DebRoot,
                                                                tmp_path: Path) -> None:
    """Upgrades, and an install after a removal, with a changed init script: the kept
    files stay, with no prompt, and the new version lies beside them."""
    root = deb_root
    files = ["/etc/init.d/ucarp", "/etc/default/ucarp"]
    before = root.md5(*files)
    install_package(root)

    def install(tag: str, reinstall: bool = False) -> str:
        root.put(f"/tmp/{tag}.deb", newer_package(package(), tmp_path, tag).read_bytes())
        res = root.apt(f"install {'--reinstall ' if reinstall else ''}"
                       f"--no-install-recommends /tmp/{tag}.deb")
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        assert "Configuration file" not in out and "conffile prompt" not in out, out
        assert f"+{tag}" in root.sh("dpkg-query -W -f='${Version}' pyucarp").stdout
        return out

    install("up1")  # an upgrade
    assert root.md5(*files) == before
    assert root.sh("tail -n 1 /etc/init.d/ucarp.dpkg-dist").stdout == "# up1\n"
    assert root.apt("remove pyucarp").returncode == 0
    install("up2")  # an install after a removal
    assert root.md5(*files) == before
    assert root.sh("tail -n 1 /etc/init.d/ucarp.dpkg-dist").stdout == "# up2\n"
    # Once the admin has switched, the package's script is upgraded as any conffile.
    root.sh("mv /etc/init.d/ucarp /etc/ucarp/ucarp.init.orig && "
            "mv /etc/init.d/ucarp.dpkg-dist /etc/init.d/ucarp")
    out = install("up3")
    assert "kept your /etc/init.d/ucarp" not in out
    assert root.sh("tail -n 1 /etc/init.d/ucarp").stdout == "# up3\n"


def test_ifupdown_hooks_start_one_daemon_and_stop_it(deb_root: DebRoot) -> None:
    root = deb_root
    install_package(root)
    env = {"IFACE": "eth0", "IF_ADDRESS": f"{SRCIP}/24", "MODE": "start", "PHASE": "post-up",
           "IF_UCARP_VID": "9", "IF_UCARP_VIP": "192.0.2.109", "IF_UCARP_PASSWORD": PASSWORD,
           "IF_UCARP_ADVSKEW": "10", "IF_UCARP_UPSCRIPT": "/etc/ucarp/vip-up.sh",
           "IF_UCARP_DOWNSCRIPT": "/etc/ucarp/vip-down.sh"}
    for _ in range(2):
        res = root.sh("/etc/network/if-up.d/ucarp", env=env, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        assert wait_until(lambda: len(root.pidof()) == 1, 10)
    (pid,) = root.pidof()
    cmdline = root.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    assert " -s 192.0.2.1 " in cmdline and " -k 10" in cmdline and PASSWORD not in cmdline
    assert root.sh("cat /run/ucarp/ifupdown-eth0.pid").stdout.strip() == str(pid)
    assert wait_until(lambda: root.host.has_address("192.0.2.109"), MASTER_DOWN + 5)
    res = root.sh("/etc/network/if-down.d/ucarp", env={**env, "MODE": "stop",
                                                       "PHASE": "pre-down"}, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert wait_until(lambda: not root.pidof(), 5)
    assert not root.host.has_address("192.0.2.109")


def test_packaged_pyucarp_and_c_ucarp_fail_over_both_ways(lab: Lab, base: Path,
                                                           tmp_path: Path) -> None:
    """Host ``deb`` runs the packaged pyucarp (its init script) from the root, host ``peer``
    runs this machine's C ucarp: one master at a time, the address moving each way."""
    if not os.access("/usr/sbin/ucarp", os.X_OK):
        pytest.skip("the C ucarp is not installed on this machine")
    host = lab.add_host("deb", f"{SRCIP}/24")
    peer = lab.add_host("peer", f"{PEER_IP}/24")
    with DebRoot(host, base, tmp_path / "root") as root:
        allow_init_actions(root)
        assert root.apt("install --no-install-recommends ucarp").returncode == 0
        install_package(root)  # no init script of the admin's: the package's is installed
        assert root.sh("/etc/init.d/ucarp status", check=False).returncode == 3
        root.put("/etc/ucarp/interface/vip", f"INTERFACE=eth0\nINSTANCE_ID=7\n"
                 f"PASSWORD={PASSWORD}\nVIRTUAL_ADDRESS={VIP}\nSOURCE_ADDRESS={SRCIP}\n",
                 mode=0o600)
        res = root.initd("start")
        assert res.returncode == 0, res.stdout + res.stderr
        assert wait_until(lambda: host.has_address(VIP), MASTER_DOWN + 5)

        c = start_node(peer, tmp_path / "c", impl="c", vhid=7, vip=VIP, password=PASSWORD,
                       advskew=20, shutdown=True)

        def holders() -> list[str]:
            return [h.name for h in (host, peer) if h.has_address(VIP)]

        def settled(expected: str) -> bool:
            """Only ``expected`` holds the address, for two advertisement intervals."""
            if holders() != [expected]:
                return False
            time.sleep(2)
            return holders() == [expected]

        assert c.wait_state("BACKUP", 10), c.log()
        assert settled("deb"), (holders(), c.log())
        assert "MASTER" in root.initd("status").stdout

        # pyucarp -> C: the packaged script stops the master; it hands the address over.
        t0 = time.monotonic()
        assert root.initd("stop").returncode == 0
        assert wait_until(lambda: holders() == ["peer"], MASTER_DOWN + 2), (holders(), c.log())
        handover = time.monotonic() - t0
        assert c.state() == "MASTER"
        # Back as backup: the C ucarp keeps the address (no preemption).
        assert root.initd("start").returncode == 0
        assert wait_until(lambda: "BACKUP" in root.initd("status").stdout, 10)
        assert settled("peer"), (holders(), c.log())

        # C -> pyucarp: the C node loses its link; the packaged pyucarp takes over.
        peer.link_down()
        assert wait_until(lambda: host.has_address(VIP), MASTER_DOWN + 3), c.log()
        assert "MASTER" in root.initd("status").stdout
        peer.link_up()
        assert wait_until(lambda: holders() == ["deb"], 15), (holders(), c.log())
        assert settled("deb"), (holders(), c.log())
        assert "Bad digest" not in c.log()
        assert root.initd("stop").returncode == 0
        c.stop()
        print(f"hand-over pyucarp -> C ucarp at stop: {handover:.2f} s")

