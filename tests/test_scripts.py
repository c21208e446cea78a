"""pyucarp.shell.scripts: ucarp's script interface, run one at a time without blocking."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pyucarp.lab.netlab import wait_until
from pyucarp.shell.checks import CheckResult, CheckRunner
from pyucarp.shell.logs import Level, UcarpLog
from pyucarp.shell.pidfile import pid_alive
from pyucarp.shell.scripts import ScriptResult, ScriptRunner, child_env

UCARP = "/usr/sbin/ucarp"
VIP = "192.0.2.100"


class Recorder(UcarpLog):
    """A UcarpLog that keeps its lines in memory."""

    def __init__(self) -> None:
        self.lines: list[tuple[Level, str]] = []
        super().__init__(console=False, syslog_enabled=False, debug=True)

    def log(self, level: Level, message: str) -> None:
        self.lines.append((level, message))

    def at(self, level: Level) -> list[str]:
        return [m for lv, m in self.lines if lv is level]


def make_script(path: Path, body: str, mode: int = 0o755) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


def run_loop(runner: ScriptRunner, limit: float = 5.0) -> list[ScriptResult]:
    """A miniature of the daemon's loop: select on the pidfd, honour the deadline."""
    results: list[ScriptResult] = []
    end = time.monotonic() + limit
    results.extend(runner.handle(time.monotonic()))
    while runner.running() or runner.pending():
        now = time.monotonic()
        assert now < end, "scripts did not finish in time"
        fd = runner.fileno()
        due = runner.next_deadline()
        wait = end - now if due is None else max(0.0, min(due, end) - now)
        select.select([fd] if fd is not None else [], [], [], wait)
        results.extend(runner.handle(time.monotonic()))
    return results


def gone_soon(pid: int) -> bool:
    """Whether ``pid`` stops running (ends, or is a zombie) within 2 s."""
    return wait_until(lambda: not pid_alive(pid), 2.0)


def test_argv_exactly_and_spawning_line(tmp_path: Path) -> None:
    out = tmp_path / "argv"
    script = make_script(tmp_path / "up", f'printf "%s\\n" "$0" "$@" > {out}\n')
    log = Recorder()
    runner = ScriptRunner(log)
    runner.submit("up", [script, "eth0:carp0", VIP, "x param"], time.monotonic())
    [res] = run_loop(runner)
    assert out.read_text().splitlines() == [script, "eth0:carp0", VIP, "x param"]
    assert res.ok and res.returncode == 0 and res.argv == (script, "eth0:carp0", VIP, "x param")
    # Byte for byte what ucarp logs (its "Spawning [%s %s %s%s%s]").
    assert log.at(Level.WARNING) == [f"Spawning [{script} eth0:carp0 {VIP} x param]"]


def test_no_xparam_means_no_fourth_argument(tmp_path: Path) -> None:
    out = tmp_path / "argv"
    script = make_script(tmp_path / "down", f'echo $# > {out}\n')
    log = Recorder()
    runner = ScriptRunner(log)
    runner.submit("down", [script, "eth0", VIP, None], time.monotonic())
    run_loop(runner)
    assert out.read_text().strip() == "2"  # interface and vip after the script
    assert log.at(Level.WARNING) == [f"Spawning [{script} eth0 {VIP}]"]


def test_environment_inherited_stdin_devnull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "env"
    monkeypatch.setenv("PYUCARP_TEST_VAR", "hello")
    # cat would hang on a terminal or an inherited pipe; /dev/null gives EOF at once.
    script = make_script(tmp_path / "s", f'cat > {out}.stdin; echo "$PYUCARP_TEST_VAR" > {out}\n')
    runner = ScriptRunner(Recorder(), timeout=2.0)
    runner.submit("up", [script, "eth0", VIP], time.monotonic())
    [res] = run_loop(runner)
    assert not res.timed_out
    assert out.read_text().strip() == "hello"
    assert Path(f"{out}.stdin").read_text() == ""


def run_check(checks: CheckRunner, limit: float = 5.0) -> CheckResult:
    """Start the (one) due check and wait for its result; no more runs after it."""
    end = time.monotonic() + limit
    try:
        while True:
            results = checks.handle(time.monotonic())
            if results:
                return results[0]
            assert time.monotonic() < end, "the check did not finish in time"
            time.sleep(0.01)
    finally:
        checks.stop()


SHOW_VARS = 'echo "$PYUCARP_TEST_VAR $PYUCARP_TEST_KEPT $PYUCARP_TEST_NEW"'


