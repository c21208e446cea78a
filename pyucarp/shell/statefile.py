"""The per-instance JSON state file: its schema, written atomically on every change.

:class:`InstanceStatus` is the one definition of what the file holds: the daemon builds
one and writes :meth:`InstanceStatus.to_json`; ``pyucarp status``, ``demote``/``promote``
and ``metrics`` read files back with :meth:`InstanceStatus.from_json`, which checks every
field's type, so a reader never meets a half-understood document.
"""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Callable

from pyucarp.config.settings import Config
from pyucarp.records import TYPE_CHECKING, NamedTuple  # lean: no dataclasses/typing, ~3 MiB
from pyucarp.shell.atomic import atomic_write
from pyucarp.shell.scripts import ScriptResult

if TYPE_CHECKING:
    from typing import Any

# The daemon writes state files and never reads one: it writes them with json's own C
# string quoting, without the json package (~0.4 MiB per daemon with the re it imports).
try:
    _json_string: Callable[[str], str] = importlib.import_module(
        "_json"
    ).encode_basestring_ascii
except ImportError:  # pragma: no cover - Pythons without the C accelerator
    _json_string = importlib.import_module("json").dumps

DEFAULT_STATEDIR = "/run/pyucarp"
"""The state directory of the host's own network namespace."""
INITIAL_NETNS_INODE = 0xEFFFFFF9  # the kernel's PROC_NET_INIT_INO: the first namespace's
STATE_REFRESH_SECONDS = 5.0  # a running daemon rewrites its state file at least this often
# `pyucarp demote/promote` write or remove the maintenance flag, then send this signal so
# the daemon re-reads it at once (SIGUSR2 keeps ucarp's meaning: a 3 s demotion).
CONTROL_SIGNAL = signal.SIGRTMIN + 1


class MasterRecord(NamedTuple):
    """The master last heard from (or this node itself)."""

    address: str
    advbase: int
    advskew: int


ScriptRecord = ScriptResult
"""How the last up or down script ended: the runner's own record, kept as it is."""


class CheckRecord(NamedTuple):
    """How the last run of a tracked check ended (``pyucarp.shell.checks.CheckResult``)."""

    command: str
    ok: bool
    returncode: int | None
    duration: float
    timed_out: bool
    output: str  # its last line of output
    error: str | None


HEALTH_UNTRACKED = "untracked"  # no checks, no tracked interfaces
HEALTH_VALUES = ("healthy", "unhealthy", "unknown", HEALTH_UNTRACKED)


