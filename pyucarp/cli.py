"""The ``ucarp`` / ``pyucarp`` command: ucarp's command line, then the daemon.

Exit status as ucarp: 0 after --help, 1 for a configuration error (one line on stderr,
nothing started, no script run), 2 for a failure after the checks.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence

from pyucarp.config.settings import Config
from pyucarp.errors import ConfigError, UcarpError
from pyucarp.records import TYPE_CHECKING
from pyucarp.shell.logs import UcarpLog

if TYPE_CHECKING:
    from typing import Any


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pyucarp``: an admin subcommand, or else the daemon."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _SUBCOMMANDS:
        return _SUBCOMMANDS[args[0]](args[1:])
    return run_daemon(args)


def ucarp_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ucarp``: exactly ucarp's command line, no subcommands."""
    return run_daemon(list(sys.argv[1:] if argv is None else argv))


def fill_standard_descriptors() -> None:
    """Put /dev/null on whichever of descriptors 0, 1 and 2 our starter left closed.

    Started with ``>&-`` (some supervisors and cron-like starters do), the first socket
    the daemon opens would become descriptor 1 or 2: console lines would be written into
    it and scripts would inherit it as their output. Python also leaves ``sys.stdout`` as
    None then, which python-daemon (-B) cannot redirect, so the detached child would die
    with nobody left to hear why.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # cannot happen while the lower ones are open; be sure anyway
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (process-long)


def run_daemon(args: list[str]) -> int:
    """Parse ucarp's options and run one instance until it is told to stop."""
    fill_standard_descriptors()
    from pyucarp.config import options
    from pyucarp.shell.iface import default_interface

    try:
        parsed = options.parse_args(args, default_interface=default_interface)
    except ConfigError as exc:
        _fatal(str(exc), facility=_facility_hint(args))
        return 1
    finally:
        # Whatever happens next, the password must not linger in /proc/PID/cmdline.
        options.scrub_password_from_argv()
    if isinstance(parsed, options.HelpRequested):
        sys.stdout.write(options.USAGE)
        sys.stdout.flush()
        return 0
    log = UcarpLog(
        facility=parsed.facility,
        debug=parsed.debug,
        console=not _stderr_is_journal(),
        syslog_enabled=parsed.facility != "none",
    )
    return _reporting(log, lambda: _start(parsed, log))


def _start(config: Config, log: UcarpLog) -> int:
    from pyucarp.shell.loop import EventLoop, check_instance
    from pyucarp.shell.pidfile import PidFile

    loop = EventLoop(log, graceful_exit=config.shutdown)
    facts = check_instance(config, loop.instance_log(config))
    pidfile = PidFile(config.pidfile) if config.pidfile else None
    if pidfile is not None:
        pidfile.check_free()
        pidfile.check_writable()  # before -B detaches: the error still reaches the terminal
    log.info(f"Local advertised ethernet address is [{':'.join(f'{b:02x}' for b in facts.mac)}]")
    loop.add(config, facts)
    if config.daemonize:
        _daemonize(log, keep=loop.filenos())
    if config.realtime is not None:
        _realtime(config.realtime, log)
    if pidfile is not None:
        pidfile.write()
    try:
        status = loop.run()
    finally:
        if pidfile is not None:
            pidfile.remove()
    if loop.exit_signal is not None:
        # Without -z ucarp simply dies of the signal; so do we, once cleaned up.
        signal.signal(loop.exit_signal, signal.SIG_DFL)
        os.kill(os.getpid(), loop.exit_signal)
    return status


def run_main(args: list[str]) -> int:
    """``pyucarp run``: every interface file's instance in this one process."""
    import argparse

    fill_standard_descriptors()

    from pyucarp.config.interface_files import (
        DEFAULT_CONFIG_DIR,
        DEFAULT_DEFAULTS,
        check_main,
        load_directory,
        read_defaults,
    )
    from pyucarp.config.options import facility_known

    parser = argparse.ArgumentParser(
        prog="pyucarp run",
        description="Run the CARP instance of every interface file in one process "
        "(foreground unless -B). SIGHUP re-reads the files; SIGTERM makes every "
        "instance leave as with -z; SIGUSR1/SIGUSR2 act on every instance.",
    )
    parser.add_argument("--config-dir", default=None, metavar="DIR",
                        help="the interface files (default: R_INTERFACE of the defaults "
                        f"file, else {DEFAULT_CONFIG_DIR})")
    parser.add_argument("--defaults", default=DEFAULT_DEFAULTS, metavar="FILE",
                        help=f"the init script's defaults file (default {DEFAULT_DEFAULTS})")
    parser.add_argument("--pidfile", metavar="FILE", help="write the daemon's pid to FILE")
    parser.add_argument("--statedir", metavar="DIR",
                        help="directory for the state files (default /run/pyucarp, "
                        "netns-INODE below it in another network namespace)")
    parser.add_argument("-B", "--daemonize", action="store_true", help="run in background")
    parser.add_argument("-D", "--debug", action="store_true", help="enable debug output")
    parser.add_argument("-f", "--facility", default="daemon",
                        help="syslog facility (default daemon; none: no syslog)")
    parser.add_argument("--check", action="store_true",
                        help="check every file, one line per bad file, and exit (0: all good)")
    opts = parser.parse_args(args)
    if opts.config_dir is None:  # the defaults file's R_INTERFACE, as the init script reads it
        try:
            opts.config_dir = read_defaults(opts.defaults).interface_dir or DEFAULT_CONFIG_DIR
        except ConfigError as exc:
            _fatal(str(exc), facility="daemon")
            return 1
    if opts.check:
        return check_main(opts.config_dir, opts.defaults)
    if not facility_known(opts.facility):
        _fatal(f"Unknown syslog facility: [{opts.facility}]", facility="daemon")
        return 1
    log = UcarpLog(
        facility=opts.facility.lower(),
        debug=opts.debug,
        console=not _stderr_is_journal(),
        syslog_enabled=opts.facility.lower() != "none",
    )
    return _reporting(log, lambda: _run_fleet(opts.config_dir, opts.defaults, opts.pidfile,
                                              opts.statedir, opts.daemonize, log,
                                              load_directory))


