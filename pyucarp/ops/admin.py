"""``pyucarp status``, ``pyucarp demote`` and ``pyucarp promote``: the host's instances as
their state files describe them, and persistent maintenance switched on and off.

Every running instance keeps ``<statedir>/<name>.json`` (see :mod:`pyucarp.shell.statefile`,
whose :class:`~pyucarp.shell.statefile.InstanceStatus` is the only reader used here);
``<name>`` is ``<interface, ':' and '/' as '_'>-<vhid>``. A daemon removes its files when
it exits, so a file whose pid is gone was left by a daemon that was killed: it is *stale*.

An instance is a state file, not a process: the instances of one ``pyucarp run`` process
share its pid, and each is judged, listed, demoted and promoted on its own. One control
signal makes such a process re-read the maintenance flag of every instance it runs, each
its own flag, so the others are left as they are.

Health, as ``pyucarp status`` reports it and exits (LSB ``status`` style):

* ``dead``: the pid in the state file is not a running pyucarp (killed, crashed, or the
  pid was reused by another program): the file is stale.
* ``link-down``: the interface has no carrier (the daemon stays BACKUP meanwhile).
* ``script-failed``: the last up/down script exited non-zero, timed out, was killed by a
  signal, or could not be started: the VIP may not be configured as the state says.
* ``unreadable``: the state file exists but is not a pyucarp state document.
* ``hung``: the instance's daemon runs but has not refreshed this file (every 5 s) for
  over 30 s: its event loop is stuck.
* ``service-unhealthy``: the tracked checks or interfaces (``--track-script``,
  ``--track-interface``) say the service is down, or the instance is in FAULT. The
  cluster did its job (a backup holds the address, or a weight pushed this node back),
  but this node's service needs a person: it counts as a problem. A health not decided
  yet (``unknown``, until the first check ends) does not.

Exit status: 0 when every instance is healthy, 1 when at least one is not, 3 when there is
no instance at all (LSB "program is not running"), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyucarp.shell.atomic import atomic_write
from pyucarp.shell.pidfile import daemon_alive
from pyucarp.shell.statefile import (
    CONTROL_SIGNAL,
    HEALTH_UNTRACKED,
    STATE_REFRESH_SECONDS,
    CheckRecord,
    InstanceStatus,
    ScriptRecord,
    StateFile,
    default_statedir,
)

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3  # LSB: "program is not running"

DEFAULT_WAIT_SECONDS = 3.0  # how long demote/promote wait for the daemon to confirm
_POLL_SECONDS = 0.05

STATE_SUFFIX = ".json"
FLAG_SUFFIX = ".maintenance"

PROBLEM_DEAD = "dead"
PROBLEM_LINK_DOWN = "link-down"
PROBLEM_SCRIPT_FAILED = "script-failed"
PROBLEM_UNREADABLE = "unreadable"
PROBLEM_HUNG = "hung"
PROBLEM_SERVICE = "service-unhealthy"
STATE_FAULT = "FAULT"
OUTPUT_CELL_MAX = 40  # characters of a check's output line shown in the table
HUNG_AFTER_SECONDS = 6 * STATE_REFRESH_SECONDS  # six missed heartbeats


@dataclass(frozen=True)
class Instance:
    """One instance on this host: its state file (if any) and its maintenance flag."""

    name: str  # the file stem, "<interface>-<vhid>"
    statefile: str
    status: InstanceStatus | None  # the state file; None when absent or unreadable
    error: str | None  # why the state file could not be read
    running: bool  # the pid in the state file is a live daemon
    flag: bool  # the maintenance flag file exists

    @property
    def flag_path(self) -> str:
        """The maintenance flag file of this instance."""
        return StateFile(self.statefile).maintenance_flag

    @property
    def present(self) -> bool:
        """True when a state file exists (a running daemon, or a stale file)."""
        return self.status is not None or self.error is not None

    @property
    def pid(self) -> int | None:
        """The daemon's pid from the state file (shared by a ``pyucarp run``'s instances)."""
        return None if self.status is None else self.status.pid

    @property
    def problems(self) -> tuple[str, ...]:
        """Why the instance is unhealthy (see the module doc); empty when healthy."""
        if not self.present:
            return ()  # only a maintenance flag: no daemon, nothing to judge
        status = self.status
        if status is None:
            return (PROBLEM_UNREADABLE,)
        if not self.running:
            return (PROBLEM_DEAD,)  # the rest of a stale file is history
        problems = []
        if time.time() - status.updated > HUNG_AFTER_SECONDS:
            problems.append(PROBLEM_HUNG)
        if not status.link_up:
            problems.append(PROBLEM_LINK_DOWN)
        if status.last_script is not None and status.last_script.failed:
            problems.append(PROBLEM_SCRIPT_FAILED)
        if status.health == "unhealthy" or status.state == STATE_FAULT:
            problems.append(PROBLEM_SERVICE)
        return tuple(problems)

    @property
    def tracked(self) -> bool:
        """Whether checks or tracked interfaces judge this instance's service."""
        return self.status is not None and self.status.health != HEALTH_UNTRACKED

    @property
    def healthy(self) -> bool:
        """A running daemon with no problem."""
        return self.present and not self.problems

    def as_json(self) -> dict[str, Any]:
        """The state document plus what ``status`` concluded, for ``--json``."""
        doc: dict[str, Any] = {} if self.status is None else self.status.to_json()
        doc.update(
            name=self.name,
            statefile=self.statefile if self.present else None,
            running=self.running,
            healthy=self.healthy,
            problems=list(self.problems),
            maintenance_flag=self.flag,
        )
        if self.error is not None:
            doc["error"] = self.error
        return doc