@pytest.mark.parametrize("extra", [None, {"PYUCARP_TEST_VAR": "instance",
                                          "PYUCARP_TEST_NEW": "new"}],
                         ids=["daemon-only", "with-extras"])
def test_scripts_and_checks_get_one_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str] | None
) -> None:
    """An instance's extra variables (``pyucarp run``'s, per interface file) reach its
    scripts and its checks alike, on top of the daemon's environment, and win over it."""
    monkeypatch.setenv("PYUCARP_TEST_VAR", "daemon")
    monkeypatch.setenv("PYUCARP_TEST_KEPT", "kept")
    monkeypatch.delenv("PYUCARP_TEST_NEW", raising=False)
    out = tmp_path / "env"
    script = make_script(tmp_path / "s", f"{SHOW_VARS} > {out}\n")
    runner = ScriptRunner(Recorder(), timeout=2.0, env=extra)
    checks = CheckRunner([SHOW_VARS], interval=60.0, timeout=2.0, env=extra)
    runner.submit("up", [script, "eth0", VIP], time.monotonic())
    [res] = run_loop(runner)
    check = run_check(checks)
    expected = "instance kept new" if extra else "daemon kept "
    assert res.ok and out.read_text().rstrip("\n") == expected
    assert check.ok and check.output == expected.strip()


def test_child_env_adds_the_extras_to_the_daemons() -> None:
    assert child_env() is os.environ and child_env({}) is os.environ
    env = child_env({"PYUCARP_TEST_NEW": "new"})
    assert env == {**os.environ, "PYUCARP_TEST_NEW": "new"} and env is not os.environ


