"""What the namespace tests of the daemon share: pyucarp refusing a command line."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyucarp.lab.daemons import LOG_LINE_RE, run_pyucarp
from pyucarp.lab.netlab import Host


def interface_addresses(host: Host) -> list[dict[str, Any]]:
    """Every address on ``host``'s eth0, both families and link-local ones included, as
    ``ip -j addr`` describes it (flags such as ``tentative`` and lifetimes too)."""
    out = host.run(["ip", "-j", "addr", "show", "dev", host.ifname]).stdout
    return [info for link in json.loads(out or "[]") for info in link.get("addr_info", [])]


def assert_refused(host: Host, args: Sequence[str], words: str, *, record: Path,
                   statedir: Path | None = None, timeout: float = 10.0,
                   exit_code: int | None = 1) -> None:
    """Run pyucarp with ``args`` on ``host`` and check that it refuses them as ucarp does.

    It exits with ``exit_code`` (None: any failure) and says why in one ``[ERROR]`` line on
    stderr, in ucarp's console format and holding ``words``, nothing on stdout, no
    traceback. It leaves nothing behind: no script call in ``record`` (the recording
    wrappers' file), no process on the host, eth0's addresses as they were, nothing in
    ``statedir`` (handed to pyucarp when given).
    """
    before = interface_addresses(host)
    done = run_pyucarp(host, args, timeout=timeout, statedir=statedir)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if exit_code is None:
        assert done.returncode != 0, (done.stdout, done.stderr)
    else:
        assert done.returncode == exit_code, (done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    assert LOG_LINE_RE.match(lines[0]) and "[ERROR] " in lines[0], lines
    assert words in lines[0], lines
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    time.sleep(0.1)  # a script started anyway would have recorded its call by now
    assert not record.exists() or record.read_text() == "", "a script ran"
    assert not host.pids(), "something is still running"
    assert interface_addresses(host) == before
    if statedir is not None:
        assert not statedir.exists() or not any(statedir.iterdir())
