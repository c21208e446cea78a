"""The ``ucarp`` / ``pyucarp`` command: ucarp's command line, then the daemon.

Exit status as ucarp: 0 after --help, 1 for a configuration error (one line on stderr,
nothing started, no script run), 2 for a failure after the checks.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Sequence

from pyucarp.config.settings import Config
from pyucarp.errors import ConfigError, RuntimeFailure, UcarpError
from pyucarp.shell.logs import UcarpLog


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pyucarp``: an admin subcommand, or else the daemon."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _SUBCOMMANDS:
        return _SUBCOMMANDS[args[0]](args[1:])
    return run_daemon(args)


def ucarp_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ucarp``: exactly ucarp's command line, no subcommands."""
    return run_daemon(list(sys.argv[1:] if argv is None else argv))


def run_daemon(args: list[str]) -> int:
    """Parse ucarp's options and run one instance until it is told to stop."""
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
    try:
        return _start(parsed, log)
    except ConfigError as exc:
        log.error(str(exc))
        return 1
    except RuntimeFailure as exc:
        log.error(str(exc))
        return 2
    except UcarpError as exc:  # pragma: no cover - every raise site uses a subclass
        log.error(str(exc))
        return 2


def _start(config: Config, log: UcarpLog) -> int:
    from pyucarp.shell.loop import Daemon, open_carp_socket
    from pyucarp.shell.iface import LinkMonitor, interface_facts
    from pyucarp.shell.pidfile import PidFile
    from pyucarp.shell.scripts import ScriptRunner

    facts = interface_facts(config.device)
    if not any(addr.ip == config.srcip for addr in facts.addresses):
        raise ConfigError(
            f"Source address [{config.srcip}] is not configured on interface [{config.device}]"
        )
    for script, word in ((config.upscript, "up"), (config.downscript, "down")):
        if not script:
            log.warning(f"Warning: no script called when going {word}")
        elif not os.path.isfile(script) or not os.access(script, os.X_OK):
            raise ConfigError(f"Script [{script}] is not an executable file")
    pidfile = PidFile(config.pidfile) if config.pidfile else None
    if pidfile is not None:
        pidfile.check_free()
        pidfile.check_writable()  # before -B detaches: the error still reaches the terminal
    log.info(f"Local advertised ethernet address is [{':'.join(f'{b:02x}' for b in facts.mac)}]")
    sock = open_carp_socket(config)
    monitor = LinkMonitor()
    if config.daemonize:
        _daemonize(log, keep=[*sock.filenos(), monitor.fileno()])
    if pidfile is not None:
        pidfile.write()
    try:
        daemon = Daemon(
            config,
            log,
            sock=sock,
            monitor=monitor,
            facts=facts,
            runner=ScriptRunner(log, timeout=config.script_timeout),
        )
        status = daemon.run()
    finally:
        if pidfile is not None:
            pidfile.remove()
    if daemon.exit_signal is not None:
        # Without -z ucarp simply dies of the signal; so do we, once cleaned up.
        signal.signal(daemon.exit_signal, signal.SIG_DFL)
        os.kill(os.getpid(), daemon.exit_signal)
    return status


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
}
