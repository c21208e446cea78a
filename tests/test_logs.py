"""pyucarp.shell.logs: ucarp's log formats, streams, syslog use and the rate limiter."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import syslog
import time
from typing import Any

import pytest

from pyucarp.shell import logs
from pyucarp.shell.logs import Level, UcarpLog

UCARP = "/usr/sbin/ucarp"
LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}: \[(DEBUG|INFO|NOTICE|WARNING|ERROR)\] (.*)$"
)


class FakeSyslog:
    """Records what would go to syslog(3)."""

    def __init__(self) -> None:
        self.opened: list[tuple[Any, ...]] = []
        self.lines: list[tuple[int, str]] = []

    def openlog(self, *args: Any) -> None:
        self.opened.append(args)

    def syslog(self, priority: int, message: str) -> None:
        self.lines.append((priority, message))

    def closelog(self) -> None:
        pass


@pytest.fixture
def fake_syslog(monkeypatch: pytest.MonkeyPatch) -> FakeSyslog:
    fake = FakeSyslog()
    monkeypatch.setattr(syslog, "openlog", fake.openlog)
    monkeypatch.setattr(syslog, "syslog", fake.syslog)
    monkeypatch.setattr(syslog, "closelog", fake.closelog)
    return fake


def console_lines(text: str) -> list[tuple[str, str]]:
    out = []
    for raw in text.splitlines():
        m = LINE.match(raw)
        assert m, f"not in ucarp's console format: {raw!r}"
        out.append((m.group(1), m.group(2)))
    return out


def test_console_format_and_streams(capsys: pytest.CaptureFixture[str]) -> None:
    log = UcarpLog(syslog_enabled=False, debug=True)
    log.debug("d")
    log.info("i")
    log.notice("n")
    log.warning("w")
    log.error("e")
    cap = capsys.readouterr()
    # ucarp: WARNING and ERROR on stderr, the rest on stdout.
    assert console_lines(cap.out) == [("DEBUG", "d"), ("INFO", "i"), ("NOTICE", "n")]
    assert console_lines(cap.err) == [("WARNING", "w"), ("ERROR", "e")]


def test_console_line_exact() -> None:
    # 2026-01-02 03:04:05 local time, plus 6070 us and 999 ns that ucarp's usec drop.
    seconds = int(time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1)))
    when_ns = seconds * 1_000_000_000 + 6_070_999
    assert (
        logs.console_line(Level.WARNING, "Switching to state: MASTER", when_ns)
        == "2026-01-02T03:04:05.006070: [WARNING] Switching to state: MASTER\n"
    )


def test_debug_dropped_without_debug(
    capsys: pytest.CaptureFixture[str], fake_syslog: FakeSyslog
) -> None:
    log = UcarpLog()
    log.debug("hidden")
    log.limited("k", Level.DEBUG, "hidden too", 0.0)
    assert capsys.readouterr().out == ""
    assert fake_syslog.lines == []
    assert not log.wants(Level.DEBUG) and log.wants(Level.INFO)


def test_set_console_off(capsys: pytest.CaptureFixture[str], fake_syslog: FakeSyslog) -> None:
    log = UcarpLog()
    log.set_console(False)
    log.error("after daemonizing")
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""
    assert fake_syslog.lines == [(syslog.LOG_ERR, "[ERROR] after daemonizing")]


def test_syslog_ident_pid_facility_and_prefix(fake_syslog: FakeSyslog) -> None:
    log = UcarpLog(facility="LOCAL3", console=False, debug=True)
    assert fake_syslog.opened == [("ucarp", syslog.LOG_PID, syslog.LOG_LOCAL3)]
    assert log.syslog_facility == syslog.LOG_LOCAL3
    log.warning("Switching to state: BACKUP")
    log.debug("x")
    log.notice("y")
    assert fake_syslog.lines == [
        (syslog.LOG_WARNING, "[WARNING] Switching to state: BACKUP"),
        (syslog.LOG_DEBUG, "[DEBUG] x"),
        (syslog.LOG_NOTICE, "[NOTICE] y"),
    ]


def test_syslog_text_is_sanitized(fake_syslog: FakeSyslog) -> None:
    log = UcarpLog(console=False)
    log.info("a\0b \udcff")
    assert fake_syslog.lines == [(syslog.LOG_INFO, "[INFO] a\\0b \\udcff")]


@pytest.mark.parametrize("name", ["none", "NONE", "None"])
def test_facility_none_disables_syslog(
    name: str, fake_syslog: FakeSyslog, capsys: pytest.CaptureFixture[str]
) -> None:
    log = UcarpLog(facility=name)
    log.error("console only")
    assert fake_syslog.opened == [] and fake_syslog.lines == []
    assert log.syslog_facility is None
    assert console_lines(capsys.readouterr().err) == [("ERROR", "console only")]


def test_unknown_facility_logged_and_daemon_used(
    fake_syslog: FakeSyslog, capsys: pytest.CaptureFixture[str]
) -> None:
    log = UcarpLog(facility="bogus")
    assert fake_syslog.opened == [("ucarp", syslog.LOG_PID, syslog.LOG_DAEMON)]
    assert log.syslog_facility == syslog.LOG_DAEMON
    assert fake_syslog.lines == [(syslog.LOG_ERR, "[ERROR] Unknown syslog facility: [bogus]")]
    assert console_lines(capsys.readouterr().err) == [
        ("ERROR", "Unknown syslog facility: [bogus]")
    ]


def test_facility_table() -> None:
    assert logs.facility_code("daemon") == syslog.LOG_DAEMON
    assert logs.facility_code("Security") == syslog.LOG_AUTH
    assert logs.facility_code("ftp") == 11 << 3
    assert logs.facility_code("local8") is None
    # The table is the parser's (pyucarp.config.options), written as plain numbers: they
    # must be the codes of the syslog module wherever it names the facility.
    for name in ("auth", "authpriv", "cron", "daemon", "kern", "lpr", "mail", "news",
                 "syslog", "user", "uucp", *(f"local{n}" for n in range(8))):
        assert logs.facility_code(name) == getattr(syslog, f"LOG_{name.upper()}"), name


def test_broken_console_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        encoding = "ascii"

        def write(self, s: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

    monkeypatch.setattr(sys, "stderr", Broken())
    UcarpLog(syslog_enabled=False).error("nowhere to go")  # must not raise


# -- rate limiter ------------------------------------------------------------------


class Recorder(UcarpLog):
    """A UcarpLog that keeps its lines in memory."""

    def __init__(self, **kw: Any) -> None:
        self.lines: list[tuple[Level, str]] = []
        super().__init__(console=False, syslog_enabled=False, **kw)

    def log(self, level: Level, message: str) -> None:
        if self.wants(level):
            self.lines.append((level, message))


def test_rate_limit_burst_then_summary_on_next_message() -> None:
    log = Recorder(burst=5, window=10.0)
    for i in range(1239):
        log.limited("Bad digest", Level.WARNING, f"Bad digest {i}", 100.0 + i * 0.001)
    assert [m for _, m in log.lines] == [f"Bad digest {i}" for i in range(5)]
    assert log.suppressed("Bad digest") == 1234
    assert log.next_deadline() == pytest.approx(110.0)
    # Still inside the window: suppressed, no summary yet.
    log.limited("Bad digest", Level.WARNING, "late", 109.999)
    assert len(log.lines) == 5
    # Window over: summary first, then the message opens a new window.
    log.limited("Bad digest", Level.WARNING, "new window", 110.0)
    assert log.lines[5:] == [
        (Level.WARNING, '1235 more "Bad digest" messages suppressed in the last 10 s'),
        (Level.WARNING, "new window"),
    ]
    assert log.suppressed("Bad digest") == 0
    assert log.next_deadline() is None


def test_rate_limit_flush_on_timer_and_keys_independent() -> None:
    log = Recorder(burst=2, window=5.0)
    for _ in range(4):
        log.limited("a", Level.WARNING, "A", 0.0)
    log.limited("b", Level.ERROR, "B", 1.0)
    assert [m for _, m in log.lines] == ["A", "A", "B"]
    assert log.next_deadline() == pytest.approx(5.0)
    log.flush(4.9)
    assert len(log.lines) == 3
    log.flush(5.0)
    assert log.lines[3:] == [(Level.WARNING, '2 more "a" messages suppressed in the last 5 s')]
    assert log.next_deadline() is None
    # After the flush a fresh burst is allowed at once.
    log.limited("a", Level.WARNING, "A again", 5.5)
    log.limited("a", Level.WARNING, "A again", 5.6)
    log.limited("a", Level.WARNING, "A again", 5.7)
    assert [m for _, m in log.lines[4:]] == ["A again", "A again"]
    # "b" never exceeded its burst: its window closes silently.
    log.flush(100.0)
    assert not any('"b"' in m for _, m in log.lines)


def test_rate_limit_no_summary_without_suppression() -> None:
    log = Recorder(burst=3, window=1.0)
    for t in (0.0, 0.5, 2.0, 2.1):
        log.limited("k", Level.WARNING, "m", t)
    assert [m for _, m in log.lines] == ["m"] * 4
    assert log.next_deadline() is None


# -- against the real binary ---------------------------------------------------------


def _ucarp_without_syslog(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the C ucarp without letting it write into the host's syslog."""
    cmd = [UCARP, *args]
    if os.path.exists("/dev/log"):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip("needs root and unshare to keep ucarp out of the host syslog")
        cmd = ["unshare", "-m", "sh", "-c", 'mount --bind /dev/null /dev/log && exec "$@"',
               "sh", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)


@pytest.mark.cucarp
def test_same_console_line_as_c_ucarp(
    capsys: pytest.CaptureFixture[str], fake_syslog: FakeSyslog
) -> None:
    if not os.access(UCARP, os.X_OK):
        pytest.skip("no C ucarp")
    theirs = _ucarp_without_syslog(["-f", "bogus"])
    first = theirs.stderr.splitlines()[0]
    assert LINE.match(first)
    UcarpLog(facility="bogus")
    ours = capsys.readouterr().err.splitlines()[0]
    # Same text after the timestamp, same stream, same timestamp shape.
    assert LINE.match(ours)
    assert ours.split(": ", 1)[1] == first.split(": ", 1)[1]
    assert len(ours.split(": ", 1)[0]) == len(first.split(": ", 1)[0])