def _read_state(path: str) -> tuple[InstanceStatus | None, str | None]:
    """The state file, or (None, why); FileNotFoundError is left to the caller."""
    try:
        return StateFile(path).read(), None
    except FileNotFoundError:
        raise
    except OSError as exc:
        return None, exc.strerror or str(exc)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        return None, f"not JSON: {exc}"
    except ValueError as exc:  # InstanceStatus.from_json names the first wrong field
        return None, f"not a pyucarp state file: {exc}"


def scan(statedir: str, alive: Callable[[int], bool] = daemon_alive) -> list[Instance]:
    """Every instance in ``statedir``: state files, and maintenance flags without one.

    Sorted by name. A missing directory simply holds no instance.
    """
    try:
        entries = os.listdir(statedir)
    except FileNotFoundError:
        return []
    stems = set()
    for entry in entries:
        if entry.startswith("."):
            continue  # temporary files of atomic writes
        for suffix in (STATE_SUFFIX, FLAG_SUFFIX):
            if entry.endswith(suffix) and len(entry) > len(suffix):
                stems.add(entry[: -len(suffix)])
    result = []
    for stem in sorted(stems):
        instance = load(statedir, stem, alive)
        if instance is not None:
            result.append(instance)
    return result


def load(statedir: str, name: str, alive: Callable[[int], bool] = daemon_alive) -> Instance | None:
    """The instance ``name`` in ``statedir``, or None when it has neither file."""
    statefile = os.path.join(statedir, name + STATE_SUFFIX)
    flag = StateFile(statefile).maintenance_requested()
    try:
        status, error = _read_state(statefile)
    except FileNotFoundError:
        if not flag:
            return None  # the daemon exited between listdir and open
        return Instance(name, statefile, None, None, False, flag)
    running = status is not None and alive(status.pid)
    return Instance(name, statefile, status, error, running, flag)


# --------------------------------------------------------------------------- formatting


def human_ago(seconds: float) -> str:
    """``3m12s ago`` style: two units at most, never negative."""
    s = int(max(0.0, seconds))
    if s < 60:
        text = f"{s}s"
    elif s < 3600:
        text = f"{s // 60}m{s % 60:02d}s"
    elif s < 86400:
        text = f"{s // 3600}h{s % 3600 // 60:02d}m"
    else:
        text = f"{s // 86400}d{s % 86400 // 3600:02d}h"
    return text + " ago"


def describe_script(last: ScriptRecord | None) -> str:
    """The last script and how it ended, e.g. ``up exit 0`` or ``down timed out``."""
    if last is None:
        return "-"
    if last.timed_out:
        return f"{last.kind} timed out"
    if last.error is not None:
        return f"{last.kind} failed: {last.error}"
    if last.returncode is None:
        return f"{last.kind} killed"
    return f"{last.kind} exit {last.returncode}"


