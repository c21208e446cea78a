"""Shared test fixtures: the namespace lab, and skipping what this machine cannot run."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # the tests' own modules: hostile, simlan
    sys.path.insert(0, str(TESTS_DIR))

from pyucarp.lab import netlab  # noqa: E402

CUCARP = "/usr/sbin/ucarp"


@functools.cache
def netns_problem() -> str | None:
    """Why namespace tests cannot run here (checked once, by really making one), or None."""
    return netlab.environment_problem(probe=True)


def cucarp_problem() -> str | None:
    """Why tests against the C ucarp cannot run here, or None."""
    if not os.access(CUCARP, os.X_OK):
        return f"{CUCARP} (the C ucarp) is not installed"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove namespaces left by earlier runs that died (only those of dead processes)."""
    if netlab.environment_problem() is None:
        netlab.cleanup_stale()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip netns/cucarp-marked tests cleanly when the machine lacks root, ip or ucarp."""
    if item.get_closest_marker("netns") is not None:
        problem = netns_problem()
        if problem is not None:
            pytest.skip(problem)
    if item.get_closest_marker("cucarp") is not None:
        problem = cucarp_problem()
        if problem is not None:
            pytest.skip(problem)


@contextlib.contextmanager
def lab_or_skip(ipv6: bool = False) -> Iterator[netlab.Lab]:
    """A fresh, empty :class:`netlab.Lab` (bridge only) for the block, or the test skipped
    when this machine cannot build one."""
    problem = netns_problem()
    if problem is not None:
        pytest.skip(problem)
    with netlab.Lab(ipv6=ipv6) as the_lab:
        yield the_lab


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    """A fresh, empty :class:`netlab.Lab` (bridge only), torn down after the test."""
    with lab_or_skip() as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def errhost() -> Iterator[netlab.Host]:
    """One lab host, 192.0.2.1/24, for all the configuration-error runs of a module
    (nothing they start stays running)."""
    with lab_or_skip() as the_lab:
        yield the_lab.add_host("a", "192.0.2.1/24")
