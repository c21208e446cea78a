"""ReplayGuard: a repeated (source, counter) pair is caught while remembered, never before."""

from __future__ import annotations

from collections import deque
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyucarp.core.replay import ReplayGuard

A = IPv4Address("192.0.2.1")
B = IPv4Address("192.0.2.2")


def test_first_sight_is_new_second_is_a_replay() -> None:
    guard = ReplayGuard(4)
    assert not guard.seen(A, 7)
    assert guard.seen(A, 7)
    assert not guard.seen(B, 7)  # the same counter from another source is another advert
    assert len(guard) == 2


def test_an_incrementing_counter_is_never_a_replay() -> None:
    guard = ReplayGuard(64)
    start = (1 << 64) - 100  # across the 2**64 wrap, as ucarp's counter goes
    assert not any(guard.seen(A, (start + i) % (1 << 64)) for i in range(1000))


def test_oldest_pairs_are_forgotten_first() -> None:
    guard = ReplayGuard(3)
    for counter in (1, 2, 3, 4):
        assert not guard.seen(A, counter)
    assert len(guard) == 3
    assert not guard.seen(A, 1)  # evicted by 4, so it looks new again (and is remembered)
    assert guard.seen(A, 4) and guard.seen(A, 3)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReplayGuard(0)


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=12),
    events=st.lists(
        st.tuples(st.sampled_from([A, B]), st.integers(min_value=0, max_value=20)),
        max_size=80,
    ),
)
def test_matches_a_model_of_the_last_n_distinct_pairs(
    capacity: int, events: list[tuple[IPv4Address, int]]
) -> None:
    guard = ReplayGuard(capacity)
    window: deque[tuple[IPv4Address, int]] = deque()
    for src, counter in events:
        expected = (src, counter) in window
        assert guard.seen(src, counter) == expected
        if not expected:
            window.append((src, counter))
            if len(window) > capacity:
                window.popleft()
        assert len(guard) == len(window)