def describe_master(status: InstanceStatus | None) -> str:
    """The master an instance knows of: ``192.0.2.1 1/0``, ``(self)`` when it is us."""
    if status is None or status.master is None:
        return "-"
    master = status.master
    text = f"{master.address} {master.advbase}/{master.advskew}"
    if master.address == status.srcip:
        text += " (self)"
    return text


def describe_service(status: InstanceStatus | None) -> str:
    """The service's health and its tracked interfaces: ``unhealthy (eth1 down)``."""
    if status is None or status.health == HEALTH_UNTRACKED:
        return "-"
    links = ", ".join(
        f"{name} {'up' if up else 'down' if up is False else '?'}"
        for name, up in sorted(status.tracked_interfaces.items())
    )
    return f"{status.health} ({links})" if links else status.health


def describe_check(check: CheckRecord | None, width: int = OUTPUT_CELL_MAX) -> str:
    """The last check and how it ended: ``ok (0.01s)``, ``exit 1 (0.02s): refused``,
    ``timed out (1.00s)``; its output line cut to ``width`` characters."""
    if check is None:
        return "-"
    if check.error is not None:
        return f"not started: {check.error}"
    if check.timed_out:
        verdict = "timed out"
    elif check.returncode is None:
        verdict = "killed"
    elif check.ok:
        verdict = "ok"
    else:
        verdict = f"exit {check.returncode}"
    text = f"{verdict} ({check.duration:.2f}s)"
    output = check.output
    if output:
        if len(output) > width:
            output = output[: max(0, width - 3)] + "..."
        text += f": {output}"
    return text


def dropped_total(status: InstanceStatus) -> int:
    """All refused frames of the instance, every reason together."""
    return sum(status.dropped.values())


def _maintenance_cell(instance: Instance) -> str:
    if instance.status is None:
        return "flag" if instance.flag else "-"
    on = instance.status.maintenance
    text = "yes" if on else "no"
    if instance.running and on != instance.flag:
        text += "*"  # flag file and daemon disagree: the daemon was not signalled
    return text


def _health_cell(instance: Instance) -> str:
    if not instance.present:
        return "stopped"
    problems = instance.problems
    if not problems:
        return "ok"
    if PROBLEM_DEAD in problems:
        return f"dead (stale file, pid {instance.pid} not running)"
    if PROBLEM_UNREADABLE in problems:
        return f"unreadable ({instance.error})"
    return ", ".join(problems)


def _state_cell(instance: Instance) -> str:
    if not instance.present:
        return "STOPPED"
    if instance.status is None:
        return "?"
    state = instance.status.state
    return state if instance.running else f"DEAD (was {state})"


STATUS_COLUMNS = (
    "NAME", "INTERFACE", "VHID", "VIP", "STATE", "SINCE", "MASTER",
    "TRANS", "MAINT", "LAST SCRIPT", "DROPPED", "HEALTH",
)
SERVICE_COLUMNS = ("SERVICE", "LAST CHECK")
"""Shown before DROPPED when at least one instance tracks its service's health."""


def status_columns(instances: Iterable[Instance]) -> tuple[str, ...]:
    """The table's header: the service columns only when some instance has checks."""
    if not any(i.tracked for i in instances):
        return STATUS_COLUMNS
    at = STATUS_COLUMNS.index("DROPPED")
    return (*STATUS_COLUMNS[:at], *SERVICE_COLUMNS, *STATUS_COLUMNS[at:])


def status_rows(instances: Iterable[Instance], now: float,
                service: bool = False) -> list[tuple[str, ...]]:
    """The cells of the status table, one tuple per instance (header not included);
    with ``service``, the SERVICE and LAST CHECK cells too (see :func:`status_columns`)."""
    rows: list[tuple[str, ...]] = []
    for inst in instances:
        s = inst.status
        if s is None:
            cells: tuple[str, ...] = ("-", "-", "-", _state_cell(inst), "-", "-", "-",
                                      _maintenance_cell(inst), "-")
            health: tuple[str, ...] = ("-", "-")
            dropped = "-"
        else:
            cells = (
                s.interface or "-",
                str(s.vhid),
                s.vip or "-",
                _state_cell(inst),
                human_ago(now - s.since),
                describe_master(s),
                str(s.transitions),
                _maintenance_cell(inst),
                describe_script(s.last_script),
            )
            health = (describe_service(s), describe_check(s.last_check))
            dropped = str(dropped_total(s))
        rows.append((inst.name, *cells, *(health if service else ()), dropped,
                     _health_cell(inst)))
    return rows


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def status_exit_code(instances: Sequence[Instance]) -> int:
    """0 all healthy, 1 one is not, 3 no instance (flag files alone do not count)."""
    present = [i for i in instances if i.present]
    if not present:
        return EXIT_NOT_RUNNING
    return EXIT_OK if all(i.healthy for i in present) else EXIT_UNHEALTHY