def test_order_preserved_one_at_a_time(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    lock = tmp_path / "lock"
    # The lock file detects overlap: a second script finding it present records it.
    script = make_script(
        tmp_path / "s",
        f'[ -e {lock} ] && echo OVERLAP >> {journal}\n'
        f': > {lock}\n'
        f'echo "start $3" >> {journal}\n'
        'sleep 0.05\n'
        f'echo "end $3" >> {journal}\n'
        f'rm -f {lock}\n',
    )
    runner = ScriptRunner(Recorder())
    now = time.monotonic()
    kinds = ["down", "up", "down", "up", "down", "up"]
    for i, kind in enumerate(kinds):
        runner.submit(kind, [script, "eth0", VIP, str(i)], now)
    assert runner.running() and runner.pending() == len(kinds) - 1
    results = run_loop(runner)
    expected = []
    for i in range(len(kinds)):
        expected += [f"start {i}", f"end {i}"]
    assert journal.read_text().splitlines() == expected  # no OVERLAP, no reordering
    assert [r.kind for r in results] == kinds
    assert [r.argv[3] for r in results] == [str(i) for i in range(len(kinds))]
    assert not runner.running() and runner.pending() == 0 and runner.fileno() is None


def test_fileno_is_a_pidfd_readable_at_exit(tmp_path: Path) -> None:
    script = make_script(tmp_path / "s", "sleep 0.2\n")
    runner = ScriptRunner(Recorder(), timeout=3.0)
    start = time.monotonic()
    runner.submit("up", [script, "eth0", VIP], start)
    fd = runner.fileno()
    assert fd is not None
    assert runner.next_deadline() == pytest.approx(start + 3.0)
    assert select.select([fd], [], [], 0)[0] == []  # still running
    assert runner.handle(time.monotonic()) == []
    assert select.select([fd], [], [], 2.0)[0] == [fd]
    [res] = runner.handle(time.monotonic())
    assert res.ok and 0.15 < res.duration < 2.0
    assert runner.fileno() is None and runner.next_deadline() is None


def test_back_to_back_scripts_get_a_new_descriptor(tmp_path: Path) -> None:
    script = make_script(tmp_path / "s", "sleep 0.05\n")
    runner = ScriptRunner(Recorder())
    runner.submit("up", [script, "eth0", VIP], time.monotonic())
    runner.submit("down", [script, "eth0", VIP], time.monotonic())
    first = runner.fileno()
    assert first is not None
    select.select([first], [], [], 2.0)
    assert len(runner.handle(time.monotonic())) == 1
    second = runner.fileno()
    # A loop that compares numbers sees the change and re-registers.
    assert second is not None and second != first
    run_loop(runner)


def test_exit_status_logged(tmp_path: Path) -> None:
    script = make_script(tmp_path / "s", "exit 3\n")
    log = Recorder()
    runner = ScriptRunner(log)
    runner.submit("down", [script, "eth0", VIP], time.monotonic())
    [res] = run_loop(runner)
    assert res.returncode == 3 and res.signal is None and not res.ok and not res.timed_out
    assert f"Script [{script} eth0 {VIP}] exited with status 3" in log.at(Level.WARNING)


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    script = make_script(tmp_path / "hang", f'sleep 10 &\necho $! > {child_pid}\nwait\n')
    log = Recorder()
    runner = ScriptRunner(log, timeout=0.5, kill_grace=1.0)
    start = time.monotonic()
    runner.submit("up", [script, "eth0", VIP], start)
    [res] = run_loop(runner)
    assert res.timed_out and res.returncode is None and res.signal == signal.SIGTERM
    assert 0.4 < res.duration < 1.4
    assert any("timed out after 0.5 s" in m for m in log.at(Level.ERROR))
    assert gone_soon(int(child_pid.read_text())), "the script's child survived"


def test_sigterm_ignored_then_sigkill(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    # Ignored signals stay ignored across exec: both the shell and its sleep ignore TERM.
    script = make_script(
        tmp_path / "stubborn", f"trap '' TERM\nsleep 10 &\necho $! > {child_pid}\nwait\n"
    )
    log = Recorder()
    runner = ScriptRunner(log, timeout=0.3, kill_grace=0.3)
    runner.submit("up", [script, "eth0", VIP], time.monotonic())
    [res] = run_loop(runner)
    assert res.timed_out and res.signal == signal.SIGKILL
    assert 0.5 < res.duration < 1.5
    assert any("sending SIGKILL" in m for m in log.at(Level.ERROR))
    assert gone_soon(int(child_pid.read_text()))


@pytest.mark.parametrize(
    "case, reason",
    [
        ("missing", "No such file or directory"),
        ("noexec", "Permission denied"),
        ("noshebang", "Exec format error"),
    ],
)
def test_unrunnable_script_logged_not_raised(tmp_path: Path, case: str, reason: str) -> None:
    path = tmp_path / case
    if case == "noexec":
        # No x bit at all: refused even to root.
        make_script(path, "exit 0\n", mode=0o644)
    elif case == "noshebang":
        path.write_text("echo no interpreter line\n")
        path.chmod(0o755)
    marker = tmp_path / "after"
    after = make_script(tmp_path / "after.sh", f": > {marker}\n")
    log = Recorder()
    runner = ScriptRunner(log)
    now = time.monotonic()
    runner.submit("up", [str(path), "eth0", VIP, "xp"], now)  # must not raise
    runner.submit("down", [after, "eth0", VIP], now)
    results = run_loop(runner)
    bad, good = results
    assert bad.returncode is None and bad.error == reason and bad.duration == 0.0
    assert f"Unable to exec {path} eth0 {VIP} xp: {reason}" in log.at(Level.ERROR)
    assert good.ok and marker.exists()  # the queue went on


def test_failure_reported_through_deadline_when_idle(tmp_path: Path) -> None:
    runner = ScriptRunner(Recorder())
    now = time.monotonic()
    runner.submit("up", [str(tmp_path / "missing"), "eth0", VIP], now)
    assert not runner.running() and runner.fileno() is None
    # The loop learns about the failure from the deadline.
    assert runner.next_deadline() == now
    [res] = runner.handle(now)
    assert res.error == "No such file or directory"
    assert runner.next_deadline() is None


def test_name_without_slash_is_not_searched_in_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ucarp uses execl(): "-u true" means ./true, not /bin/true.
    monkeypatch.chdir(tmp_path)
    runner = ScriptRunner(Recorder())
    runner.submit("up", ["true", "eth0", VIP], time.monotonic())
    [res] = run_loop(runner)
    assert res.error == "No such file or directory"


def test_descriptors_left_open_by_our_caller_are_not_inherited(tmp_path: Path) -> None:
    out = tmp_path / "fds"
    read_end, write_end = os.pipe()
    try:
        os.set_inheritable(write_end, True)  # as a careless parent of the daemon may leave it
        script = make_script(
            tmp_path / "s",
            f'[ -e /proc/$$/fd/{write_end} ] && echo open > {out} || echo closed > {out}\n',
        )
        runner = ScriptRunner(Recorder())
        runner.submit("up", [script, "eth0", VIP], time.monotonic())
        [res] = run_loop(runner)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert res.ok and out.read_text().strip() == "closed"


def test_signals_python_ignores_are_default_in_the_script(tmp_path: Path) -> None:
    out = tmp_path / "sigign"
    script = make_script(tmp_path / "s", f"grep '^SigIgn:' /proc/$$/status > {out}\n")
    runner = ScriptRunner(Recorder())
    runner.submit("up", [script, "eth0", VIP], time.monotonic())
    [res] = run_loop(runner)
    ignored = int(out.read_text().split()[1], 16)
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (signum - 1)), signum.name


@pytest.mark.parametrize("argv", [[], [None, "eth0", VIP], ["", "eth0", VIP]])
def test_no_script_configured_does_nothing(argv: list[Any]) -> None:
    log = Recorder()
    runner = ScriptRunner(log)
    runner.submit("up", argv, time.monotonic())
    assert not runner.running() and runner.pending() == 0
    assert runner.next_deadline() is None and log.lines == []


def test_drain_waits_for_the_queue(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    script = make_script(tmp_path / "s", f"sleep 0.2\necho $3 >> {journal}\n")
    runner = ScriptRunner(Recorder())
    start = time.monotonic()
    runner.submit("up", [script, "eth0", VIP, "1"], start)
    runner.submit("down", [script, "eth0", VIP, "2"], start)
    results = runner.drain(start + 5.0)
    elapsed = time.monotonic() - start
    assert [r.returncode for r in results] == [0, 0]
    assert journal.read_text().split() == ["1", "2"]
    assert 0.35 < elapsed < 3.0
    assert not runner.running() and runner.pending() == 0


def test_drain_bounded_by_deadline(tmp_path: Path) -> None:
    hang = make_script(tmp_path / "hang", "trap '' TERM\nsleep 10\n")
    never = tmp_path / "never"
    later = make_script(tmp_path / "later", f": > {never}\n")
    log = Recorder()
    runner = ScriptRunner(log, timeout=60.0)
    start = time.monotonic()
    runner.submit("up", [hang, "eth0", VIP], start)
    runner.submit("down", [later, "eth0", VIP], start)
    results = runner.drain(start + 0.4)
    elapsed = time.monotonic() - start
    assert elapsed < 1.5
    killed, skipped = results
    assert killed.timed_out and killed.signal == signal.SIGKILL
    assert skipped.returncode is None and skipped.error is not None
    assert not never.exists()
    assert not runner.running() and runner.pending() == 0


def test_drain_applies_script_timeout(tmp_path: Path) -> None:
    hang = make_script(tmp_path / "hang", "sleep 10\n")
    runner = ScriptRunner(Recorder(), timeout=0.3, kill_grace=0.5)
    start = time.monotonic()
    runner.submit("down", [hang, "eth0", VIP], start)
    [res] = runner.drain(start + 5.0)
    assert res.timed_out and res.signal == signal.SIGTERM
    assert time.monotonic() - start < 1.5


def _has_netns_tools() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.mark.netns
@pytest.mark.cucarp
def test_spawning_line_matches_c_ucarp(tmp_path: Path) -> None:
    """ucarp's own Spawning line (its first downscript) equals ours."""
    if not _has_netns_tools():
        pytest.skip("needs root and ip")
    if not os.access(UCARP, os.X_OK):
        pytest.skip("no C ucarp")
    down = make_script(tmp_path / "down", "exit 0\n")
    ns = f"pyucarp-scr-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc: subprocess.Popen[str] | None = None
    try:
        for cmd in (
            ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"],
            ["link", "set", "eth0p", "up"],
            ["link", "set", "eth0", "up"],
            ["addr", "add", "192.0.2.1/24", "dev", "eth0"],
        ):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, UCARP, "-i", "eth0", "-s", "192.0.2.1", "-v", "1",
             "-p", "x", "-a", VIP, "-u", down, "-d", down, "-x", "x p", "-f", "none"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        theirs = None
        seen = b""
        fd = proc.stderr.fileno()
        end = time.monotonic() + 3.0
        # Raw reads: both lines often come in one chunk, and a text reader's buffer would
        # hold the second where select() cannot see it.
        while theirs is None and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
            for line in seen.decode(errors="replace").splitlines():
                if "Spawning" in line:
                    theirs = line.split(": ", 1)[1]
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert theirs is not None, f"ucarp never spawned its downscript: {seen!r}"
    log = Recorder()
    runner = ScriptRunner(log)
    runner.submit("down", [down, "eth0", VIP, "x p"], time.monotonic())
    run_loop(runner)
    assert theirs == Level.WARNING.prefix + log.at(Level.WARNING)[0]


def test_without_pidfd_the_deadline_polls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    script = make_script(tmp_path / "s", "sleep 0.1\n")
    runner = ScriptRunner(Recorder(), timeout=5.0)
    now = time.monotonic()
    runner.submit("up", [script, "eth0", VIP], now)
    assert runner.running() and runner.fileno() is None
    due = runner.next_deadline()
    assert due is not None and due < now + 1.0  # a short poll, not the 5 s timeout
    [res] = run_loop(runner)
    assert res.ok