def _reporting(log: UcarpLog, run: Callable[[], int]) -> int:
    """Run the daemon; an error is one line and ucarp's exit status (1 configuration,
    2 anything after the checks)."""
    try:
        return run()
    except ConfigError as exc:
        log.error(str(exc))
        return 1
    except UcarpError as exc:  # RuntimeFailure, and any other subclass
        log.error(str(exc))
        return 2


def _run_fleet(config_dir: str, defaults: str, pidfile_path: str | None,
               statedir: str | None, daemonize: bool, log: UcarpLog,
               load_directory: Callable[[str, str], list[Any]]) -> int:
    from pyucarp.shell.fleet import Fleet
    from pyucarp.shell.loop import EventLoop
    from pyucarp.shell.pidfile import PidFile

    pidfile = PidFile(pidfile_path) if pidfile_path else None
    if pidfile is not None:
        pidfile.check_free()
        pidfile.check_writable()
    load_directory(config_dir, defaults)  # an unreadable directory is fatal at start only
    loop = EventLoop(log, graceful_exit=True, hup_reloads=True, prefix_logs=True)
    fleet = Fleet(loop, lambda: load_directory(config_dir, defaults), statedir=statedir)
    counts = fleet.sync(start=False)
    log.notice(f"Starting {len(fleet.running)} instance{'s' if len(fleet.running) != 1 else ''}"
               f" from {config_dir} ({counts.get('bad', 0)} bad)")
    loop.set_reloader(fleet.reload)
    if daemonize:
        _daemonize(log, keep=loop.filenos())
    priorities = [rt.config.realtime for rt in loop.instances.values()
                  if rt.config.realtime is not None]
    if priorities:  # one process: the most demanding instance decides
        _realtime(max(priorities), log)
    if pidfile is not None:
        pidfile.write()
    try:
        return loop.run()
    finally:
        if pidfile is not None:
            pidfile.remove()


def _realtime(priority: int, log: UcarpLog) -> None:
    """--realtime: after -B (a forked child would not keep SCHED_RR's memory locks)."""
    from pyucarp.shell.realtime import enter_realtime

    enter_realtime(priority)
    log.info(f"Real-time scheduling: SCHED_RR priority {priority}, memory locked")


def _daemonize(log: UcarpLog, keep: list[int]) -> None:
    """-B: detach with python-daemon; the console goes quiet, syslog stays."""
    import daemon as python_daemon  # type: ignore[import-untyped]

    context = python_daemon.DaemonContext(
        files_preserve=keep,
        working_directory="/",
        umask=0o022,
        detach_process=True,
        prevent_core=False,
        signal_map={},  # the daemon installs its own handlers
    )
    log.set_console(False)
    log.close()  # its socket is about to be closed with every other descriptor
    context.open()
    log.reopen()


def _stderr_is_journal() -> bool:
    """Under systemd, stderr may be the journal, which also gets syslog: print once."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def _fatal(message: str, *, facility: str) -> None:
    UcarpLog(facility=facility, console=True, syslog_enabled=facility != "none").error(message)


def _facility_hint(args: list[str]) -> str:
    """The -f facility when the rest of the command line is broken, for the error line."""
    for i, arg in enumerate(args):
        if arg in ("-f", "--facility") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--facility="):
            return arg.split("=", 1)[1]
        if arg.startswith("-f") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return "daemon"


def _status(args: list[str]) -> int:
    from pyucarp.ops.admin import status_main

    return status_main(args)


def _demote(args: list[str]) -> int:
    from pyucarp.ops.admin import demote_main

    return demote_main(args)


def _promote(args: list[str]) -> int:
    from pyucarp.ops.admin import promote_main

    return promote_main(args)


def _metrics(args: list[str]) -> int:
    from pyucarp.ops.metrics import metrics_main

    return metrics_main(args)


def _watch(args: list[str]) -> int:
    from pyucarp.ops.watch import watch_main  # the only command that imports scapy

    return watch_main(args)


_SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "status": _status,
    "demote": _demote,
    "promote": _promote,
    "metrics": _metrics,
    "watch": _watch,
    "run": run_main,
}
