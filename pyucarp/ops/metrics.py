"""``pyucarp metrics``: the state files as Prometheus text exposition format (0.0.4).

Printed on stdout, or written atomically to a file for node-exporter's textfile collector
(``--textfile /var/lib/prometheus/node-exporter/ucarp.prom``), once or every
``--interval`` seconds. Every sample carries the labels ``instance`` (the state file stem),
``interface``, ``vhid`` and ``vip``.

A stale state file (its daemon is gone) yields only ``ucarp_up 0``: its last state would
claim a MASTER that no longer exists. A file that is not a state document yields nothing
(``pyucarp status`` says why it is unreadable).

Service health (``--track-script``, ``--track-interface``; docs/health.md) is exported only
for instances that track it: ``ucarp_service_healthy`` is 1 or 0, and NaN while not decided
yet (the first check still running): a series that exists from the start, which neither
``== 0`` nor ``== 1`` matches until the verdict is in. The last check's outcome and
duration follow once a check has ended, each tracked interface's carrier (1, 0, NaN not
seen yet) with the label ``tracked_interface``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyucarp.ops.admin import Instance, scan
from pyucarp.shell.atomic import atomic_write
from pyucarp.shell.statefile import HEALTH_UNTRACKED, ScriptRecord, default_statedir

STATE_VALUES = {"INIT": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3}
SERVICE_VALUES = {"healthy": 1.0, "unhealthy": 0.0, "unknown": float("nan")}
NO_EXIT_STATUS = -1  # the last script timed out, was killed, or could not be started


@dataclass(frozen=True)
class Family:
    """One metric family: its name, type, help text and the order it is printed in."""

    name: str
    kind: str  # "gauge" or "counter"
    help: str


FAMILIES = (
    Family("ucarp_up", "gauge", "1 when the instance's daemon runs, 0 for a stale state file."),
    Family("ucarp_state", "gauge",
           "CARP state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT (service unhealthy)."),
    Family("ucarp_master", "gauge", "1 when this node is MASTER for the virtual address."),
    Family("ucarp_maintenance", "gauge", "1 while the instance is held in maintenance (BACKUP)."),
    Family("ucarp_link_up", "gauge", "1 while the interface has carrier."),
    Family("ucarp_healthy", "gauge", "1 when pyucarp status calls the instance healthy "
           "(no problem: not dead, hung, link down, script failed or service unhealthy)."),
    Family("ucarp_since_seconds", "gauge", "Unix time at which the current state was entered."),
    Family("ucarp_transitions_total", "counter", "State changes since the daemon started."),
    Family("ucarp_adverts_sent_total", "counter", "CARP advertisements sent."),
    Family("ucarp_adverts_received_total", "counter",
           "Authenticated CARP advertisements received from peers."),
    Family("ucarp_send_errors_total", "counter", "Advertisements the kernel refused to send."),
    Family("ucarp_dropped_packets_total", "counter",
           "CARP packets refused, by reason (bad_digest, bad_ttl, replay, ...)."),
    Family("ucarp_last_script_exit_code", "gauge",
           "Exit status of the last up/down script; -1 when it had none "
           "(timed out, killed, or not started)."),
    Family("ucarp_service_healthy", "gauge",
           "Tracked service health: 1 healthy, 0 unhealthy, NaN not decided yet "
           "(only for instances with checks or tracked interfaces)."),
    Family("ucarp_check_ok", "gauge", "1 when the last tracked check passed (exit 0 in time)."),
    Family("ucarp_check_duration_seconds", "gauge", "How long the last tracked check ran."),
    Family("ucarp_check_timed_out", "gauge",
           "1 when the last tracked check was killed at its timeout."),
    Family("ucarp_tracked_interface_up", "gauge",
           "Carrier of a tracked interface: 1 up, 0 down or gone, NaN not seen yet."),
)


@dataclass
class Exposition:
    """Samples gathered per family, rendered in the order of :data:`FAMILIES`."""

    samples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        """One sample line of family ``name``."""
        text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        self.samples.setdefault(name, []).append(f"{name}{{{text}}} {format_value(value)}")

    def render(self) -> str:
        """HELP and TYPE for every family (also empty ones), then its samples."""
        lines = []
        for fam in FAMILIES:
            lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
            lines.append(f"# TYPE {fam.name} {fam.kind}")
            lines.extend(self.samples.get(fam.name, ()))
        return "\n".join(lines) + "\n"


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escaping: backslash and newline."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers without a decimal point, other floats in full precision, NaN as ``NaN``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if value != value:
        return "NaN"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def last_script_exit_code(last: ScriptRecord) -> int:
    """The exit status of the last script, or -1 when it had none."""
    if last.returncode is None or last.timed_out or last.error is not None:
        return NO_EXIT_STATUS
    return last.returncode


def collect(instances: Sequence[Instance]) -> Exposition:
    """The samples of every instance whose state file could be read.

    The instances of one ``pyucarp run`` process are instances like any other: each has
    its own label set.
    """
    out = Exposition()
    for inst in instances:
        s = inst.status
        if s is None:
            continue
        labels = {"instance": inst.name, "interface": s.interface, "vhid": str(s.vhid),
                  "vip": s.vip}
        out.add("ucarp_up", labels, 1 if inst.running else 0)
        if not inst.running:
            continue
        out.add("ucarp_state", labels, STATE_VALUES.get(s.state, 0))
        out.add("ucarp_master", labels, 1 if s.state == "MASTER" else 0)
        out.add("ucarp_maintenance", labels, 1 if s.maintenance else 0)
        out.add("ucarp_link_up", labels, 1 if s.link_up else 0)
        out.add("ucarp_healthy", labels, 1 if inst.healthy else 0)
        out.add("ucarp_since_seconds", labels, s.since)
        out.add("ucarp_transitions_total", labels, s.transitions)
        out.add("ucarp_adverts_sent_total", labels, s.adverts_sent)
        out.add("ucarp_adverts_received_total", labels, s.adverts_received)
        out.add("ucarp_send_errors_total", labels, s.send_errors)
        for reason in sorted(s.dropped):
            out.add("ucarp_dropped_packets_total", {**labels, "reason": reason},
                    s.dropped[reason])
        if s.last_script is not None:
            out.add("ucarp_last_script_exit_code", labels, last_script_exit_code(s.last_script))
        if s.health == HEALTH_UNTRACKED:
            continue
        out.add("ucarp_service_healthy", labels, SERVICE_VALUES[s.health])
        check = s.last_check
        if check is not None:
            out.add("ucarp_check_ok", labels, 1 if check.ok else 0)
            out.add("ucarp_check_duration_seconds", labels, check.duration)
            out.add("ucarp_check_timed_out", labels, 1 if check.timed_out else 0)
        for name, up in sorted(s.tracked_interfaces.items()):
            out.add("ucarp_tracked_interface_up", {**labels, "tracked_interface": name},
                    float("nan") if up is None else 1 if up else 0)
    return out


def render(statedir: str) -> str:
    """The whole exposition for the instances in ``statedir``."""
    return collect(scan(statedir)).render()


def metrics_main(argv: list[str]) -> int:
    """``pyucarp metrics [--statedir DIR] [--textfile PATH] [--interval N]``."""
    parser = argparse.ArgumentParser(
        prog="pyucarp metrics",
        description="Print the state of this host's pyucarp instances in Prometheus text "
        "format, or write it atomically to a file for node-exporter's textfile collector.",
    )
    parser.add_argument("--statedir", default=default_statedir(), metavar="DIR",
                        help="the daemons' --statedir (default /run/pyucarp; netns-INODE below "
                        "it in another network namespace)")
    parser.add_argument("--textfile", metavar="PATH",
                        help="write to PATH (atomically; node-exporter reads *.prom files)")
    parser.add_argument("--interval", type=float, metavar="N",
                        help="with --textfile: rewrite the file every N seconds until SIGTERM")
    args = parser.parse_args(argv)
    if args.interval is not None:
        if args.textfile is None:
            parser.error("--interval needs --textfile")
        if args.interval <= 0:
            parser.error("--interval must be positive")
    if args.textfile is None:
        sys.stdout.write(render(args.statedir))
        return 0
    if args.interval is None:
        return _write_textfile(args.textfile, args.statedir)
    return _write_forever(args.textfile, args.statedir, args.interval)


def _write_textfile(path: str, statedir: str) -> int:
    try:
        atomic_write(path, render(statedir).encode(), mode=0o644)
    except OSError as exc:
        print(f"pyucarp metrics: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _write_forever(path: str, statedir: str, interval: float) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    status = 0
    next_at = time.monotonic()
    while not stop.is_set():
        # A write error (full disk) is reported and retried next time, not fatal.
        status = _write_textfile(path, statedir)
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))
    return status