class InstanceStatus(NamedTuple):
    """Everything an admin wants to know about one instance: the state file's schema."""

    pid: int
    name: str
    interface: str
    vhid: int
    vip: str
    srcip: str
    advbase: int
    advskew: int
    state: str  # INIT, BACKUP, MASTER or FAULT
    since: float  # wall-clock time of the last state change
    updated: float  # wall-clock time of this snapshot: the daemon's heartbeat
    transitions: int
    master: MasterRecord | None
    maintenance: bool
    link_up: bool
    adverts_sent: int
    adverts_received: int
    send_errors: int
    dropped: dict[str, int]  # by drop reason
    replay_window: int
    last_script: ScriptRecord | None
    # Service health; files written before these fields existed read as untracked.
    health: str = HEALTH_UNTRACKED  # one of HEALTH_VALUES
    last_check: CheckRecord | None = None
    tracked_interfaces: dict[str, bool | None] = {}  # shared default: never mutated
    vips: tuple[str, ...] = ()  # every address of the virtual host (vip is the first)

    def to_json(self) -> dict[str, Any]:
        """The JSON document (nested records as objects)."""
        doc = self._asdict()
        doc["master"] = None if self.master is None else self.master._asdict()
        if self.last_script is not None:
            doc["last_script"] = {**self.last_script._asdict(), "argv": list(self.last_script.argv)}
        doc["last_check"] = None if self.last_check is None else self.last_check._asdict()
        doc["tracked_interfaces"] = dict(self.tracked_interfaces)
        doc["vips"] = list(self.vips)
        return doc

    @classmethod
    def from_json(cls, doc: object) -> InstanceStatus:
        """Read a document back; ValueError names the first field that is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        values = {name: _field(doc, name, _TYPES[name]) for name in _TYPES}
        dropped = doc.get("dropped", {})
        if not isinstance(dropped, dict) or not all(
            isinstance(k, str) and _is_int(v) for k, v in dropped.items()
        ):
            raise ValueError("field 'dropped' is not a map of counts")
        master = doc.get("master")
        last = doc.get("last_script")
        health = doc.get("health", HEALTH_UNTRACKED)
        if health not in HEALTH_VALUES:
            raise ValueError(f"field 'health' is not one of {', '.join(HEALTH_VALUES)}")
        check = doc.get("last_check")
        tracked = doc.get("tracked_interfaces", {})
        if not isinstance(tracked, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, bool)) for k, v in tracked.items()
        ):
            raise ValueError("field 'tracked_interfaces' is not a map of carrier states")
        vips = doc.get("vips", [])
        if not isinstance(vips, list) or not all(isinstance(v, str) for v in vips):
            raise ValueError("field 'vips' is not a list of addresses")
        return cls(
            **values,
            vips=tuple(vips),
            dropped=dict(dropped),
            master=None if master is None else _master(master),
            last_script=None if last is None else _script(last),
            health=health,
            last_check=None if check is None else _check(check),
            tracked_interfaces=dict(tracked),
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(name: str) -> Any:
    raise ValueError(f"field {name!r} has the wrong type")


def _field(doc: dict[str, Any], name: str, kind: tuple[type, ...]) -> Any:
    """``doc[name]`` if it has one of the types ``kind`` (a bool is no number here)."""
    if name not in doc:
        raise ValueError(f"field {name!r} is missing")
    value = doc[name]
    if value is None and type(None) in kind:
        return None
    if (isinstance(value, bool) and bool not in kind) or not isinstance(value, kind):
        return _bad(name)
    if kind is _NUMBER:
        return float(doc[name])
    return value


def _master(doc: object) -> MasterRecord:
    if not isinstance(doc, dict):
        return _bad("master")  # type: ignore[no-any-return]
    return MasterRecord(**{n: _field(doc, n, t) for n, t in _MASTER_TYPES.items()})


def _check(doc: object) -> CheckRecord:
    if not isinstance(doc, dict):
        return _bad("last_check")  # type: ignore[no-any-return]
    return CheckRecord(**{n: _field(doc, n, t) for n, t in _CHECK_TYPES.items()})


def _script(doc: object) -> ScriptRecord:
    if not isinstance(doc, dict):
        return _bad("last_script")  # type: ignore[no-any-return]
    values = {n: _field(doc, n, t) for n, t in _SCRIPT_TYPES.items()}
    argv = values["argv"]
    if not all(isinstance(a, str) for a in argv):
        return _bad("last_script")  # type: ignore[no-any-return]
    values["argv"] = tuple(argv)
    return ScriptRecord(**values)


_NUMBER = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (int,), "name": (str,), "interface": (str,), "vhid": (int,), "vip": (str,),
    "srcip": (str,), "advbase": (int,), "advskew": (int,), "state": (str,),
    "since": _NUMBER, "updated": _NUMBER, "transitions": (int,), "maintenance": (bool,),
    "link_up": (bool,), "adverts_sent": (int,), "adverts_received": (int,),
    "send_errors": (int,), "replay_window": (int,),
}
_MASTER_TYPES: dict[str, tuple[type, ...]] = {
    "address": (str,), "advbase": (int,), "advskew": (int,),
}
_CHECK_TYPES: dict[str, tuple[type, ...]] = {
    "command": (str,), "ok": (bool,), "returncode": (int, type(None)), "duration": _NUMBER,
    "timed_out": (bool,), "output": (str,), "error": (str, type(None)),
}
_SCRIPT_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,), "argv": (list,), "returncode": (int, type(None)),
    "signal": (int, type(None)), "duration": _NUMBER, "timed_out": (bool,),
    "error": (str, type(None)),
}


def json_text(value: object, indent: str = "\n") -> str:
    """``value`` exactly as ``json.dumps(value, indent=1, sort_keys=True)`` writes it.

    For what a state document holds: None, bools, finite numbers, strings, lists, tuples
    and dicts with string keys.
    """
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, int):
        return int.__repr__(value)  # an IntEnum (a signal number) is written as its number
    if isinstance(value, float):
        return float.__repr__(value)
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{_json_string(k)}: {json_text(v, inner)}" for k, v in sorted(value.items())]
        return "{" + inner + ("," + inner).join(items) + indent + "}" if items else "{}"
    if isinstance(value, (list, tuple)):
        parts = [json_text(v, inner) for v in value]
        return "[" + inner + ("," + inner).join(parts) + indent + "]" if parts else "[]"
    raise TypeError(f"{type(value).__name__} in a state document")


def instance_name(config: Config) -> str:
    """A stable file-name-safe name for an instance: ``<interface>-<vhid>``."""
    return f"{config.interface.replace(':', '_').replace('/', '_')}-{config.vhid}"


def default_statedir() -> str:
    """/run/pyucarp, or a directory of its own for each other network namespace.

    Daemons in two namespaces of one machine share /run, and may well manage the same
    interface name and vhid there: each namespace (named by its inode, which is what
    ``ip netns identify`` compares too) gets ``/run/pyucarp/netns-<inode>``. The admin
    commands run in the same namespace find the same directory.
    """
    try:
        ours = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return DEFAULT_STATEDIR
    try:
        hosts = os.stat("/proc/1/ns/net").st_ino
    except OSError:  # pid 1 may hide it (sandboxes): the initial namespace's fixed inode
        hosts = INITIAL_NETNS_INODE
    if ours == hosts:
        return DEFAULT_STATEDIR
    return os.path.join(DEFAULT_STATEDIR, f"netns-{ours}")


class StateFile:
    """``<statedir>/<instance>.json``: what ``pyucarp status`` and metrics read."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def for_config(cls, config: Config) -> StateFile:
        """The state file of an instance (in --statedir, else the namespace's default)."""
        statedir = config.statedir or default_statedir()
        return cls(os.path.join(statedir, instance_name(config) + ".json"))

    @property
    def maintenance_flag(self) -> str:
        """The file whose presence keeps the instance in maintenance (BACKUP)."""
        return self.path[: -len(".json")] + ".maintenance"

    def maintenance_requested(self) -> bool:
        """True while the maintenance flag exists: it survives daemon restarts."""
        return os.path.exists(self.maintenance_flag)

    def write(self, status: InstanceStatus) -> None:
        """Replace the file atomically: readers never see half a document."""
        text = json_text(status.to_json()) + "\n"
        atomic_write(self.path, text.encode())

    def read(self) -> InstanceStatus:
        """The document as the daemon last wrote it (OSError, ValueError)."""
        import json  # readers only: not on the daemon's import path

        with open(self.path, "rb") as handle:
            return InstanceStatus.from_json(json.loads(handle.read(1 << 20)))

    def remove(self) -> None:
        """Forget the instance (it stopped)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
