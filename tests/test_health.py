"""pyucarp.core.health: the health verdict from check results and tracked interfaces.

The rules (the module's docstring): a check's first result decides it at once; then
``fall`` failures in a row make it failed and ``rise`` successes in a row make it good,
a result that repeats the check's state resetting the other count; a tracked interface
fails the instance at once without carrier and passes at once with it; the verdict is
False if anything failed, else None while anything is undecided, else True.

Hand cases first, then a Hypothesis comparison with a model written here (a sliding window
over each check's results, not a counter), then the hysteresis bounds on flapping checks.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyucarp.core.health import HealthJudge

# ---------------------------------------------------------------- hand cases


@pytest.mark.parametrize("ok", [True, False])
def test_the_first_result_decides_at_once_whatever_fall_and_rise(ok: bool) -> None:
    judge = HealthJudge(1, (), fall=3, rise=5)
    assert judge.verdict is None and list(judge.checks) == [None]
    assert judge.check_result(0, ok) is ok
    assert judge.checks == (ok,) and judge.verdict is ok


@pytest.mark.parametrize("fall", [1, 2, 3, 5])
def test_fall_failures_in_a_row_make_a_good_check_failed(fall: int) -> None:
    judge = HealthJudge(1, (), fall=fall, rise=2)
    assert judge.check_result(0, True) is True
    for _ in range(fall - 1):
        assert judge.check_result(0, False) is True
    assert judge.check_result(0, False) is False
    assert judge.check_result(0, False) is False  # more failures change nothing


@pytest.mark.parametrize("rise", [1, 2, 3, 5])
def test_rise_successes_in_a_row_make_a_failed_check_good(rise: int) -> None:
    judge = HealthJudge(1, (), fall=2, rise=rise)
    assert judge.check_result(0, False) is False
    for _ in range(rise - 1):
        assert judge.check_result(0, True) is False
    assert judge.check_result(0, True) is True
    assert judge.check_result(0, True) is True


def test_a_result_repeating_the_state_resets_the_opposite_count() -> None:
    judge = HealthJudge(1, (), fall=3, rise=3)
    judge.check_result(0, True)
    # two failures, one success: the count starts again, so two more failures do not fail it
    for ok in (False, False, True, False, False):
        assert judge.check_result(0, ok) is True
    assert judge.check_result(0, False) is False  # the third in a row
    for ok in (True, True, False, True, True):
        assert judge.check_result(0, ok) is False
    assert judge.check_result(0, True) is True


def test_a_change_starts_the_count_afresh() -> None:
    """After failing, the failures that made it fail count nothing towards rising again,
    and with fall=1 one success after a failure needs the full rise."""
    judge = HealthJudge(1, (), fall=1, rise=2)
    judge.check_result(0, True)
    assert judge.check_result(0, False) is False
    assert judge.check_result(0, True) is False
    assert judge.check_result(0, False) is False  # resets the rise count
    assert judge.check_result(0, True) is False
    assert judge.check_result(0, True) is True


def test_checks_count_apart() -> None:
    judge = HealthJudge(2, (), fall=2, rise=2)
    judge.check_result(0, True)
    judge.check_result(1, True)
    # one failure of each check is not two failures of one
    assert judge.check_result(0, False) is True
    assert judge.check_result(1, False) is True
    assert judge.checks == (True, True)
    assert judge.check_result(1, False) is False
    assert judge.checks == (True, False)
    # check 0 is still good: its single failure is not forgotten, nor doubled
    assert judge.check_result(0, False) is False
    assert judge.checks == (False, False)


def test_interfaces_fail_at_once_and_recover_at_once() -> None:
    judge = HealthJudge(1, ("eth1",), fall=5, rise=5)
    judge.check_result(0, True)
    assert judge.verdict is None  # the interface is not known yet
    assert judge.interface("eth1", True) is True
    assert judge.interface("eth1", False) is False  # no fall count
    assert judge.interfaces == {"eth1": False}
    assert judge.interface("eth1", True) is True  # no rise count
    assert judge.interface("eth1", True) is True


def test_a_down_interface_fails_even_with_every_check_good() -> None:
    judge = HealthJudge(2, ("eth1", "eth2"), fall=1, rise=1)
    judge.check_result(0, True)
    judge.check_result(1, True)
    judge.interface("eth1", True)
    assert judge.interface("eth2", False) is False
    assert judge.interfaces == {"eth1": True, "eth2": False}


def test_the_verdict_stays_none_until_everything_is_decided() -> None:
    judge = HealthJudge(2, ("eth1",), fall=1, rise=1)
    assert judge.verdict is None
    assert judge.check_result(0, True) is None
    assert judge.interface("eth1", True) is None
    assert judge.check_result(1, True) is True


def test_a_failure_decides_while_others_are_undecided() -> None:
    judge = HealthJudge(3, ("eth1",), fall=1, rise=1)
    assert judge.check_result(2, False) is False
    assert judge.checks == (None, None, False)
    judge = HealthJudge(3, ("eth1",), fall=1, rise=1)
    assert judge.interface("eth1", False) is False


def test_unknown_interface_names_are_ignored() -> None:
    judge = HealthJudge(0, ("eth1",), fall=1, rise=1)
    assert judge.interface("eth9", False) is None
    assert judge.interfaces == {"eth1": None}
    assert judge.interface("eth1", True) is True
    assert judge.interface("eth9", False) is True
    assert judge.interfaces == {"eth1": True}


def test_nothing_tracked_is_healthy() -> None:
    assert HealthJudge(0, (), fall=1, rise=1).verdict is True


def test_the_views_are_copies() -> None:
    judge = HealthJudge(1, ("eth1",), fall=1, rise=1)
    judge.interface("eth1", True)
    view = judge.interfaces
    view["eth1"] = False
    assert judge.interfaces == {"eth1": True}
    assert isinstance(judge.checks, tuple)


@pytest.mark.parametrize(("checks", "fall", "rise"), [(-1, 1, 1), (1, 0, 1), (1, 1, 0),
                                                     (1, -3, 2), (0, 2, -1)])
def test_bad_constructor_arguments(checks: int, fall: int, rise: int) -> None:
    with pytest.raises(ValueError):
        HealthJudge(checks, (), fall=fall, rise=rise)


# ---------------------------------------------------------------- a model, compared


def model_state(results: list[bool], fall: int, rise: int) -> bool | None:
    """A check's state after ``results``, by a sliding window: the first result decides;
    later, the state turns to ``ok`` at a result when the last ``need`` results (``rise`` for
    a success, ``fall`` for a failure), all after the previous decision, are ``ok``."""
    state: bool | None = None
    decided = -1  # index of the result that last decided the state
    for i, ok in enumerate(results):
        if state is None:
            state, decided = ok, i
            continue
        need = rise if ok else fall
        window = results[i - need + 1: i + 1] if i - need + 1 > decided else []
        if ok != state and len(window) == need and all(r == ok for r in window):
            state, decided = ok, i
    return state


def model_verdict(states: list[bool | None]) -> bool | None:
    if False in states:
        return False
    return None if None in states else True


NAMES = ("eth0", "eth1", "bond0")

operations = st.lists(
    st.one_of(
        st.tuples(st.just("check"), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("iface"), st.sampled_from((*NAMES, "wlan9")), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(
    checks=st.integers(0, 3),
    interfaces=st.lists(st.sampled_from(NAMES), unique=True, max_size=3),
    fall=st.integers(1, 4),
    rise=st.integers(1, 4),
    ops=operations,
)
def test_the_judge_agrees_with_the_model(
    checks: int, interfaces: list[str], fall: int, rise: int,
    ops: list[tuple[str, int | str, bool]],
) -> None:
    judge = HealthJudge(checks, interfaces, fall=fall, rise=rise)
    results: list[list[bool]] = [[] for _ in range(checks)]
    carrier: dict[str, bool | None] = dict.fromkeys(interfaces)
    for kind, which, ok in ops:
        if kind == "check":
            assert isinstance(which, int)
            if which >= checks:
                continue
            results[which].append(ok)
            got = judge.check_result(which, ok)
        else:
            assert isinstance(which, str)
            if which in carrier:
                carrier[which] = ok
            got = judge.interface(which, ok)
        states = [model_state(r, fall, rise) for r in results]
        expected = model_verdict([*states, *carrier.values()])
        assert got is expected and judge.verdict is expected
        assert judge.checks == tuple(states)
        assert judge.interfaces == carrier


# ---------------------------------------------------------------- hysteresis bounds


def changes_of(results: list[bool], fall: int, rise: int) -> int:
    """How many times the judge changed a check's decided state (the first decision is
    not a change)."""
    judge = HealthJudge(1, (), fall=fall, rise=rise)
    changes, last = 0, None
    for ok in results:
        state = judge.check_result(0, ok)
        if last is not None and state is not last:
            changes += 1
        last = state
    return changes


def runs_of(results: list[bool]) -> list[int]:
    """The lengths of the maximal runs of equal results, in order."""
    runs: list[int] = []
    for i, ok in enumerate(results):
        if i and ok == results[i - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


@settings(max_examples=500, deadline=None)
@given(results=st.lists(st.booleans(), max_size=80), fall=st.integers(1, 5),
       rise=st.integers(1, 5))
def test_state_changes_are_bounded_by_the_smaller_threshold(
    results: list[bool], fall: int, rise: int
) -> None:
    """Bound: with m = min(fall, rise), n results change the state at most (n - 1) // m
    times, and at most once per maximal run of m or more equal results after the first run.

    Proof. Number the results 1..n; result 1 decides the state and no count has started.
    A change at result c to the value v needs need(v) >= m results equal to v in a row,
    counted since the last change (a change starts the counts afresh) or, for the first
    change, since result 2. So the changes c_1 < c_2 < ... < c_K satisfy c_1 >= 1 + m and
    c_j >= c_(j-1) + m, hence 1 + K*m <= c_K <= n. Those m results lie in one maximal run of
    results equal to v, and two changes cannot share a run: after a change to v, results
    equal to v only reset the count, so the next change is to not-v, in a later run. The
    first run cannot hold a change: its results equal the state it decided.
    """
    m = min(fall, rise)
    k = changes_of(results, fall, rise)
    assert k <= max(0, len(results) - 1) // m
    assert k <= sum(1 for length in runs_of(results)[1:] if length >= m)


@settings(max_examples=300, deadline=None)
@given(first=st.booleans(), half=st.integers(1, 6), runs=st.integers(1, 20),
       fall=st.integers(1, 6), rise=st.integers(1, 6))
def test_a_periodic_flap_changes_the_state_exactly_as_predicted(
    first: bool, half: int, runs: int, fall: int, rise: int
) -> None:
    """A check flapping with period 2*half results (``half`` equal results, then ``half``
    opposite ones, ...), ``runs`` runs in all, starting with ``first``.

    The first result decides ``first``. Run 2 carries the opposite value v, which needs
    t1 = need(v) equal results: if half < t1, the state never moves (runs of ``first``
    only reset the count, runs of v never reach t1). If half >= t1 the state turns to v in
    run 2; then runs of ``first`` need t0 = need(first): if half < t0, it stays v for good;
    if half >= both, every run after the first changes it once.
    """
    results = [(first if r % 2 == 0 else not first) for r in range(runs) for _ in range(half)]
    t1 = fall if first else rise  # the threshold of the value of run 2
    t0 = rise if first else fall
    if runs < 2 or half < t1:
        expected = 0
    elif half < t0:
        expected = 1
    else:
        expected = runs - 1
    assert changes_of(results, fall, rise) == expected
    if half < min(fall, rise):  # flapping faster than the hysteresis: no change at all
        assert expected == 0
