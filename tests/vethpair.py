"""A minimal two-namespace lab for the socket tests: A:eth0 <-veth-> B:eth0, 192.0.2.0/24.

Lighter than :mod:`pyucarp.lab.netlab` (no bridge, no helper processes): the tests open the
daemon's sockets in a namespace from this very process, with :func:`inside`.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface

import pytest

A_IF = IPv4Interface("192.0.2.1/24")
B_IF = IPv4Interface("192.0.2.2/24")

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2",
)


def run_ip(*args: str, check: bool = True) -> str:
    """Run one ``ip`` command; its output."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=10, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``ns``.

    Sockets created inside stay in ``ns`` after the block ends.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


@dataclass
class Pair:
    """The two namespaces' names."""

    a: str
    b: str


@contextmanager
def veth_pair(kind: str) -> Iterator[Pair]:
    """Namespaces ``pyu-<kind>-<pid>-<hex>-a`` and ``-b``, deleted at the end of the block."""
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    names = Pair(a=f"pyu-{kind}-{tag}-a", b=f"pyu-{kind}-{tag}-b")
    created: list[str] = []
    try:
        for ns in (names.a, names.b):
            run_ip("netns", "add", ns)
            created.append(ns)
            run_ip("-n", ns, "link", "set", "lo", "up")
        run_ip("-n", names.a, "link", "add", "eth0", "type", "veth",
               "peer", "name", "eth0", "netns", names.b)
        run_ip("-n", names.a, "addr", "add", str(A_IF), "dev", "eth0")
        run_ip("-n", names.b, "addr", "add", str(B_IF), "dev", "eth0")
        for ns in (names.a, names.b):
            run_ip("-n", ns, "link", "set", "eth0", "up")
        yield names
    finally:
        for ns in created:
            run_ip("netns", "del", ns, check=False)