# --------------------------------------------------------------------------- status


def status_main(argv: list[str]) -> int:
    """``pyucarp status [--statedir DIR] [--json]``."""
    parser = argparse.ArgumentParser(
        prog="pyucarp status",
        description="Show every pyucarp instance of this host, from its state file.",
        epilog="Exit status: 0 all healthy, 1 one is not (dead, link down, script failed, "
        "hung, service unhealthy or FAULT), 3 no instance.",
    )
    _add_statedir(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list for machines")
    args = parser.parse_args(argv)
    instances = scan(args.statedir)
    if args.json:
        json.dump([i.as_json() for i in instances], sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
    elif not instances:
        print(f"no pyucarp instance in {args.statedir}")
    else:
        header = status_columns(instances)
        rows = status_rows(instances, time.time(), service=header != STATUS_COLUMNS)
        sys.stdout.write(format_table(header, rows))
        if any(_maintenance_cell(i).endswith("*") for i in instances):
            print("* the maintenance flag file and the daemon disagree: "
                  "use pyucarp demote/promote, which also signal the daemon")
    return status_exit_code(instances)


# --------------------------------------------------------------------------- demote / promote


class SelectionError(Exception):
    """A NAME given to demote/promote matches no instance."""


def _matches(instance: Instance, name: str) -> bool:
    """Whether ``name`` (file stem, interface or VIP) designates ``instance``."""
    if name == instance.name:
        return True
    status = instance.status
    return status is not None and name in (status.interface, status.vip)


def select(instances: Sequence[Instance], names: Sequence[str], *, all_: bool,
           statedir: str, demote: bool) -> list[Instance]:
    """The instances meant by ``names`` (file stem, interface or VIP) or by ``--all``.

    An interface selects every instance on it. A stem with no instance yet is accepted
    for ``demote`` (the flag then waits for the daemon's next start) when it looks like
    ``<interface>-<vhid>``; anything else that matches nothing is an error.
    """
    if all_:
        return [i for i in instances if i.present or (not demote and i.flag)]
    chosen: dict[str, Instance] = {}
    for name in names:
        matches = [i for i in instances if _matches(i, name)]
        if not matches and demote and _looks_like_stem(name):
            matches = [Instance(name, os.path.join(statedir, name + STATE_SUFFIX),
                                None, None, False, False)]
        if not matches:
            raise SelectionError(f"no instance matches [{name}] in {statedir}")
        for match in matches:
            chosen.setdefault(match.name, match)
    return list(chosen.values())


def _looks_like_stem(name: str) -> bool:
    head, sep, vhid = name.rpartition("-")
    return bool(head and sep and vhid.isdigit() and 1 <= int(vhid) <= 255
                and "/" not in name and not name.startswith("."))


def set_flag(instance: Instance, on: bool) -> None:
    """Create or remove the maintenance flag file (it outlives daemon restarts)."""
    if on:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write(instance.flag_path, f"maintenance requested at {stamp}\n".encode())
    else:
        try:
            os.unlink(instance.flag_path)
        except FileNotFoundError:
            pass


def _confirmed(statedir: str, name: str, pid: int, on: bool,
               alive: Callable[[int], bool]) -> Instance | None:
    """The instance once its own state file shows the flag taken into account."""
    current = load(statedir, name, alive)
    if current is None or current.status is None or current.status.pid != pid:
        return None
    return current if current.status.maintenance == on else None


def _result_line(instance: Instance, on: bool) -> str:
    status = instance.status
    state = "?" if status is None else status.state
    master = describe_master(status)
    return (f"{instance.name}: maintenance {'on' if on else 'off'}, {state}"
            + (f", master {master}" if master != "-" else ""))


def switch_maintenance(statedir: str, targets: Sequence[Instance], on: bool, timeout: float,
                       alive: Callable[[int], bool] = daemon_alive,
                       out: Callable[[str], None] = print) -> int:
    """Set or clear the flag of each target, signal its daemon, wait for it to confirm.

    Every flag is written before any signal is sent, and each process is signalled once:
    a ``pyucarp run`` process re-reads the flag of every instance it runs, so several
    targets of one process are served by one signal, and its other instances (whose
    flags did not change) stay as they are. Each target is confirmed by its own state
    file. Returns 0 when every running daemon confirmed (or there was none to ask), else 1.
    """
    status = EXIT_OK
    waiting: dict[str, int] = {}
    for inst in targets:
        try:
            set_flag(inst, on)
        except OSError as exc:
            out(f"{inst.name}: cannot {'create' if on else 'remove'} {inst.flag_path}: "
                f"{exc.strerror or exc}")
            status = EXIT_UNHEALTHY
            continue
        pid = inst.pid
        if not inst.running or pid is None:
            verb = "set" if on else "removed"
            when = "it starts in maintenance" if on else "it starts normally"
            out(f"{inst.name}: not running; maintenance flag {verb}: {when}")
            continue
        waiting[inst.name] = pid
    for pid in dict.fromkeys(waiting.values()):  # each process once, in target order
        try:
            os.kill(pid, CONTROL_SIGNAL)
        except OSError as exc:
            for name in [n for n, p in waiting.items() if p == pid]:
                out(f"{name}: cannot signal pid {pid}: {exc.strerror or exc}")
                del waiting[name]
            status = EXIT_UNHEALTHY
    deadline = time.monotonic() + timeout
    while waiting:
        for name, pid in list(waiting.items()):
            current = _confirmed(statedir, name, pid, on, alive)
            if current is not None:
                out(_result_line(current, on))
                del waiting[name]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    for name, pid in waiting.items():
        out(f"{name}: the flag is {'set' if on else 'removed'}, but pid {pid} did not "
            f"confirm within {timeout:g}s (its state file does not show it)")
        status = EXIT_UNHEALTHY
    return status


def _maintenance_main(argv: list[str], on: bool) -> int:
    verb = "demote" if on else "promote"
    parser = argparse.ArgumentParser(
        prog=f"pyucarp {verb}",
        description=(
            "Put instances in persistent maintenance: hand the VIP over at once and stay "
            "BACKUP, also across daemon restarts, until promoted."
            if on else
            "Take instances out of maintenance: they take part in elections again."
        ),
        epilog="NAME is an instance name (state file stem, e.g. eth0-7), an interface "
        "(every instance on it) or a virtual address. Exit status: 0 done, 1 a daemon did "
        "not confirm or a file could not be changed, 2 usage or unknown NAME.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--all", action="store_true", help="every instance of this host")
    _add_statedir(parser)
    parser.add_argument("--timeout", type=float, default=DEFAULT_WAIT_SECONDS,
                        help=f"seconds to wait for each daemon (default {DEFAULT_WAIT_SECONDS:g})")
    args = parser.parse_args(argv)
    if bool(args.names) == bool(args.all):
        parser.error("give NAME... or --all")
    try:
        targets = select(scan(args.statedir), args.names, all_=args.all,
                         statedir=args.statedir, demote=on)
    except SelectionError as exc:
        print(f"pyucarp {verb}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not targets:
        print(f"no pyucarp instance in {args.statedir}")
        return EXIT_OK
    return switch_maintenance(args.statedir, targets, on, max(0.0, args.timeout))


def demote_main(argv: list[str]) -> int:
    """``pyucarp demote NAME...|--all [--statedir DIR] [--timeout S]``."""
    return _maintenance_main(argv, on=True)


def promote_main(argv: list[str]) -> int:
    """``pyucarp promote NAME...|--all [--statedir DIR] [--timeout S]``."""
    return _maintenance_main(argv, on=False)


def _add_statedir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--statedir", default=default_statedir(), metavar="DIR",
                        help="the daemons' --statedir (default /run/pyucarp; netns-INODE below "
                        "it in another network namespace)")
