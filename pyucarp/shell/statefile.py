"""The per-instance JSON state file, written atomically on every change."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from pyucarp.shell.atomic import atomic_write
from pyucarp.config.settings import Config

DEFAULT_STATEDIR = "/run/pyucarp"
STATE_REFRESH_SECONDS = 5.0  # a running daemon rewrites its state file at least this often
# `pyucarp demote/promote` write or remove the maintenance flag, then send this signal so
# the daemon re-reads it at once (SIGUSR2 keeps ucarp's meaning: a 3 s demotion).
CONTROL_SIGNAL = signal.SIGRTMIN + 1


def instance_name(config: Config) -> str:
    """A stable file-name-safe name for an instance: ``<interface>-<vhid>``."""
    return f"{config.interface.replace(':', '_').replace('/', '_')}-{config.vhid}"


class StateFile:
    """``<statedir>/<instance>.json``: what ``pyucarp status`` and metrics read."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def for_config(cls, config: Config) -> StateFile:
        """The state file of an instance (in --statedir, else /run/pyucarp)."""
        statedir = config.statedir or DEFAULT_STATEDIR
        return cls(os.path.join(statedir, instance_name(config) + ".json"))

    @property
    def maintenance_flag(self) -> str:
        """The file whose presence keeps the instance in maintenance (BACKUP)."""
        return self.path[: -len(".json")] + ".maintenance"

    def maintenance_requested(self) -> bool:
        """True while the maintenance flag exists: it survives daemon restarts."""
        return os.path.exists(self.maintenance_flag)

    def write(self, snapshot: dict[str, Any]) -> None:
        """Replace the file atomically: readers never see half a document."""
        atomic_write(self.path, (json.dumps(snapshot, indent=1, sort_keys=True) + "\n").encode())

    def remove(self) -> None:
        """Forget the instance (it stopped)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
