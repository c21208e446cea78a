"""The daemon's footprint: what the ``ucarp`` command imports, and what it must never import.

Resident memory per daemon is a product goal (bench/run.py measures it): every module on
the daemon's import path is paid by every instance. The probe runs the real start-up, up
to a missing interface, in a fresh ``python3 -S``: without site hooks that could import
these modules first and so hide them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyucarp.records import NamedTuple

SOURCE_ROOT = Path(__file__).resolve().parent.parent

# Each with why it stays out (RSS from a bare interpreter, measured on CPython 3.11).
HEAVY = {
    "dataclasses": "imports inspect, dis, tokenize...: ~2 MiB; pyucarp.records instead",
    "inspect": "comes with dataclasses",
    "typing": "~1.2 MiB with the re it imports; pyucarp.records instead",
    "subprocess": "~1.2 MiB with threading; scripts use os.posix_spawn",
    "threading": "comes with subprocess",
    "pathlib": "~1 MiB (re, fnmatch, urllib); strings and os.path",
    "datetime": "~0.5 MiB; console timestamps come from time",
    "re": "~0.4 MiB; options read numbers and addresses by hand",
    "json": "imports re; the state file is written with _json's string quoting",
    "random": "~0.2 MiB; the loop reads os.urandom",
    "hashlib": "OpenSSL, ~4 MiB; the codec uses the builtin _sha1",
    "scapy": "only pyucarp watch",
}
# pyucarp's own modules that the ucarp command has no use for.
NOT_FOR_UCARP = ("pyucarp.ops", "pyucarp.lab", "pyucarp.shell.fleet",
                 "pyucarp.config.interface_files")

_PROBE = """
import sys
from pyucarp import cli
status = cli.ucarp_main(sys.argv[1:])
print(status)
print(" ".join(sorted(sys.modules)))
"""


def _daemon_modules(tmp_path: Path) -> tuple[int, set[str], str]:
    """Run the ucarp command to its interface check; its status, modules and stderr."""
    env = dict(os.environ)
    # -S: no site-packages on sys.path either; the daemon's one dependency goes back in.
    spec = importlib.util.find_spec("_netifaces")  # netifaces' C part, in site-packages
    assert spec is not None and spec.origin is not None
    site = os.path.dirname(spec.origin)
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE_ROOT), site])
    args = ["-i", "pyucarpnone0", "-s", "192.0.2.1", "-v", "1", "-p", "secret",
            "-a", "192.0.2.100", "-f", "none", f"--statedir={tmp_path}"]
    proc = subprocess.run([sys.executable, "-S", "-c", _PROBE, *args], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout + proc.stderr
    return int(lines[0]), set(lines[1].split()), proc.stderr


def test_the_ucarp_command_imports_nothing_heavy(tmp_path: Path) -> None:
    status, modules, stderr = _daemon_modules(tmp_path)
    # It got as far as the event loop, so the whole daemon path was imported.
    assert status == 2 and "Unable to find MAC address of [pyucarpnone0]" in stderr, stderr
    for needed in ("pyucarp.shell.loop", "pyucarp.shell.runtime", "pyucarp.shell.scripts",
                   "pyucarp.shell.statefile", "pyucarp.core.instance"):
        assert needed in modules, f"{needed} not imported: the check below is void"
    heavy = {m: why for m, why in HEAVY.items() if m in modules}
    assert not heavy, f"the daemon imports {heavy}"
    foreign = sorted(m for m in modules if m.startswith(NOT_FOR_UCARP))
    assert not foreign, f"the daemon imports {foreign}"


# ----------------------------------------------------------------------------- records


class _Point(NamedTuple):
    """A record as pyucarp writes them."""

    x: int
    label: str = "p"

    @property
    def double(self) -> int:
        return 2 * self.x

    def shifted(self, by: int) -> _Point:
        return self._replace(x=self.x + by)


def test_a_record_is_a_named_tuple_with_its_methods() -> None:
    p = _Point(3)
    assert p == _Point(x=3, label="p") and p.label == "p" and p.double == 6
    assert p.shifted(2) == _Point(5) and p._asdict() == {"x": 3, "label": "p"}
    assert _Point._fields == ("x", "label") and _Point._field_defaults == {"label": "p"}
    assert repr(p) == "_Point(x=3, label='p')"
    assert _Point.__doc__ == "A record as pyucarp writes them."
    assert _Point.__qualname__ == "_Point" and _Point.__module__ == __name__
    with pytest.raises(AttributeError):
        p.x = 4  # type: ignore[misc]


def test_a_record_refuses_a_field_without_default_after_one_with() -> None:
    with pytest.raises(TypeError, match="without default"):

        class _Bad(NamedTuple):
            a: int = 0
            b: int  # type: ignore[misc]
