"""pyucarp.shell.pidfile: which pids are live daemons, and the --pidfile life cycle."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyucarp.errors import ConfigError
from pyucarp.ops import admin
from pyucarp.shell import pidfile
from pyucarp.shell.pidfile import PidFile, daemon_alive, pid_alive
from pyucarp.shell.statefile import InstanceStatus, StateFile

SLEEPER = "import time; time.sleep(60)"


def _sleeping(name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A process asleep with ``name`` on its command line, for the fixture's lifetime."""
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, name])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A running process whose command line names ucarp (as a daemon's does)."""
    yield from _sleeping("ucarp")


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A running process that is not a ucarp: a reused pid looks like this."""
    yield from _sleeping("something-else")


def _ended_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _no_proc(tmp_path: Path) -> str:
    return str(tmp_path / "no-procfs")


def test_live_daemon_dead_pid_and_stranger(
    sleeper: subprocess.Popen[bytes], stranger: subprocess.Popen[bytes]
) -> None:
    assert daemon_alive(sleeper.pid)
    assert not daemon_alive(stranger.pid)
    assert not daemon_alive(_ended_pid())
    for pid in (0, -1):
        assert not daemon_alive(pid)


def test_pid_alive_is_any_running_process(stranger: subprocess.Popen[bytes]) -> None:
    assert pid_alive(stranger.pid) and pid_alive(os.getpid())
    assert not pid_alive(_ended_pid())
    for pid in (0, -1):
        assert not pid_alive(pid)


def test_zombie_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass", "ucarp"])
    stat = Path(f"/proc/{proc.pid}/stat")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stat.read_bytes().rsplit(b")", 1)[-1].split()[0] != b"Z":
        time.sleep(0.01)
    try:
        assert not daemon_alive(proc.pid)
        assert not pid_alive(proc.pid)
    finally:
        proc.wait()


def test_without_procfs_existence_decides(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], stranger: subprocess.Popen[bytes]
) -> None:
    proc = _no_proc(tmp_path)
    # Nothing tells a daemon from a stranger: a pid that exists may be a daemon.
    assert daemon_alive(sleeper.pid, proc)
    assert daemon_alive(stranger.pid, proc)
    assert not daemon_alive(_ended_pid(), proc)
    assert not daemon_alive(0, proc)


def test_status_and_pid_file_judge_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stranger: subprocess.Popen[bytes]
) -> None:
    assert admin.daemon_alive is pidfile.daemon_alive
    without_proc = functools.partial(daemon_alive, proc=_no_proc(tmp_path))
    statedir = tmp_path / "state"
    statedir.mkdir()
    StateFile(str(statedir / "eth0-1.json")).write(InstanceStatus(
        pid=stranger.pid, name="eth0-1", interface="eth0", vhid=1, vip="192.0.2.100",
        srcip="192.0.2.1", advbase=1, advskew=0, state="BACKUP", since=0.0,
        updated=time.time(), transitions=1, master=None, maintenance=False, link_up=True,
        adverts_sent=0, adverts_received=0, send_errors=0, dropped={}, replay_window=0,
        last_script=None,
    ))
    path = tmp_path / "ucarp.pid"
    path.write_text(f"{stranger.pid}\n")

    instance = admin.load(str(statedir), "eth0-1")
    assert instance is not None and not instance.running
    assert PidFile(str(path)).check_free() and not path.exists()  # stale: replaced

    path.write_text(f"{stranger.pid}\n")
    instance = admin.load(str(statedir), "eth0-1", without_proc)
    assert instance is not None and instance.running
    monkeypatch.setattr(pidfile, "daemon_alive", without_proc)
    with pytest.raises(ConfigError, match=f"Already running with pid {stranger.pid}"):
        PidFile(str(path)).check_free()
    assert path.exists()


def test_pid_file_life_cycle(tmp_path: Path) -> None:
    path = tmp_path / "ucarp.pid"
    pid_file = PidFile(str(path))
    assert not pid_file.check_free()  # nothing there
    pid_file.check_writable()
    pid_file.write()
    assert path.read_text() == f"{os.getpid()}\n" and pid_file.read() == os.getpid()
    assert PidFile(str(path)).check_free()  # our own pid is not another daemon
    pid_file.write()
    path.write_text("12345678\n")  # replaced by a newer daemon: not ours to remove
    pid_file.remove()
    assert path.exists()
    pid_file.write()
    pid_file.remove()
    assert not path.exists()
    with pytest.raises(ConfigError, match="Is a directory"):
        PidFile(str(tmp_path)).check_writable()
