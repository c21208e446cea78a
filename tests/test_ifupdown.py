"""Debian's ifupdown hook (``/etc/network/if-up.d/ucarp``, docs/compat.md §8) with pyucarp.

The hook builds ``ucarp -i $IFACE -s $IF_ADDRESS -B -z -v $VID -p $PASSWORD -a $VIP -u $UP
-d $DOWN [-P] [-k N] [-b N] [-r N] [-M] [-x V]`` from the ``ucarp-*`` stanza options.
:func:`hook_argv` builds the same command line; where the ``ucarp`` package installed the
hook, it is compared with the real one, and the real hook is run (with its ``UCARP=`` line
pointed at pyucarp) on one node of a two-node cluster. The daemons must detach (-B), elect,
and on SIGTERM run the downscript and exit (-z).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from pyucarp.lab.daemons import pyucarp_env, write_recording_scripts
from pyucarp.lab.netlab import Host, Lab, pid_alive, wait_until

REPO = Path(__file__).resolve().parent.parent
HOOK = Path("/etc/network/if-up.d/ucarp")
DEFAULT_STATEDIR = Path("/run/pyucarp")
VIP = "192.0.2.100"


def _off(value: str) -> bool:
    # The hook's ``expr "$v" : "no\|off\|false\|0"``: a match anchored at the start.
    return re.match(r"no|off|false|0", value) is not None


def hook_argv(ucarp: str, env: Mapping[str, str]) -> list[str] | None:
    """The command line the hook runs for these IFACE/IF_* variables (None: it runs none).

    Unquoted expansions in the hook split on blanks; so do they here.
    """
    def words(name: str) -> list[str]:
        return env.get(name, "").split()

    up = env.get("IF_UCARP_UPSCRIPT") or "/usr/share/ucarp/vip-up"
    down = env.get("IF_UCARP_DOWNSCRIPT") or "/usr/share/ucarp/vip-down"
    extra: list[str] = []
    if env.get("IF_UCARP_MASTER") and not _off(env["IF_UCARP_MASTER"]):
        extra.append("-P")
    for var, flag in (("IF_UCARP_ADVSKEW", "-k"), ("IF_UCARP_ADVBASE", "-b"),
                      ("IF_UCARP_DEADRATIO", "-r")):
        if env.get(var):
            extra += [flag, *words(var)]
    if env.get("IF_UCARP_NOMCAST") and not _off(env["IF_UCARP_NOMCAST"]):
        extra.append("-M")
    if env.get("IF_UCARP_XPARAM"):
        extra += ["-x", *words("IF_UCARP_XPARAM")]
    if not (env.get("IF_UCARP_VID") and env.get("IF_UCARP_VIP") and env.get("IF_UCARP_PASSWORD")):
        return None
    return [ucarp, "-i", *words("IFACE"), "-s", *words("IF_ADDRESS"), "-B", "-z",
            "-v", *words("IF_UCARP_VID"), "-p", *words("IF_UCARP_PASSWORD"),
            "-a", *words("IF_UCARP_VIP"), "-u", *up.split(), "-d", *down.split(), *extra]


def patched_hook(tmp_path: Path, ucarp: Path) -> Path:
    """The installed hook, its ``UCARP=`` line (and nothing else) pointed at ``ucarp``."""
    text = HOOK.read_text()
    assert re.search(r"^UCARP=/usr/sbin/ucarp$", text, re.M), "unexpected hook text"
    path = tmp_path / "if-up.d-ucarp"
    path.write_text(re.sub(r"^UCARP=.*$", f"UCARP={ucarp}", text, count=1, flags=re.M))
    path.chmod(0o755)
    return path


def stanza_env(**stanza: str) -> dict[str, str]:
    """``ucarp-advskew 10`` and friends as ifupdown exports them (IF_UCARP_ADVSKEW=10)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IF_")}
    for key, value in stanza.items():
        env[key if key == "IFACE" else "IF_" + key.upper().replace("-", "_")] = value
    return env


needs_hook = pytest.mark.skipif(not HOOK.exists(), reason=f"{HOOK} (package ucarp) is missing")


