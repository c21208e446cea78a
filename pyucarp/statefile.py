"""The per-instance JSON state file, written atomically on every change."""

from __future__ import annotations

import json
import os
from typing import Any

from .atomic import atomic_write
from .config import Config

DEFAULT_STATEDIR = "/run/pyucarp"


def instance_name(config: Config) -> str:
    """A stable file-name-safe name for an instance: ``<interface>-<vhid>``."""
    return f"{config.interface.replace(':', '_').replace('/', '_')}-{config.vhid}"


class StateFile:
    """``<statedir>/<instance>.json``: what ``pyucarp status`` and metrics read."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def for_config(cls, config: Config) -> StateFile | None:
        """The state file of an instance, or None when no state directory is set."""
        if not config.statedir:
            return None
        return cls(os.path.join(config.statedir, instance_name(config) + ".json"))

    def write(self, snapshot: dict[str, Any]) -> None:
        """Replace the file atomically: readers never see half a document."""
        atomic_write(self.path, (json.dumps(snapshot, indent=1, sort_keys=True) + "\n").encode())

    def remove(self) -> None:
        """Forget the instance (it stopped)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
