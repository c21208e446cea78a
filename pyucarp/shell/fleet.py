"""``pyucarp run``: the instances of the interface files, kept in step with them.

At start and on every SIGHUP the files are read again (:mod:`pyucarp.config.interface_files`)
and compared with what runs, file by file (by name, then by digest):

* unchanged: left alone — no state change, no late advert;
* removed: the instance leaves (downscript, then its leave advert) and is closed;
* new: checked as the ``ucarp`` command checks (interface, source address, scripts), then
  started; a check that fails is logged and the file skipped;
* changed: the old instance leaves and the new one starts;
* broken (a :class:`~pyucarp.config.interface_files.BadFile`): logged; if the file ran
  before, its instance keeps running with the settings it had — a typo in one file must
  not take an address down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyucarp.config.interface_files import BadFile, InstanceFile
from pyucarp.errors import UcarpError
from pyucarp.shell.loop import EventLoop, check_instance
from pyucarp.shell.runtime import InstanceRuntime

Loader = Callable[[], Sequence[InstanceFile | BadFile]]
"""Reads the interface files now; raises UcarpError when the directory cannot be read."""


class Fleet:
    """The running instances of ``pyucarp run``, by interface file."""

    def __init__(self, loop: EventLoop, load: Loader, *, statedir: str | None = None) -> None:
        self.loop = loop
        self.load = load
        self.statedir = statedir
        self.running: dict[str, tuple[InstanceFile, InstanceRuntime]] = {}

    def sync(self, *, start: bool) -> dict[str, int]:
        """Read the files and make the instances match them; counts of what changed.

        ``start`` False before the loop runs (it starts what was added when it begins).
        """
        log = self.loop.log
        try:
            entries = self.load()
        except UcarpError as exc:
            log.error(f"Cannot read the interface files, nothing changed: {exc}")
            return {"error": 1}
        counts = {"kept": 0, "added": 0, "removed": 0, "restarted": 0, "bad": 0}
        good = {e.name: e for e in entries if isinstance(e, InstanceFile)}
        for entry in entries:
            if isinstance(entry, BadFile):
                counts["bad"] += 1
                keeps = ""
                if entry.name in self.running:
                    keeps = " (its instance keeps running as it was)"
                log.error(f"{entry.path}: {entry.problem}{keeps}")
        named = {e.name for e in entries}
        # Stop first, then start: a file renamed, or a vhid moved from one file to another,
        # must not meet its old instance still holding the vhid.
        for name in [n for n in self.running if n not in named]:
            log.warning(f"{self.running[name][0].path} is gone: its instance leaves")
            self._stop(name)
            counts["removed"] += 1
        changed: set[str] = set()
        for name, entry in good.items():
            current = self.running.get(name)
            if current is not None and current[0].digest != entry.digest:
                log.warning(f"{entry.path} changed: restarting its instance")
                self._stop(name)
                changed.add(name)
        for name, entry in good.items():
            if name in self.running:
                counts["kept"] += 1
            elif self._add(entry, start=start):
                counts["restarted" if name in changed else "added"] += 1
        return counts

    def _add(self, entry: InstanceFile, *, start: bool) -> bool:
        config = entry.config
        if self.statedir is not None:
            config = config._replace(statedir=self.statedir)
        ilog = self.loop.instance_log(config)
        try:
            facts = check_instance(config, ilog)
            runtime = self.loop.add(config, facts, start=start,
                                    script_env=dict(entry.script_env))
        except UcarpError as exc:
            self.loop.log.error(f"{entry.path}: {exc}")
            return False
        self.running[entry.name] = (entry, runtime)
        return True

    def _stop(self, name: str) -> None:
        _entry, runtime = self.running.pop(name)
        self.loop.remove(runtime)

    def reload(self, loop: EventLoop) -> None:
        """SIGHUP: re-read the files and log what changed."""
        counts = self.sync(start=True)
        if "error" not in counts:
            loop.log.notice(
                "Reloaded: " + ", ".join(f"{n} {what}" for what, n in counts.items())
            )