@needs_hook
@pytest.mark.parametrize("stanza", [
    dict(ucarp_vid="3", ucarp_vip="192.0.2.1", ucarp_password="16charsatmost",
         ucarp_advskew="0", ucarp_advbase="1", ucarp_master="yes"),
    dict(ucarp_vid="9", ucarp_vip="192.0.2.5", ucarp_password="pw", ucarp_master="no",
         ucarp_nomcast="on", ucarp_deadratio="5", ucarp_xparam="a b",
         ucarp_upscript="/x/up", ucarp_downscript="/x/down"),
    dict(ucarp_vid="9", ucarp_vip="192.0.2.5", ucarp_password="pw", ucarp_master="off",
         ucarp_nomcast="false"),
    dict(ucarp_vid="9", ucarp_vip="192.0.2.5"),  # no password: the hook runs nothing
])
def test_hook_argv_matches_the_real_hook(tmp_path: Path, stanza: dict[str, str]) -> None:
    printer = tmp_path / "ucarp"
    printer.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@"\n')
    printer.chmod(0o755)
    env = stanza_env(IFACE="eth0", address="192.0.2.10", **stanza)
    proc = subprocess.run(["sh", str(patched_hook(tmp_path, printer))], env=env,
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    expected = hook_argv(str(printer), env)
    assert proc.stdout.splitlines() == (expected or [])


def _daemon_pids(host: Host) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True,
                         timeout=10).stdout
    pids = []
    for pid in map(int, out.split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pyucarp" in cmdline and pid_alive(pid):
            pids.append(pid)
    return pids


def _calls(record: Path) -> list[list[str]]:
    return [line.split() for line in record.read_text().splitlines()]


@pytest.mark.netns
def test_ifupdown_command_line_daemonizes_elects_and_stops(lab: Lab, tmp_path: Path) -> None:
    # The command line has no --statedir: the state files go to /run/pyucarp, named by
    # interface and vhid. A random vhid keeps parallel runs apart.
    vhid = random.randint(200, 254)
    for suffix in (".json", ".maintenance"):
        assert not (DEFAULT_STATEDIR / f"eth0-{vhid}{suffix}").exists()
    ucarp = tmp_path / "ucarp"
    ucarp.write_text(f'#!/bin/sh\nexec {sys.executable} -m pyucarp "$@"\n')
    ucarp.chmod(0o755)
    hosts = {"a": lab.add_host("a", "192.0.2.1/24"), "b": lab.add_host("b", "192.0.2.2/24")}
    records = {}
    started: list[int] = []
    try:
        for name, host in hosts.items():
            workdir = tmp_path / name
            workdir.mkdir()
            records[name] = workdir / "calls.txt"
            records[name].touch()
            up, down = write_recording_scripts(workdir, records[name])
            env = stanza_env(
                IFACE="eth0", address=host.ip, netmask="255.255.255.0",
                ucarp_vid=str(vhid), ucarp_vip=VIP, ucarp_password="s3cret",
                ucarp_master="yes" if name == "a" else "no",
                ucarp_advskew="0" if name == "a" else "50", ucarp_advbase="1",
                ucarp_deadratio="2", ucarp_xparam=f"from-{name}",
                ucarp_upscript=str(up), ucarp_downscript=str(down),
            )
            env.update({k: v for k, v in pyucarp_env().items() if k == "PYTHONPATH"})
            if name == "a" and HOOK.exists():
                cmd = ["sh", str(patched_hook(tmp_path, ucarp))]  # the real hook
            else:
                argv = hook_argv(str(ucarp), env)
                assert argv is not None
                cmd = argv
            proc = subprocess.run(["ip", "netns", "exec", host.netns, *cmd], env=env,
                                  capture_output=True, text=True, timeout=20, cwd=REPO,
                                  stdin=subprocess.DEVNULL)
            # -B: the command returns once the daemon has detached, with status 0.
            assert proc.returncode == 0, proc.stderr
            assert wait_until(lambda h=host: len(_daemon_pids(h)) == 1, 5), name
            started += _daemon_pids(host)
        pid_a, pid_b = started
        ha, hb = hosts["a"], hosts["b"]
        # a (-P, advskew 0) is elected; the scripts get the xparam.
        assert wait_until(lambda: ha.has_address(VIP), 10), _calls(records["a"])
        last = _calls(records["a"])[-1]
        assert last[0] == "up" and last[2:] == ["eth0", VIP, "from-a"], last
        assert not hb.has_address(VIP) and [c[0] for c in _calls(records["b"])] == ["down"]
        # SIGTERM with -z: a runs its downscript and exits; b takes over.
        os.kill(pid_a, signal.SIGTERM)
        assert wait_until(lambda: not pid_alive(pid_a), 10)
        last = _calls(records["a"])[-1]
        assert last[0] == "down" and last[2:] == ["eth0", VIP, "from-a"], last
        assert not ha.has_address(VIP)
        assert wait_until(lambda: hb.has_address(VIP), 5)
        assert _calls(records["b"])[-1][0] == "up"
        os.kill(pid_b, signal.SIGTERM)
        assert wait_until(lambda: not pid_alive(pid_b), 10)
        assert [c[0] for c in _calls(records["b"])] == ["down", "up", "down"]
        assert not hb.has_address(VIP)
    finally:
        for pid in started:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        for pid in started:
            wait_until(lambda p=pid: not pid_alive(p), 5)
        # Both nodes shared one state file name on this one file system: remove it if a
        # daemon was killed before it could.
        stale = DEFAULT_STATEDIR / f"eth0-{vhid}.json"
        if stale.exists() and all(not pid_alive(p) for p in started):
            stale.unlink(missing_ok=True)
